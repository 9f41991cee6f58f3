/**
 * Transcript chat storage (issue 9): the cached embeddings of a transcript's segments (one row per
 * segment and embedding model, `real[]`) and the turns of chat sessions. Callers check ownership of the
 * transcript first (TranscriptStore.get); session reads are additionally scoped to transcript and owner.
 */
import { randomUUID } from 'node:crypto';
import type { Database } from './database.ts';
import { isUuid } from './ids.ts';

export type ChatTurnRole = 'user' | 'assistant';

export interface ChatTurn {
  role: ChatTurnRole;
  content: string;
  createdAt: Date;
}

/** Rows per INSERT when caching embeddings (keeps statements and parameter counts small). */
const INSERT_BATCH = 200;

/** A PostgreSQL array literal of a vector (float32 values print exactly and round-trip through real). */
function vectorLiteral(v: ArrayLike<number>): string {
  const parts: string[] = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (!Number.isFinite(x)) throw new RangeError(`embedding value ${i} is not finite`);
    parts[i] = String(x);
  }
  return `{${parts.join(',')}}`;
}

export class TranscriptChatStore {
  constructor(
    private readonly db: Database,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** The cached embeddings of a transcript for `model`, indexed by segment_order (missing ones absent). */
  async embeddings(transcriptId: string, model: string): Promise<Map<number, Float32Array>> {
    const out = new Map<number, Float32Array>();
    if (!isUuid(transcriptId)) return out;
    const rows = await this.db.query<{ segment_order: number; embedding: number[] }>(
      `SELECT segment_order, embedding FROM transcript_segment_embeddings WHERE transcript_id = $1 AND model = $2 ORDER BY segment_order`,
      [transcriptId, model],
    );
    for (const r of rows) out.set(Number(r.segment_order), Float32Array.from(r.embedding, Number));
    return out;
  }

  /** Replaces the cached embeddings of a transcript for `model`: `vectors[i]` is segment `orders[i]` (default i). */
  async saveEmbeddings(transcriptId: string, model: string, vectors: ArrayLike<number>[], orders: number[] = vectors.map((_, i) => i)): Promise<void> {
    if (!isUuid(transcriptId)) throw new Error(`Invalid transcript id '${transcriptId}'`);
    if (orders.length !== vectors.length) throw new RangeError(`${vectors.length} vectors for ${orders.length} segments`);
    await this.db.transaction(async (tx) => {
      await tx.query(`DELETE FROM transcript_segment_embeddings WHERE transcript_id = $1 AND model = $2`, [transcriptId, model]);
      for (let from = 0; from < vectors.length; from += INSERT_BATCH) {
        const batch = vectors.slice(from, from + INSERT_BATCH);
        const params: unknown[] = [transcriptId, model];
        const values = batch.map((v, i) => {
          params.push(orders[from + i], vectorLiteral(v));
          return `($1, $2, $${params.length - 1}::int, $${params.length}::real[])`;
        });
        // A concurrent first chat may have cached the same vectors meanwhile: last writer wins.
        await tx.query(
          `INSERT INTO transcript_segment_embeddings (transcript_id, model, segment_order, embedding) VALUES ${values.join(', ')}
           ON CONFLICT (transcript_id, model, segment_order) DO UPDATE SET embedding = EXCLUDED.embedding`,
          params,
        );
      }
    });
  }

  /** A new session id (sessions exist once their first turn is stored). */
  newSessionId(): string {
    return randomUUID();
  }

  /** Whether `sessionId` has turns on this transcript by this owner. */
  async sessionExists(sessionId: string, transcriptId: string, ownerId: string): Promise<boolean> {
    if (!isUuid(sessionId) || !isUuid(transcriptId) || !isUuid(ownerId)) return false;
    const rows = await this.db.query(`SELECT 1 FROM transcript_chat_turns WHERE session_id = $1 AND transcript_id = $2 AND owner_id = $3 LIMIT 1`, [sessionId, transcriptId, ownerId]);
    return rows.length > 0;
  }

  /** The last `limit` turns of a session, oldest first. */
  async turns(sessionId: string, transcriptId: string, ownerId: string, limit = 50): Promise<ChatTurn[]> {
    if (!isUuid(sessionId) || !isUuid(transcriptId) || !isUuid(ownerId)) return [];
    const rows = await this.db.query<{ role: ChatTurnRole; content: string; created_at: Date }>(
      `SELECT role, content, created_at FROM (
         SELECT id, role, content, created_at FROM transcript_chat_turns
         WHERE session_id = $1 AND transcript_id = $2 AND owner_id = $3
         ORDER BY id DESC LIMIT $4
       ) t ORDER BY id`,
      [sessionId, transcriptId, ownerId, limit],
    );
    return rows.map((r) => ({ role: r.role, content: r.content, createdAt: new Date(r.created_at) }));
  }

  /** Appends a question and its answer to a session (one transaction, in this order). */
  async appendExchange(t: { sessionId: string; transcriptId: string; ownerId: string; question: string; answer: string }): Promise<void> {
    const at = this.now();
    await this.db.transaction(async (tx) => {
      const insert = `INSERT INTO transcript_chat_turns (session_id, transcript_id, owner_id, role, content, created_at) VALUES ($1, $2, $3, $4, $5, $6)`;
      await tx.query(insert, [t.sessionId, t.transcriptId, t.ownerId, 'user', t.question, at]);
      await tx.query(insert, [t.sessionId, t.transcriptId, t.ownerId, 'assistant', t.answer, at]);
    });
  }
}
