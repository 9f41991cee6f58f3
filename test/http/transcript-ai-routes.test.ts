/* eslint-disable @typescript-eslint/no-explicit-any -- response bodies are checked by the assertions */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { aiConfigFromEnv } from '../../config/ai.ts';
import { AiModels } from '../../src/ai/ai-models.ts';
import { LlmServices } from '../../src/ai/llm-services.ts';
import { AccessControl } from '../../src/auth/access-control.ts';
import { issueKey } from '../../src/auth/keys.ts';
import type { ChatBackend, ChatMessage } from '../../src/engines/llm/chat-backend.ts';
import type { Segment } from '../../src/formats/transcript.ts';
import type { HttpServer } from '../../src/http/http-server.ts';
import { testHttpServer } from '../helpers/http-server.ts';
import { registerTranscriptAiRoutes, type TranscriptAiRouteDeps } from '../../src/http/routes/transcript-ai-routes.ts';
import { ModelRegistry } from '../../src/models/registry.ts';
import { createStores, type Stores } from '../../src/store/index.ts';
import { paidUser } from '../helpers/accounts.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { DB_VARIANTS, variantTitle, type TestDatabase } from '../store/test-databases.ts';

const seg = (start: number, text: string, speaker: string): Segment => ({ start, end: start + 2, text, speaker, confidence: 0.9, words: [] });
const SEGMENTS: Segment[] = [
  seg(0, ' Welcome everyone to the weekly release meeting.', 'Anna'),
  seg(2, ' The login bug is fixed and the tests pass.', 'Ben'),
  seg(4, ' We will ship version two on Friday afternoon.', 'Anna'),
  seg(6, '   ', 'Ben'),
  seg(8, ' Marketing needs the release notes by Thursday.', 'Cleo'),
  seg(10, ' Great, thanks everyone, see you next week.', 'Anna'),
];
const TEXT = SEGMENTS.map((s) => s.text.trim())
  .filter(Boolean)
  .join(' ');

const j = (r: Response): Promise<any> => r.json();

async function startServer(deps: TranscriptAiRouteDeps): Promise<{ server: HttpServer; base: string }> {
  const server = testHttpServer();
  registerTranscriptAiRoutes(server, deps);
  await server.start();
  return { server, base: `http://127.0.0.1:${server.port}` };
}

