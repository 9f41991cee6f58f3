import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InProcessBus } from '../../src/bus/index.ts';
import { StreamAccess, SHARE_TOKEN_TTL_S, accessSubject } from '../../src/pipeline/stream-access.ts';

const logger = pino({ level: 'silent' });
const ID = '3f2c9a4e-0000-4000-8000-000000000001';

describe('StreamAccess (captions followers)', () => {
  let bus: InProcessBus;
  let now: number;
  beforeEach(async () => {
    bus = new InProcessBus();
    await bus.start();
    now = Date.parse('2026-01-01T00:00:00Z');
  });
  afterEach(() => bus.close());

  const status = (p: Promise<void>) =>
    p.then(
      () => 'ok',
      (e: { kind?: string }) => e.kind ?? 'thrown',
    );

  it('share tokens open the session until they expire; the bus carries only their hash', async () => {
    const here = new StreamAccess({ bus, access: null, logger, now: () => now });
    await here.open(ID, null);
    expect(await status(here.authorize(ID, {}))).toBe('unauthenticated');
    const { share_token, expires_at } = await here.share(ID);
    expect(Date.parse(expires_at) - now).toBe(SHARE_TOKEN_TTL_S * 1000);
    expect(await status(here.authorize(ID, { shareToken: share_token }))).toBe('ok');
    expect(await status(here.authorize(ID, { shareToken: `${share_token}x` }))).toBe('not_found');
    expect(await status(here.authorize('other-session', { shareToken: share_token }))).toBe('not_found');

    // Another server (another instance on the same bus) checks the published records, after the session ended here too.
    here.close(ID);
    const there = new StreamAccess({ bus, access: null, logger, now: () => now });
    expect(await status(there.authorize(ID, { shareToken: share_token }))).toBe('ok');
    const stored: unknown[] = [];
    for await (const m of bus.replay(accessSubject(ID))) stored.push(m.data);
    expect(JSON.stringify(stored)).not.toContain(share_token);

    now += SHARE_TOKEN_TTL_S * 1000 + 1;
    expect(await status(there.authorize(ID, { shareToken: share_token }))).toBe('not_found');
  });
});
