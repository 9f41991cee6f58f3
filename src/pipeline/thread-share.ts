/**
 * The one thread that the speech models' workers share. onnxruntime-node runs every `session.run`
 * synchronously on the JavaScript thread, so when two models' batches overlap in time (two-pass streams,
 * Moonshine beside Whisper) they take turns on it: neither had the thread for the whole of its wall time,
 * and summing their wall times counts the overlap twice (a two-pass loadtest read 138–159 % "busy").
 *
 * While k batches run at once, each is charged 1/k of that time (processor sharing). The charges of all
 * batches then add up to the time during which any of them ran, never more, so the models' busy
 * fractions, which the load forecast adds up, stay within the thread's time. How the thread was really
 * split between the overlapping batches is not known (each gets an equal share); the total is exact.
 *
 * Pure bookkeeping on a caller-given clock (ms): O(1) per begin, end or reading.
 */

/** One batch's claim on the thread, from `ThreadShare.begin` to `ThreadShare.end`. */
export interface ShareTicket {
  /** The share's charge counter when the batch began. */
  readonly from: number;
  /** The batch's charge once it has ended (ms), null while it runs. */
  charged: number | null;
}

export class ThreadShare {
  /** Batches running now. */
  private active = 0;
  /** Where the counter was last advanced to (ms, the callers' clock). */
  private last = Number.NEGATIVE_INFINITY;
  /** ∫ dt / k over the time k ≥ 1 batches ran: what each batch running throughout would have been charged (ms). */
  private counter = 0;

  /** A batch starts at `now`. */
  begin(now: number): ShareTicket {
    this.advance(now);
    this.active++;
    return { from: this.counter, charged: null };
  }

  /** What the batch has been charged so far (ms), up to `now`; its final charge once it has ended. */
  charged(ticket: ShareTicket, now: number): number {
    if (ticket.charged !== null) return ticket.charged;
    this.advance(now);
    return this.counter - ticket.from;
  }

  /** The batch ends at `now`: returns its charge (ms). Ending a ticket twice changes nothing. */
  end(ticket: ShareTicket, now: number): number {
    if (ticket.charged !== null) return ticket.charged;
    this.advance(now);
    this.active--;
    ticket.charged = this.counter - ticket.from;
    return ticket.charged;
  }

  /** Batches running now. */
  get running(): number {
    return this.active;
  }

  private advance(now: number): void {
    // A clock that steps back (wall-clock adjustments) charges nothing for the step.
    if (this.active > 0 && now > this.last) this.counter += (now - this.last) / this.active;
    if (now > this.last) this.last = now;
  }
}