/** The real backend, with every message list it is sent recorded. */
function spy(backend: ChatBackend, seen: ChatMessage[][]): ChatBackend {
  return new Proxy(backend, {
    get(target, prop) {
      if (prop === 'chat') {
        return (messages: ChatMessage[], opts: Parameters<ChatBackend['chat']>[1]) => {
          seen.push(messages);
          return target.chat(messages, opts);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

let registry: ModelRegistry;
let models: AiModels;
beforeAll(async () => {
  registry = await ModelRegistry.create(MODELS_DIR);
  const config = aiConfigFromEnv({ LLM_MODEL: 'qwen2-mini-random', EMBED_MODEL: 'minilm-mini-random', LLM_CONTEXT_SIZE: '1024', LLM_THREADS: '1', LLM_SEQUENCES: '2', LLM_MAX_TOKENS: '24' });
  models = new AiModels({ registry, config, intraOpThreads: 1 });
});
afterAll(async () => {
  await models?.close();
});

for (const variant of DB_VARIANTS) {
  describe.skipIf(variant.skip !== null)(`transcript AI routes on ${variantTitle(variant)}`, () => {
    let t: TestDatabase;
    let s: Stores;
    let access: AccessControl;
    let server: HttpServer;
    let base: string;
    const seen: ChatMessage[][] = [];

    const user = (email: string) => paidUser(s, base, email);
    const save = (ownerId: string, segments: Segment[] = SEGMENTS, text = TEXT) =>
      s.transcripts.save({ ownerId, model: 'large-v3-turbo', language: 'en', duration: 12, source: 'file', filename: 'meeting.mp3', segments, text });
    const count = async (sql: string, params: unknown[]) => Number((await t.db.query<{ n: number }>(sql, params))[0].n);

    beforeAll(async () => {
      t = await variant.open();
      s = createStores(t.db);
      access = new AccessControl({ accounts: s.accounts, usage: s.usage, config: {} });
      const backend = spy(await models.llm(), seen);
      ({ server, base } = await startServer({
        access,
        transcripts: s.transcripts,
        chat: s.transcriptChat,
        ai: { config: models.config, embedder: (m?: string) => models.embedder(m), llm: async () => backend },
        services: new LlmServices({ llm: async () => backend, maxTokens: models.config.llm.maxTokens }),
      }));
    });
    afterAll(async () => {
      await server?.close();
      await t?.dispose();
    });
    beforeEach(async () => {
      await t.truncate();
      await t.db.query('TRUNCATE transcript_chat_turns, transcript_segment_embeddings');
      seen.length = 0;
    });

    it('chat: answer, sources by score from the segments, embeddings cached, second turn keeps the history', async () => {
      const anna = await user('anna@example.com');
      const { id } = await save(anna.account.id);

      const r1 = await anna.post(`/api/v1/transcripts/${id}/chat/`, { question: 'When do we ship version two?' });
      expect(r1.status).toBe(200);
      const b1 = await j(r1);
      expect(Object.keys(b1).sort()).toEqual(['answer', 'session_id', 'sources']);
      expect(typeof b1.answer).toBe('string');
      expect(b1.session_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(b1.sources.length).toBe(5); // k = 5 of the 5 non-empty segments
      const scores = b1.sources.map((x: any) => x.score);
      expect(scores).toEqual([...scores].sort((a: number, b: number) => b - a));
      for (const src of b1.sources) {
        expect(Object.keys(src).sort()).toEqual(['score', 'segment_order', 'text']);
        expect(Number.isInteger(src.segment_order)).toBe(true);
        expect(src.segment_order).toBeGreaterThanOrEqual(0);
        expect(src.segment_order).toBeLessThan(SEGMENTS.length);
        expect(src.text).toBe(SEGMENTS[src.segment_order].text.trim());
        expect(src.score).toBeGreaterThanOrEqual(-1);
        expect(src.score).toBeLessThanOrEqual(1);
      }
      expect(b1.sources.map((x: any) => x.segment_order)).not.toContain(3); // the blank segment is never a source
      // The vectors are stored: one per non-empty segment, 384 dimensions, for the embedder's model.
      const rows = await t.db.query<{ segment_order: number; embedding: number[]; model: string }>(
        'SELECT segment_order, embedding, model FROM transcript_segment_embeddings WHERE transcript_id = $1 ORDER BY segment_order',
        [id],
      );
      expect(rows.map((r) => r.segment_order)).toEqual([0, 1, 2, 4, 5]);
      expect(rows.every((r) => r.model === 'minilm-mini-random' && r.embedding.length === 384)).toBe(true);
      // The stored vectors equal a fresh embedding of the segment (float32 round trip).
      const [fresh] = await (await models.embedder()).embed([SEGMENTS[2].text.trim()]);
      rows[2].embedding.forEach((v, d) => expect(Math.abs(Number(v) - fresh[d])).toBeLessThan(1e-6));
      expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns WHERE session_id = $1', [b1.session_id])).toBe(2);

      const r2 = await anna.post(`/api/v1/transcripts/${id}/chat/`, { question: 'And the release notes?', session_id: b1.session_id });
      expect(r2.status).toBe(200);
      const b2 = await j(r2);
      expect(b2.session_id).toBe(b1.session_id);
      expect(b2.sources.length).toBe(5);
      expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns WHERE session_id = $1', [b1.session_id])).toBe(4);
      const turns = await t.db.query<{ role: string; content: string }>('SELECT role, content FROM transcript_chat_turns WHERE session_id = $1 ORDER BY id', [b1.session_id]);
      expect(turns.map((x) => x.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
      expect(turns[0].content).toBe('When do we ship version two?');
      expect(turns[1].content).toBe(b1.answer);
      // The second prompt carries the first exchange before the new question.
      const prompt = seen.at(-1)!;
      expect(prompt[0].role).toBe('system');
      expect(prompt.slice(1, 3)).toEqual([
        { role: 'user', content: 'When do we ship version two?' },
        { role: 'assistant', content: b1.answer },
      ]);
      expect(prompt.at(-1)!.content).toMatch(/Question: And the release notes\?$/);
      // Cached vectors are reused, not duplicated.
      expect(await count('SELECT count(*)::int AS n FROM transcript_segment_embeddings WHERE transcript_id = $1', [id])).toBe(5);

      // A new question without session_id starts a new session.
      const b3 = await j(await anna.post(`/api/v1/transcripts/${id}/chat/`, { question: 'Who fixed the bug?' }));
      expect(b3.session_id).not.toBe(b1.session_id);
      expect(seen.at(-1)!.length).toBe(2); // system + question: no history

      // Deleting the transcript removes its vectors and chat turns.
      expect(await s.transcripts.delete(anna.account.id, id)).toBe(true);
      expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns WHERE transcript_id = $1', [id])).toBe(0);
      expect(await count('SELECT count(*)::int AS n FROM transcript_segment_embeddings WHERE transcript_id = $1', [id])).toBe(0);
    });

    it('tenant isolation (404) and unknown sessions (a new session)', async () => {
      const anna = await user('anna@example.com');
      const ben = await user('ben@example.com');
      const { id } = await save(anna.account.id);
      const { id: other } = await save(anna.account.id);
      const { session_id } = await j(await anna.post(`/api/v1/transcripts/${id}/chat/`, { question: 'When is the release?' }));
      const turnsBefore = await count('SELECT count(*)::int AS n FROM transcript_chat_turns', []);

      for (const [path, body] of [
        [`/api/v1/transcripts/${id}/chat/`, { question: 'What was said?' }],
        [`/api/v1/transcripts/${id}/chat/`, { question: 'What was said?', session_id }],
        [`/api/v1/transcripts/${id}/analyze/`, { type: 'topics' }],
        [`/api/v1/transcripts/${id}/generate/`, { type: 'meeting_notes' }],
        ['/api/v1/transcripts/not-a-uuid/chat/', { question: 'x' }],
        ['/api/v1/transcripts/00000000-0000-4000-8000-000000000000/analyze/', { type: 'topics' }],
      ] as const) {
        const r = await ben.post(path, body);
        expect(r.status, path).toBe(404);
        expect((await j(r)).error).toBe('Transcript not found.');
      }
      expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns', [])).toBe(turnsBefore);

      // An id that names no session of this transcript and owner starts a new session (the
      // reference's example sends "optional"): Anna's session on another transcript, Ben with
      // Anna's session id on his own transcript, a random and a malformed id.
      const { id: bens } = await save(ben.account.id);
      const seen = new Set<string>([session_id]);
      for (const [who, tid, sid] of [
        [anna, other, session_id],
        [ben, bens, session_id],
        [anna, id, '00000000-0000-4000-8000-000000000000'],
        [anna, id, 'optional'],
      ] as const) {
        const r = await who.post(`/api/v1/transcripts/${tid}/chat/`, { question: 'Again?', session_id: sid });
        expect(r.status, sid).toBe(200);
        const b = await j(r);
        expect(b.session_id).toMatch(/^[0-9a-f-]{36}$/);
        expect(seen.has(b.session_id), 'a fresh session id').toBe(false);
        seen.add(b.session_id);
        // A new session: this question and its answer only; the session named is not touched.
        expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns WHERE session_id = $1', [b.session_id])).toBe(2);
        // The new id continues the new session.
        const again = await j(await who.post(`/api/v1/transcripts/${tid}/chat/`, { question: 'And then?', session_id: b.session_id }));
        expect(again.session_id).toBe(b.session_id);
        expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns WHERE session_id = $1', [b.session_id])).toBe(4);
      }
      expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns WHERE session_id = $1', [session_id])).toBe(2);

      const anon = await fetch(`${base}/api/v1/transcripts/${id}/chat/`, { method: 'POST', body: JSON.stringify({ question: 'x' }) });
      expect(anon.status).toBe(401);
    });

    it('validation: 400 for a missing or empty question, a bad session_id or type, a non-object body', async () => {
      const anna = await user('anna@example.com');
      const { id } = await save(anna.account.id);
      for (const body of [{}, { question: '' }, { question: '   ' }, { question: 42 }, { question: 'x'.repeat(4001) }]) {
        const r = await anna.post(`/api/v1/transcripts/${id}/chat/`, body);
        expect(r.status, JSON.stringify(body).slice(0, 40)).toBe(400);
        expect((await j(r)).error).toMatch(/question/);
      }
      expect((await anna.post(`/api/v1/transcripts/${id}/chat/`, { question: 'x', session_id: 7 })).status).toBe(400);
      expect((await anna.post(`/api/v1/transcripts/${id}/chat/`, ['question'])).status).toBe(400);
      const empty = await fetch(`${base}/api/v1/transcripts/${id}/chat/`, { method: 'POST', headers: { authorization: await bearer(anna.account.id) } });
      expect(empty.status).toBe(400);
      const badType = await anna.post(`/api/v1/transcripts/${id}/analyze/`, { type: 'haiku' });
      expect(badType.status).toBe(400);
      expect((await j(badType)).error).toMatch(/type must be one of sentiment, topics/);
      const noType = await anna.post(`/api/v1/transcripts/${id}/generate/`, {});
      expect(noType.status).toBe(400);
      expect((await j(noType)).error).toMatch(/type must be one of/);
      expect((await anna.post(`/api/v1/transcripts/${id}/generate/`, { type: 'meeting_notes', max_tokens: 0 })).status).toBe(400);
      expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns', [])).toBe(0);
    });

    it('analyze and generate on a stored transcript: the /v1/analyze and /v1/generate shapes', async () => {
      const anna = await user('anna@example.com');
      const { id } = await save(anna.account.id);
      const a = await anna.post(`/api/v1/transcripts/${id}/analyze/`, { type: 'topics' });
      expect(a.status).toBe(200);
      const ab = await j(a);
      expect(Object.keys(ab).sort()).toEqual(['model', 'result', 'type']);
      expect(ab).toMatchObject({ type: 'topics', model: 'qwen2-mini-random' });
      expect(Array.isArray(ab.result.topics)).toBe(true);
      // The prompt is the stored transcript's text.
      expect(seen.at(-1)!.at(-1)!.content).toContain(TEXT);

      const s1 = await anna.post(`/api/v1/transcripts/${id}/analyze/`, { type: 'sentiment', max_tokens: 16 });
      expect(s1.status).toBe(200);
      expect(['positive', 'neutral', 'negative', 'mixed']).toContain((await j(s1)).result.label);

      const g = await anna.post(`/api/v1/transcripts/${id}/generate/`, { type: 'meeting_notes' });
      expect(g.status).toBe(200);
      const gb = await j(g);
      expect(Object.keys(gb).sort()).toEqual(['content', 'model', 'type']);
      expect(gb).toMatchObject({ type: 'meeting_notes', model: 'qwen2-mini-random' });
      expect(typeof gb.content).toBe('string');
      const c = await anna.post(`/api/v1/transcripts/${id}/generate/`, { type: 'chapter_markers' });
      expect(c.status).toBe(200);
      expect(Array.isArray((await j(c)).content.chapters)).toBe(true);
    });

    it('503 with the pull command when the embedder or the LLM is not installed', async () => {
      const anna = await user('anna@example.com');
      const { id } = await save(anna.account.id);
      const missing = new AiModels({ registry, config: aiConfigFromEnv({ LLM_MODEL: 'qwen2.5-1.5b-instruct', EMBED_MODEL: 'all-minilm-l6-v2' }) });
      const noLlm = new AiModels({ registry, config: aiConfigFromEnv({ LLM_MODEL: 'qwen2.5-1.5b-instruct', EMBED_MODEL: 'minilm-mini-random' }), intraOpThreads: 1 });
      const services = (m: AiModels) => new LlmServices({ llm: () => m.llm(), maxTokens: m.config.llm.maxTokens });
      const a = await startServer({ access, transcripts: s.transcripts, chat: s.transcriptChat, ai: missing, services: services(missing) });
      const b = await startServer({ access, transcripts: s.transcripts, chat: s.transcriptChat, ai: noLlm, services: services(noLlm) });
      try {
        const r = await fetch(`${a.base}/api/v1/transcripts/${id}/chat/`, { method: 'POST', headers: { authorization: await bearer(anna.account.id) }, body: JSON.stringify({ question: 'When?' }) });
        expect(r.status).toBe(503);
        expect((await j(r)).error).toMatch(/npm run models:pull -- all-minilm-l6-v2/);
        const r2 = await fetch(`${b.base}/api/v1/transcripts/${id}/chat/`, { method: 'POST', headers: { authorization: await bearer(anna.account.id) }, body: JSON.stringify({ question: 'When?' }) });
        expect(r2.status).toBe(503);
        expect((await j(r2)).error).toMatch(/npm run models:pull -- qwen2.5-1.5b-instruct/);
        const r3 = await fetch(`${b.base}/api/v1/transcripts/${id}/generate/`, {
          method: 'POST',
          headers: { authorization: await bearer(anna.account.id) },
          body: JSON.stringify({ type: 'meeting_notes' }),
        });
        expect(r3.status).toBe(503);
        expect(await count('SELECT count(*)::int AS n FROM transcript_chat_turns', [])).toBe(0);
      } finally {
        await a.server.close();
        await b.server.close();
        await missing.close();
        await noLlm.close();
      }
    });

    async function bearer(accountId: string): Promise<string> {
      return `Bearer ${(await issueKey(s.accounts, accountId, 'k')).key}`;
    }
  });
}
