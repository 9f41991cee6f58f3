/**
 * Saved transcripts. Every read and delete is scoped to the owner (`owner_id = $n`): another
 * account's transcript is indistinguishable from one that does not exist.
 */
import { randomUUID } from 'node:crypto';
import type { Segment, Transcript } from '../formats/transcript.ts';
import type { Queryable } from './database.ts';
import { isUuid } from './ids.ts';

export type TranscriptStatus = 'processing' | 'completed' | 'failed';
export const TRANSCRIPT_STATUSES: readonly TranscriptStatus[] = ['processing', 'completed', 'failed'];

/** A result {@link Transcript} (the one model, formats/transcript.ts) with what the store adds. */
export interface NewTranscript extends Omit<Transcript, 'speakers'> {
  /** Account id; null for anonymous requests (stored, but listed by nobody). */
  ownerId: string | null;
  model: string;
  source: 'file' | 'stream';
  filename?: string;
  /** Default: the segments' speakers in order of appearance. */
  speakers?: string[];
  status?: TranscriptStatus;
}

export interface TranscriptSummary {
  id: string;
  status: TranscriptStatus;
  model: string;
  language: string;
  duration: number;
  source: 'file' | 'stream';
  filename: string | null;
  createdAt: Date;
}

export interface TranscriptRecord extends TranscriptSummary, Pick<Transcript, 'text' | 'segments' | 'speakers'> {
  ownerId: string | null;
}

export interface TranscriptFilter {
  status?: TranscriptStatus;
  language?: string;
  /** created_at >= from */
  from?: Date;
  /** created_at < to */
  to?: Date;
}

interface Row {
  id: string;
  owner_id: string | null;
  status: TranscriptStatus;
  model: string;
  language: string;
  duration: number;
  source: 'file' | 'stream';
  filename: string | null;
  text: string;
  segments: Segment[];
  speakers: string[];
  created_at: Date;
}

const SUMMARY_COLUMNS = 'id, status, model, language, duration, source, filename, created_at';

function toSummary(r: Row): TranscriptSummary {
  return {
    id: r.id,
    status: r.status,
    model: r.model,
    language: r.language,
    duration: Number(r.duration),
    source: r.source,
    filename: r.filename,
    createdAt: new Date(r.created_at),
  };
}

export class TranscriptStore {
  constructor(
    private readonly db: Queryable,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async save(t: NewTranscript): Promise<{ id: string }> {
    const id = randomUUID();
    const speakers = t.speakers ?? [...new Set(t.segments.map((s) => s.speaker).filter((s): s is string => !!s))];
    await this.db.query(
      `INSERT INTO transcripts (id, owner_id, status, model, language, duration, source, filename, text, segments, speakers, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12)`,
      [id, t.ownerId, t.status ?? 'completed', t.model, t.language, t.duration, t.source, t.filename ?? null, t.text, JSON.stringify(t.segments), JSON.stringify(speakers), this.now()],
    );
    return { id };
  }

  /** One page of the owner's transcripts, newest first, and the total matching count. */
  async list(ownerId: string, filter: TranscriptFilter, page: { offset: number; limit: number }): Promise<{ count: number; results: TranscriptSummary[] }> {
    if (!isUuid(ownerId)) return { count: 0, results: [] };
    const where = ['owner_id = $1'];
    const params: unknown[] = [ownerId];
    const add = (clause: string, value: unknown) => {
      params.push(value);
      where.push(clause.replace('?', `$${params.length}`));
    };
    if (filter.status) add('status = ?', filter.status);
    if (filter.language) add('language = ?', filter.language);
    if (filter.from) add('created_at >= ?', filter.from);
    if (filter.to) add('created_at < ?', filter.to);
    const whereSql = where.join(' AND ');
    const [{ count }] = await this.db.query<{ count: number }>(`SELECT count(*)::int AS count FROM transcripts WHERE ${whereSql}`, params);
    const rows = await this.db.query<Row>(`SELECT ${SUMMARY_COLUMNS} FROM transcripts WHERE ${whereSql} ORDER BY created_at DESC, id DESC LIMIT $${params.length + 1} OFFSET $${params.length + 2}`, [
      ...params,
      page.limit,
      page.offset,
    ]);
    return { count: Number(count), results: rows.map(toSummary) };
  }

  /** The transcript if it exists and belongs to `ownerId`. */
  async get(ownerId: string, id: string): Promise<TranscriptRecord | null> {
    if (!isUuid(ownerId) || !isUuid(id)) return null;
    const rows = await this.db.query<Row>(`SELECT * FROM transcripts WHERE id = $1 AND owner_id = $2`, [id, ownerId]);
    const r = rows[0];
    if (!r) return null;
    return { ...toSummary(r), ownerId: r.owner_id, text: r.text, segments: r.segments, speakers: r.speakers ?? [] };
  }

  /** Deletes the transcript if it belongs to `ownerId`; false otherwise. */
  async delete(ownerId: string, id: string): Promise<boolean> {
    if (!isUuid(ownerId) || !isUuid(id)) return false;
    const rows = await this.db.query(`DELETE FROM transcripts WHERE id = $1 AND owner_id = $2 RETURNING id`, [id, ownerId]);
    return rows.length > 0;
  }
}
