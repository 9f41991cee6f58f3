/**
 * The bus contract, run against every implementation (in-process-bus.test.ts, nats-bus.test.ts).
 * Every test works under a fresh random subject prefix, so a shared server (CI) is fine.
 */
import { randomUUID } from 'node:crypto';
import { firstValueFrom, take, toArray } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { BusError, sessionSubject, type Bus, type BusMessage, type Subscription } from '../../src/bus/bus.ts';

/** `started: false` must return a bus on which start() has not been called. */
export type BusFactory = (opts?: { started?: boolean }) => Promise<Bus>;

export function uid(): string {
  return randomUUID().replace(/-/g, '').slice(0, 12);
}

/** Reads `n` messages from a subscription's iterator, failing after `timeoutMs`. */
export async function take$(sub: AsyncIterable<BusMessage>, n: number, timeoutMs = 5000): Promise<BusMessage[]> {
  const out: BusMessage[] = [];
  if (n === 0) return out;
  const it = sub[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${out.length}/${n} messages`)), timeoutMs);
  });
  try {
    while (out.length < n) {
      const r = await Promise.race([it.next(), timeout]);
      if (r.done) break;
      out.push(r.value);
    }
  } finally {
    clearTimeout(timer);
  }
  return out;
}

/** Collects a whole (finite) async iterable, failing after `timeoutMs`. */
export async function drainAll<T>(iter: AsyncIterable<T>, timeoutMs = 5000): Promise<T[]> {
  const out: T[] = [];
  const run = (async () => {
    for await (const m of iter) out.push(m);
    return out;
  })();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${out.length} messages`)), timeoutMs);
  });
  try {
    return await Promise.race([run, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function busConformance(name: string, makeBus: BusFactory): void {
  describe(`${name}: bus conformance`, () => {
    const open: Bus[] = [];
    const make = async (opts?: { started?: boolean }) => {
      const b = await makeBus(opts);
      open.push(b);
      return b;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((b) => b.close()));
    });

    const subscribed = async (bus: Bus, pattern: string): Promise<Subscription> => {
      const sub = bus.subscribe(pattern);
      await sub.ready();
      return sub;
    };

    it('delivers published JSON to a subscriber of the exact subject', async () => {
      const bus = await make();
      const p = `t${uid()}`;
      const sub = await subscribed(bus, `${p}.a`);
      const payloads = [{ text: 'hello', n: 1, nested: { ok: true, list: [1, 'x', null] } }, 'plain', 42, null, [1, 2]];
      for (const m of payloads) await bus.publish(`${p}.a`, m);
      const got = await take$(sub, payloads.length);
      expect(got).toEqual(payloads.map((data) => ({ subject: `${p}.a`, data })));
    });

    it('gives every subscriber its own copy', async () => {
      const bus = await make();
      const p = `t${uid()}`;
      const a = await subscribed(bus, `${p}.x`);
      const b = await subscribed(bus, `${p}.x`);
      const msg = { words: ['a'] };
      await bus.publish(`${p}.x`, msg);
      const [[ma], [mb]] = await Promise.all([take$(a, 1), take$(b, 1)]);
      expect(ma!.data).toEqual(msg);
      expect(mb!.data).toEqual(msg);
      (ma!.data as { words: string[] }).words.push('mutated');
      expect(mb!.data).toEqual({ words: ['a'] });
      expect(msg).toEqual({ words: ['a'] });
    });

    it('matches wildcards like NATS: * is one token, > is one or more trailing tokens', async () => {
      const bus = await make();
      const p = `t${uid()}`;
      const star = await subscribed(bus, `${p}.*.events`);
      const tail = await subscribed(bus, `${p}.>`);
      const mid = await subscribed(bus, `${p}.s1.>`);
      const subjects = [`${p}.s1.events`, `${p}.s2.events`, `${p}.s1.other`, `${p}.s1.events.more`, `${p}.events`, `${p}x.s1.events`];
      for (const s of subjects) await bus.publish(s, s);
      await bus.publish(`${p}.end.events`, 'end'); // sentinel: every pattern above except mid matches it
      await bus.publish(`${p}.s1.end`, 'end');
      const starGot = await take$(star, 3);
      const tailGot = await take$(tail, 7);
      const midGot = await take$(mid, 4);
      expect(starGot.map((m) => m.subject)).toEqual([`${p}.s1.events`, `${p}.s2.events`, `${p}.end.events`]);
      expect(tailGot.map((m) => m.subject)).toEqual([`${p}.s1.events`, `${p}.s2.events`, `${p}.s1.other`, `${p}.s1.events.more`, `${p}.events`, `${p}.end.events`, `${p}.s1.end`]);
      expect(midGot.map((m) => m.subject)).toEqual([`${p}.s1.events`, `${p}.s1.other`, `${p}.s1.events.more`, `${p}.s1.end`]);
    });

    it('stops delivering after unsubscribe(): the iterator ends and the observable completes', async () => {
      const bus = await make();
      const p = `t${uid()}`;
      const sub = await subscribed(bus, `${p}.a`);
      const other = await subscribed(bus, `${p}.a`);
      let completed = false;
      const seen: unknown[] = [];
      sub.observable.subscribe({ next: (m) => seen.push(m.data), complete: () => (completed = true) });
      await bus.publish(`${p}.a`, 1);
      await take$(other, 1);
      expect(seen).toEqual([1]);
      sub.unsubscribe();
      expect(sub.closed).toBe(true);
      expect(completed).toBe(true);
      await bus.publish(`${p}.a`, 2);
      await take$(other, 1); // 2 reached the bus's other subscriber…
      expect(seen).toEqual([1]); // …but not the unsubscribed one
      const rest = await drainAll(sub); // unsubscribe drops what was buffered, then the iterator ends
      expect(rest).toEqual([]);
      sub.unsubscribe(); // idempotent
    });

    it('leaving a for-await loop unsubscribes', async () => {
      const bus = await make();
      const p = `t${uid()}`;
      const sub = await subscribed(bus, `${p}.a`);
      for (let i = 0; i < 3; i++) await bus.publish(`${p}.a`, i);
      const got: unknown[] = [];
      for await (const m of sub) {
        got.push(m.data);
        if (got.length === 2) break;
      }
      expect(got).toEqual([0, 1]);
      expect(sub.closed).toBe(true);
      expect(await drainAll(sub)).toEqual([]); // the third message went with the subscription
    });

    it('keeps the order of 1000 messages (iterator and observable)', async () => {
      const bus = await make();
      const p = `t${uid()}`;
      const sub = await subscribed(bus, `${p}.seq`);
      const obs = firstValueFrom(sub.observable.pipe(take(1000), toArray()));
      await Promise.all(Array.from({ length: 1000 }, (_, i) => bus.publish(`${p}.seq`, { i })));
      const got = await take$(sub, 1000, 15_000);
      expect(got.map((m) => (m.data as { i: number }).i)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
      expect((await obs).map((m) => (m.data as { i: number }).i)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    });

    it('keeps the order of 1000 awaited session events', async () => {
      const bus = await make();
      const subject = sessionSubject(`s${uid()}`);
      const sub = await subscribed(bus, subject);
      for (let i = 0; i < 1000; i++) await bus.publish(subject, { i });
      const got = await take$(sub, 1000, 15_000);
      expect(got.map((m) => (m.data as { i: number }).i)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    });

    it('replays a session from the start, in order, to a late listener', async () => {
      const bus = await make();
      const id = `s${uid()}`;
      const subject = sessionSubject(id);
      for (let i = 0; i < 5; i++) await bus.publish(subject, { type: 'final', i });
      await bus.publish(sessionSubject(`${id}x`), { type: 'other session' });
      const got = await drainAll(bus.replay(subject));
      expect(got).toEqual(Array.from({ length: 5 }, (_, i) => ({ subject, data: { type: 'final', i } })));
      // replaying twice gives the same history; an unknown session replays nothing
      expect(await drainAll(bus.replay(subject))).toHaveLength(5);
      expect(await drainAll(bus.replay(sessionSubject(`nobody${uid()}`)))).toEqual([]);
    });

    it('replay with follow continues with live messages', async () => {
      const bus = await make();
      const subject = sessionSubject(`s${uid()}`);
      await bus.publish(subject, 0);
      await bus.publish(subject, 1);
      const it = bus.replay(subject, { follow: true })[Symbol.asyncIterator]();
      expect((await it.next()).value?.data).toBe(0);
      expect((await it.next()).value?.data).toBe(1);
      await bus.publish(subject, 2);
      expect((await it.next()).value?.data).toBe(2);
      await it.return?.();
    });

    it('refuses to replay subjects that are not retained', async () => {
      const bus = await make();
      expect(() => bus.replay(`t${uid()}.>`)).toThrow(BusError);
    });

    it('rejects invalid subjects and patterns', async () => {
      const bus = await make();
      await expect(bus.publish('a.*', 1)).rejects.toThrow(BusError);
      await expect(bus.publish('a..b', 1)).rejects.toThrow(BusError);
      await expect(bus.publish('has space', 1)).rejects.toThrow(BusError);
      await expect(bus.publish('', 1)).rejects.toThrow(BusError);
      await expect(bus.publish('a.b', undefined)).rejects.toThrow(/not JSON/);
      expect(() => bus.subscribe('a.>.b')).toThrow(BusError);
      expect(() => bus.subscribe('a.b*')).toThrow(BusError);
    });

    it('throws before start() and after close(); close() ends subscriptions and is idempotent', async () => {
      const idle = await make({ started: false });
      await expect(idle.publish('a.b', 1)).rejects.toThrow(/not started/);
      expect(() => idle.subscribe('a.b')).toThrow(/not started/);

      const bus = await make();
      await bus.start(); // idempotent
      const p = `t${uid()}`;
      const sub = await subscribed(bus, `${p}.a`);
      let completed = false;
      sub.observable.subscribe({ complete: () => (completed = true) });
      await bus.publish(`${p}.a`, 'before close');
      await bus.close();
      // what was delivered before close is still readable, then the iterator ends
      expect((await drainAll(sub)).map((m) => m.data)).toEqual(['before close']);
      expect(completed).toBe(true);
      expect(sub.closed).toBe(true);
      await expect(bus.publish(`${p}.a`, 1)).rejects.toThrow(/closed/);
      expect(() => bus.subscribe(`${p}.a`)).toThrow(/closed/);
      await expect(bus.start()).rejects.toThrow(/closed/);
      await bus.close();
    });
  });
}
