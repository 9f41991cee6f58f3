/**
 * The pieces of transcript chat (`/api/v1/transcripts/:id/chat/`, wired by the transcript store's owner):
 * embed the segments once, retrieve the top-k by cosine for a question, answer from those segments with
 * the chat history, and return the sources.
 */
import type { Embedder } from '../pipeline/embedding-service.ts';
import type { ChatBackend, ChatMessage } from '../engines/llm/chat-backend.ts';

export interface TranscriptSegment {
  /** Position of the segment in its transcript (the API's `segment_order`). */
  segment_order: number;
  text: string;
  /** Start time in seconds, when known (shown to the model as context). */
  start?: number;
  /** Precomputed embedding (from embedSegments), L2-normalised. */
  embedding?: ArrayLike<number>;
}

export interface ChatSource {
  segment_order: number;
  text: string;
  score: number;
}

/** Embeddings of the segments' texts, in order (store them with the segments). */
export async function embedSegments(embedder: Embedder, segments: { text: string }[], signal?: AbortSignal): Promise<Float32Array[]> {
  return embedder.embed(
    segments.map((s) => s.text),
    signal,
  );
}

/** Indices and cosine scores of the k vectors most similar to the query, best first (ties: earlier first). */
export function topKByCosine(query: ArrayLike<number>, vectors: ArrayLike<number>[], k: number): { index: number; score: number }[] {
  let qn = 0;
  for (let i = 0; i < query.length; i++) qn += query[i] * query[i];
  qn = Math.sqrt(qn) || 1;
  const scored = vectors.map((v, index) => {
    if (v.length !== query.length) throw new RangeError(`vector ${index} has ${v.length} dimensions, the query ${query.length}`);
    let dot = 0;
    let vn = 0;
    for (let i = 0; i < v.length; i++) {
      dot += v[i] * query[i];
      vn += v[i] * v[i];
    }
    return { index, score: dot / (qn * (Math.sqrt(vn) || 1)) };
  });
  scored.sort((a, b) => b.score - a.score || a.index - b.index);
  return scored.slice(0, Math.max(0, k));
}

export interface ChatOverTranscriptInput {
  question: string;
  segments: TranscriptSegment[];
  /** Earlier turns of this chat session, oldest first. */
  history?: ChatMessage[];
  backend: ChatBackend;
  embedder: Embedder;
  /** Segments retrieved (default 5). */
  k?: number;
  maxTokens?: number;
  signal?: AbortSignal;
}

const SYSTEM = 'You answer questions about a transcript using only the numbered excerpts given. Cite excerpts as [n]. If the excerpts do not contain the answer, say that the transcript does not say.';

export async function chatOverTranscript(input: ChatOverTranscriptInput): Promise<{ answer: string; sources: ChatSource[] }> {
  const { question, segments, backend, embedder } = input;
  const k = input.k ?? 5;
  const maxTokens = input.maxTokens ?? 512;
  let vectors = segments.map((s) => s.embedding);
  if (vectors.some((v) => v === undefined)) {
    const missing = segments.map((s, i) => ({ s, i })).filter(({ s }) => !s.embedding);
    const computed = await embedSegments(
      embedder,
      missing.map(({ s }) => s),
      input.signal,
    );
    vectors = [...vectors];
    missing.forEach(({ i }, j) => (vectors[i] = computed[j]));
  }
  const [q] = await embedder.embed([question], input.signal);
  const top = segments.length ? topKByCosine(q, vectors as ArrayLike<number>[], k) : [];
  const sources = top.map(({ index, score }) => ({ segment_order: segments[index].segment_order, text: segments[index].text, score: Math.round(score * 1e4) / 1e4 }));

  // Excerpts in transcript order read better than by score; history is trimmed oldest-first to fit.
  const excerpts = [...top]
    .sort((a, b) => segments[a.index].segment_order - segments[b.index].segment_order)
    .map(({ index }) => {
      const s = segments[index];
      const time = s.start !== undefined ? ` (${Math.floor(s.start / 60)}:${String(Math.floor(s.start % 60)).padStart(2, '0')})` : '';
      return `[${s.segment_order}]${time} ${s.text}`;
    })
    .join('\n');
  const user: ChatMessage = { role: 'user', content: `Transcript excerpts:\n${excerpts || '(none)'}\n\nQuestion: ${question}` };
  const history = [...(input.history ?? [])];
  const size = (ms: ChatMessage[]) => ms.reduce((n, m) => n + backend.countTokens(m.content) + 8, 0);
  const room = backend.contextSize - maxTokens - backend.countTokens(SYSTEM) - 32;
  while (history.length && size([...history, user]) > room) history.shift();
  const messages: ChatMessage[] = [{ role: 'system', content: SYSTEM }, ...history, user];
  const r = await backend.chat(messages, { maxTokens, signal: input.signal });
  return { answer: r.text.trim(), sources };
}
