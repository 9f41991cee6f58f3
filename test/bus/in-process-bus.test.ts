import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { InProcessBus } from '../../src/bus/in-process-bus.ts';
import { sessionSubject } from '../../src/bus/bus.ts';
import { busConformance, drainAll, take$ } from './conformance.ts';

const logger = pino({ level: 'silent' });

busConformance('InProcessBus', async ({ started = true } = {}) => {
  const bus = new InProcessBus({ logger });
  if (started) await bus.start();
  return bus;
});

describe('InProcessBus specifics', () => {
  it('expires replay history by age and by count', async () => {
    let now = 0;
    const bus = new InProcessBus({ historyMaxAgeMs: 1000, historyMaxMessages: 3, now: () => now });
    await bus.start();
    const s = sessionSubject('abc');
    for (let i = 0; i < 5; i++) await bus.publish(s, i);
    expect((await drainAll(bus.replay(s))).map((m) => m.data)).toEqual([2, 3, 4]);
    now = 500;
    await bus.publish(s, 5);
    now = 1200; // 0..4 (t=0) expired, 5 (t=500) kept
    expect((await drainAll(bus.replay(s))).map((m) => m.data)).toEqual([5]);
    await bus.close();
  });

  it('keeps no history for non-session subjects or when disabled', async () => {
    const bus = new InProcessBus({ historyMaxAgeMs: 0 });
    await bus.start();
    await bus.publish(sessionSubject('x'), 1);
    expect(await drainAll(bus.replay(sessionSubject('x')))).toEqual([]);
    await bus.close();
  });

  it('drops the oldest buffered messages of a slow iterator beyond maxPending', async () => {
    const bus = new InProcessBus({ maxPending: 10 });
    await bus.start();
    const sub = bus.subscribe('a');
    for (let i = 0; i < 15; i++) await bus.publish('a', i);
    expect(sub.dropped).toBe(5);
    expect((await take$(sub, 10)).map((m) => m.data)).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    await bus.close();
  });
});
