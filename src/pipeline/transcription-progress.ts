/**
 * The fraction of a file transcription that is done, from what the decoder reports while it works: the chunks of a
 * short file are all decoded in one batch, so counting finished chunks alone shows 0 until the end.
 *
 * covered = silence the VAD has passed (up to the end of the last chunk handed to the model, outside chunks)
 *         + finished chunks' seconds
 *         + per chunk in flight: the seconds its decoding has reached (DecodeProgress.seconds)
 * fraction = covered / total, clamped to [0, 1] and never below a fraction already given (a temperature fallback
 * starts a window again; the total grows when the file is longer than it declared).
 */

interface Piece {
  duration: number;
  covered: number;
}

export class TranscriptionProgress {
  private total: number;
  /** End (s) of the furthest piece handed to the model: audio before it is silence, finished or in flight. */
  private reached = 0;
  /** Seconds inside the pieces handed so far (the rest of `reached` is silence). */
  private handed = 0;
  /** Seconds of finished pieces plus the covered seconds of pieces in flight (kept as a sum: cheap per step). */
  private decoded = 0;
  private readonly inFlight = new Map<number, Piece>();
  private last = 0;

  constructor(totalSeconds: number) {
    this.total = totalSeconds;
  }

  get totalSeconds(): number {
    return this.total;
  }

  /** The audio turned out longer (decoded past the declared duration): the total only grows. */
  setTotal(seconds: number): void {
    this.total = Math.max(this.total, seconds);
  }

  /** A piece [start, end) s of the file goes to the model under `id`. */
  start(id: number, start: number, end: number): void {
    const duration = Math.max(0, end - start);
    this.inFlight.set(id, { duration, covered: 0 });
    this.handed += duration;
    this.reached = Math.max(this.reached, end);
  }

  /** The decoder of piece `id` has reached `seconds` into it (DecodeProgress.seconds); going back is ignored. */
  advance(id: number, seconds: number): void {
    const p = this.inFlight.get(id);
    if (!p) return;
    const covered = Math.min(p.duration, Math.max(p.covered, seconds));
    this.decoded += covered - p.covered;
    p.covered = covered;
  }

  /** Piece `id` is decoded: all of it counts. */
  finish(id: number): void {
    const p = this.inFlight.get(id);
    if (!p) return;
    this.decoded += p.duration - p.covered;
    this.inFlight.delete(id);
  }

  /** Seconds of the file accounted for (silence passed, decoded, partly decoded). */
  get coveredSeconds(): number {
    return Math.max(0, this.reached - this.handed) + this.decoded;
  }

  /** covered / total in [0, 1], never less than a fraction returned before. */
  fraction(): number {
    const f = this.total > 0 ? Math.min(1, Math.max(0, this.coveredSeconds / this.total)) : 0;
    this.last = Math.max(this.last, f);
    return this.last;
  }
}
