/**
 * NatsBus against a real nats-server: TEST_NATS_URL (CI) or one spawned here with JetStream.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, nanos } from '@nats-io/transport-node';
import { NatsBus, SESSIONS_STREAM } from '../../src/bus/nats-bus.ts';
import { BusError, sessionSubject } from '../../src/bus/bus.ts';
import { createBus } from '../../src/bus/create-bus.ts';
import { InProcessBus } from '../../src/bus/in-process-bus.ts';
import { busConformance, drainAll, take$, uid } from './conformance.ts';
import { startNatsServer, type TestNatsServer } from './nats-server.ts';

const logger = pino({ level: 'silent' });
let server: TestNatsServer;

beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

const newBus = (extra: Partial<ConstructorParameters<typeof NatsBus>[0]> = {}) => new NatsBus({ url: server.url, logger, name: 'stt-test', ...extra });

busConformance('NatsBus', async ({ started = true } = {}) => {
  const bus = newBus();
  if (started) await bus.start();
  return bus;
});

describe('NatsBus specifics', () => {
  it('creates the STT_SESSIONS stream capturing stt.session.> with the configured max age', async () => {
    const bus = newBus({ streamMaxAgeMs: 24 * 3600 * 1000 });
    await bus.start();
    expect(bus.jetstreamEnabled).toBe(true);
    const nc = await connect({ servers: server.url });
    try {
      const jsm = await jetstreamManager(nc);
      const si = await jsm.streams.info(SESSIONS_STREAM);
      expect(si.config.subjects).toContain('stt.session.>');
      expect(si.config.max_age).toBe(nanos(24 * 3600 * 1000));
    } finally {
      await nc.close();
      await bus.close();
    }
  });

  it.skipIf(!!process.env.TEST_NATS_URL)('updates the stream limits when a server starts with another max age', async () => {
    const short = newBus({ streamMaxAgeMs: 3600_000 });
    await short.start();
    await short.close();
    const nc = await connect({ servers: server.url });
    try {
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info(SESSIONS_STREAM)).config.max_age).toBe(nanos(3600_000));
      const normal = newBus();
      await normal.start();
      await normal.close();
      expect((await jsm.streams.info(SESSIONS_STREAM)).config.max_age).toBe(nanos(24 * 3600_000));
    } finally {
      await nc.close();
    }
  });

  it('degrades to core NATS (no replay) on a server without JetStream', async () => {
    const plain = await startNatsServer({ spawn: true, jetstream: false });
    const bus = new NatsBus({ url: plain.url, logger });
    try {
      await bus.start();
      expect(bus.jetstreamEnabled).toBe(false);
      const subject = sessionSubject(`p${uid()}`);
      const sub = bus.subscribe(subject);
      await sub.ready();
      await bus.publish(subject, { ok: 1 });
      expect((await take$(sub, 1))[0]!.data).toEqual({ ok: 1 });
      expect(() => bus.replay(subject)).toThrow(/JetStream/);
    } finally {
      await bus.close();
      await plain.stop();
    }
  });

  it('a second bus (another server) receives what the first publishes, and replays it later', async () => {
    const a = newBus();
    const b = newBus();
    await Promise.all([a.start(), b.start()]);
    try {
      const subject = sessionSubject(`x${uid()}`);
      const sub = b.subscribe(subject);
      const all = b.subscribe('stt.session.*.events');
      await Promise.all([sub.ready(), all.ready()]);
      for (let i = 0; i < 5; i++) await a.publish(subject, { i, text: `word ${i}` });
      const got = await take$(sub, 5);
      expect(got.map((m) => m.data)).toEqual(Array.from({ length: 5 }, (_, i) => ({ i, text: `word ${i}` })));
      expect((await take$(all, 5)).every((m) => m.subject === subject)).toBe(true);

      // A listener joining late, on a third connection, replays all 5 in order.
      const late = newBus();
      await late.start();
      try {
        const replayed = await drainAll(late.replay(subject));
        expect(replayed).toEqual(got);
      } finally {
        await late.close();
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('replays a pattern across sessions in publication order', async () => {
    const bus = newBus();
    await bus.start();
    try {
      const p = uid();
      const s1 = sessionSubject(`${p}-1`);
      const s2 = sessionSubject(`${p}-2`);
      await bus.publish(s1, 'a');
      await bus.publish(s2, 'b');
      await bus.publish(s1, 'c');
      // `*` cannot take a prefix, so replay the whole stream and keep this test's sessions
      const got = (await drainAll(bus.replay('stt.session.*.events'), 15_000)).filter((m) => m.subject === s1 || m.subject === s2);
      expect(got.map((m) => m.data)).toEqual(['a', 'b', 'c']);
    } finally {
      await bus.close();
    }
  });

  it('fails start() with a clear error when no server listens', async () => {
    const bus = new NatsBus({ url: 'nats://user:secret@127.0.0.1:1', logger, connectTimeoutMs: 1000 });
    const err = await bus.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusError);
    expect(String((err as Error).message)).toMatch(/cannot connect to NATS at nats:\/\/user:\*\*\*@127\.0\.0\.1:1/);
    await bus.close();
  });

  it('works without JetStream when disabled (core fan-out only; replay refused)', async () => {
    const bus = newBus({ jetstream: false });
    await bus.start();
    try {
      expect(bus.jetstreamEnabled).toBe(false);
      const subject = sessionSubject(`c${uid()}`);
      const sub = bus.subscribe(subject);
      await sub.ready();
      await bus.publish(subject, 1);
      expect((await take$(sub, 1))[0]!.data).toBe(1);
      expect(() => bus.replay(subject)).toThrow(/JetStream/);
    } finally {
      await bus.close();
    }
  });

  it.skipIf(!!process.env.TEST_NATS_URL)('reconnects after the server restarts and keeps its subscriptions', async () => {
    const bus = newBus({ reconnectTimeWaitMs: 100, publishTimeoutMs: 500 });
    await bus.start();
    try {
      const subject = sessionSubject(`r${uid()}`);
      const sub = bus.subscribe(subject);
      await sub.ready();
      await bus.publish(subject, 'before');
      expect((await take$(sub, 1))[0]!.data).toBe('before');
      await server.restart!();
      // publishing retries until the connection is back (JetStream publish needs the server)
      const deadline = Date.now() + 15_000;
      for (;;) {
        try {
          await bus.publish(subject, 'after');
          break;
        } catch (err) {
          if (Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      const got = await take$(sub, 1, 10_000);
      expect(got[0]!.data).toBe('after');
      // the stream survived the restart (file storage): both events replay
      const replayed = (await drainAll(bus.replay(subject))).map((m) => m.data);
      expect(replayed[0]).toBe('before');
      expect(replayed).toContain('after');
    } finally {
      await bus.close();
    }
  });
});

describe('createBus', () => {
  it('returns an InProcessBus without a URL and a NatsBus with one', async () => {
    expect(createBus({ natsUrl: null, logger })).toBeInstanceOf(InProcessBus);
    const bus = createBus({ natsUrl: server.url, logger });
    expect(bus).toBeInstanceOf(NatsBus);
    await bus.start();
    await bus.close();
  });
});
