/**
 * Who may follow a live session's captions (WS /v1/stream/<id>/captions), for WebSocket and WebRTC
 * sessions alike. A session id is not a password: a follower needs
 *   - the owner's API key (any key of the account that opened the stream), or
 *   - a share token the owner asked for on the stream ({"action":"share"} →
 *     {"share_token","expires_at"}); anonymous streams can only be shared this way.
 *
 * Followers may sit on another server (NATS): the owner and the SHA-256 of each share token (never
 * the token) are published on `stt.session.<id>.access`, retained with the session's events
 * (JetStream STT_SESSIONS, or the in-process history). Live sessions of this server are also kept
 * in memory so that a local follower needs no bus round trip.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { AccessControl } from '../auth/index.ts';
import { SESSION_SUBJECT_PREFIX, assertValidId, type Bus } from '../bus/index.ts';
import { DomainError } from '../errors.ts';

/** Share tokens live as long as the session's replay (24 h). */
export const SHARE_TOKEN_TTL_S = 24 * 3600;

export function accessSubject(sessionId: string): string {
  assertValidId(sessionId, 'session id');
  return `${SESSION_SUBJECT_PREFIX}.${sessionId}.access`;
}

/** What goes on the access subject: the owner once at the start, then one record per share token. */
type AccessRecord = { owner: string | null } | { share: string; expires_at: string };

interface SessionAccess {
  /** Account id of the owner; null = anonymous (share tokens only). */
  owner: string | null;
  /** sha256(token) hex → expiry (ms). */
  shares: Map<string, number>;
}

export interface FollowCredentials {
  authorization?: string;
  shareToken?: string;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export class StreamAccess {
  private readonly live = new Map<string, SessionAccess>();

  constructor(private readonly o: { bus: Bus; access: AccessControl | null; logger: Logger; now?: () => number }) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** A session starts: records its owner (resolves once followers on any server can see it). */
  async open(sessionId: string, ownerAccountId: string | null): Promise<void> {
    this.live.set(sessionId, { owner: ownerAccountId, shares: new Map() });
    await this.publish(sessionId, { owner: ownerAccountId });
  }

  /** The session ended here; its records stay on the bus for replaying followers. */
  close(sessionId: string): void {
    this.live.delete(sessionId);
  }

  /** A new share token for a live session of this server (only its owner's connection can ask). */
  async share(sessionId: string): Promise<{ share_token: string; expires_at: string }> {
    const s = this.live.get(sessionId);
    if (!s) throw new Error(`share: session ${sessionId} is not live on this server`);
    const token = randomBytes(24).toString('base64url');
    const expires = this.now() + SHARE_TOKEN_TTL_S * 1000;
    const hash = sha256(token);
    s.shares.set(hash, expires);
    const expires_at = new Date(expires).toISOString();
    await this.publish(sessionId, { share: hash, expires_at });
    return { share_token: token, expires_at };
  }

  /**
   * Resolves when `cred` may follow `sessionId`. Throws 'unauthenticated' with no credentials or a
   * bad key, and 'not_found' for credentials that do not open this session — the same answer as for a session
   * that does not exist, so that ids cannot be probed.
   */
  async authorize(sessionId: string, cred: FollowCredentials): Promise<void> {
    if (!cred.shareToken && !cred.authorization) {
      throw new DomainError(
        'unauthenticated',
        'Following a live session needs the owner\'s API key (Authorization: Bearer …, or ?api_key=…) or a share token (?share_token=…) from the stream\'s {"action":"share"}.',
      );
    }
    // A bad key is a 401 whatever the session.
    const account = cred.authorization && this.o.access ? await this.o.access.authenticate(cred.authorization) : null;
    const s = this.live.get(sessionId) ?? (await this.stored(sessionId));
    if (s) {
      if (cred.shareToken && this.validShare(s, cred.shareToken)) return;
      if (account && s.owner !== null && account.id === s.owner) return;
    }
    throw new DomainError('not_found', `No live session '${sessionId}' that these credentials may follow (send the owner's API key or a valid share token).`);
  }

  private validShare(s: SessionAccess, token: string): boolean {
    const hash = Buffer.from(sha256(token), 'hex');
    const now = this.now();
    for (const [h, expires] of s.shares) {
      if (expires > now && timingSafeEqual(Buffer.from(h, 'hex'), hash)) return true;
    }
    return false;
  }

  /** The records of a session published by any server (null when there are none). */
  private async stored(sessionId: string): Promise<SessionAccess | null> {
    let found = false;
    let owner: string | null = null;
    const shares = new Map<string, number>();
    try {
      for await (const m of this.o.bus.replay<AccessRecord>(accessSubject(sessionId), { follow: false })) {
        const r = m.data;
        found = true;
        if ('owner' in r) owner = r.owner;
        else if ('share' in r && typeof r.share === 'string') shares.set(r.share, Date.parse(r.expires_at));
      }
    } catch (err) {
      this.o.logger.warn({ err, session: sessionId }, 'could not read the access records of a session');
    }
    return found ? { owner, shares } : null;
  }

  private async publish(sessionId: string, record: AccessRecord): Promise<void> {
    try {
      await this.o.bus.publish(accessSubject(sessionId), record);
    } catch (err) {
      // Followers on this server still work (memory); remote ones are refused until it is published.
      this.o.logger.warn({ err, session: sessionId }, 'could not publish the access record of a session');
    }
  }
}
