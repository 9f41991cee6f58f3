import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aiConfigFromEnv } from '../../../config/ai.ts';
import { AiModels } from '../../../src/ai/ai-models.ts';
import { LlmAbortedError, LlmQueueFullError, PromptTooLongError, type ChatMessage } from '../../../src/engines/llm/chat-backend.ts';
import { LocalLlm } from '../../../src/engines/llm/local-llm.ts';
import { ModelRegistry } from '../../../src/models/registry.ts';
import { Metrics } from '../../../src/observability/metrics.ts';
import { MODELS_DIR } from '../../helpers/paths.ts';

/** The value of one sample of the Prometheus text (labels matched in any order); undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.keys(got).length === Object.keys(labels).length && Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

const MODEL = 'qwen2-mini-random';
const msgs: ChatMessage[] = [{ role: 'user', content: 'hello' }];

describe('LLM metrics, local backend (qwen2-mini-random through AiModels)', () => {
  let metrics: Metrics;
  let models: AiModels;
  beforeAll(async () => {
    metrics = new Metrics({ processMetrics: false });
    const registry = await ModelRegistry.create(MODELS_DIR);
    const config = aiConfigFromEnv({ LLM_MODEL: MODEL, EMBED_MODEL: 'minilm-mini-random', LLM_CONTEXT_SIZE: '512', LLM_THREADS: '1', LLM_SEQUENCES: '2', LLM_MAX_QUEUE: '1' });
    models = new AiModels({ registry, config, metrics });
  });
  afterAll(async () => {
    await models?.close();
  });

  it('counts requests by outcome, tokens, queue depth, busy sequences and queue-full rejections', async () => {
    const llm = await models.llm();
    const text0 = (await metrics.render()).body;
    const local = { model: MODEL, backend: 'local' };
    expect(sample(text0, 'stt_llm_queue_depth', { model: MODEL })).toBe(0);
    expect(sample(text0, 'stt_llm_busy_sequences', { model: MODEL })).toBe(0);

    expect(llm).toBeInstanceOf(LocalLlm);
    const promptTokens = (llm as LocalLlm).tokenizePrompt((llm as LocalLlm).renderPrompt(msgs)).length;
    const first = await llm.chat(msgs, { maxTokens: 8 });
    expect(first.completionTokens).toBe(8);

    // Both sequences busy, one request queued (to be aborted), one refused: the queue holds 1.
    const running = [llm.chat(msgs, { maxTokens: 300 }), llm.chat(msgs, { maxTokens: 300 })];
    const ac = new AbortController();
    const queued = llm.chat(msgs, { maxTokens: 8, signal: ac.signal });
    await expect(llm.chat(msgs, { maxTokens: 8 })).rejects.toBeInstanceOf(LlmQueueFullError);
    const during = (await metrics.render()).body;
    expect(sample(during, 'stt_llm_busy_sequences', { model: MODEL })).toBe(2);
    expect(sample(during, 'stt_llm_queue_depth', { model: MODEL })).toBe(1);
    ac.abort();
    await expect(queued).rejects.toBeInstanceOf(LlmAbortedError);
    expect(sample((await metrics.render()).body, 'stt_llm_queue_depth', { model: MODEL })).toBe(0);
    const done = await Promise.all(running);

    // Refused before a sequence: an error, no tokens.
    await expect(llm.chat(msgs, { maxTokens: 600 })).rejects.toBeInstanceOf(PromptTooLongError);

    // Cancelled while generating: aborted, its tokens so far counted.
    const ac2 = new AbortController();
    let pieces = 0;
    await expect(llm.chat(msgs, { maxTokens: 300, signal: ac2.signal, onText: () => ++pieces === 3 && ac2.abort() })).rejects.toBeInstanceOf(LlmAbortedError);

    const text = (await metrics.render()).body;
    const okTokens = first.completionTokens + done[0].completionTokens + done[1].completionTokens;
    expect(sample(text, 'stt_llm_requests_total', { ...local, outcome: 'ok' })).toBe(3);
    expect(sample(text, 'stt_llm_requests_total', { ...local, outcome: 'aborted' })).toBe(2);
    expect(sample(text, 'stt_llm_requests_total', { ...local, outcome: 'rejected' })).toBe(1);
    expect(sample(text, 'stt_llm_requests_total', { ...local, outcome: 'error' })).toBe(1);
    expect(sample(text, 'stt_llm_queue_full_total', local)).toBe(1);
    expect(sample(text, 'stt_llm_request_duration_seconds_count', { ...local, outcome: 'ok' })).toBe(3);
    expect(sample(text, 'stt_llm_request_duration_seconds_count', { ...local, outcome: 'aborted' })).toBe(2);
    expect(sample(text, 'stt_llm_request_duration_seconds_sum', { ...local, outcome: 'ok' })).toBeGreaterThan(0);
    // 3 finished prompts + the one cancelled mid-generation; the queued and refused ones never got a sequence.
    expect(sample(text, 'stt_llm_prompt_tokens_total', local)).toBe(4 * promptTokens);
    const generated = sample(text, 'stt_llm_generated_tokens_total', local)!;
    expect(generated - okTokens).toBeGreaterThanOrEqual(3);
    expect(generated - okTokens).toBeLessThan(300);
    expect(sample(text, 'stt_llm_busy_sequences', { model: MODEL })).toBe(0);
    expect(sample(text, 'stt_llm_queue_depth', { model: MODEL })).toBe(0);
  });
});

describe('LLM metrics, remote backend (a fake OpenAI-compatible server)', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const content = (JSON.parse(body) as { messages: ChatMessage[] }).messages[0].content;
        if (content === 'busy') {
          res.writeHead(429, { 'retry-after': '2', 'content-type': 'application/json' }).end('{"error":"busy"}');
        } else if (content === 'hang') {
          // answers never; the client aborts
        } else if (content === 'no usage') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ choices: [{ message: { content: 'x' }, finish_reason: 'stop' }] }));
        } else {
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ choices: [{ message: { content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 11, completion_tokens: 5 } }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('labels backend=remote, counts usage tokens where reported, 429 as rejected', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const registry = await ModelRegistry.create(MODELS_DIR);
    const models = new AiModels({ registry, config: aiConfigFromEnv({ LLM_MODEL: 'big-remote', LLM_BASE_URL: base }), metrics });
    const llm = await models.llm();
    await llm.chat([{ role: 'user', content: 'a' }], { maxTokens: 8 });
    await llm.chat([{ role: 'user', content: 'b' }], { maxTokens: 8 });
    await llm.chat([{ role: 'user', content: 'no usage' }], { maxTokens: 8 });
    await expect(llm.chat([{ role: 'user', content: 'busy' }], { maxTokens: 8 })).rejects.toBeInstanceOf(LlmQueueFullError);
    const ac = new AbortController();
    const hung = llm.chat([{ role: 'user', content: 'hang' }], { maxTokens: 8, signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(hung).rejects.toBeInstanceOf(LlmAbortedError);
    await models.close();

    const text = (await metrics.render()).body;
    const remote = { model: 'big-remote', backend: 'remote' };
    expect(sample(text, 'stt_llm_requests_total', { ...remote, outcome: 'ok' })).toBe(3);
    expect(sample(text, 'stt_llm_requests_total', { ...remote, outcome: 'rejected' })).toBe(1);
    expect(sample(text, 'stt_llm_requests_total', { ...remote, outcome: 'aborted' })).toBe(1);
    expect(sample(text, 'stt_llm_requests_total', { ...remote, outcome: 'error' })).toBeUndefined();
    expect(sample(text, 'stt_llm_queue_full_total', remote)).toBe(1);
    expect(sample(text, 'stt_llm_prompt_tokens_total', remote)).toBe(22);
    expect(sample(text, 'stt_llm_generated_tokens_total', remote)).toBe(10);
    expect(sample(text, 'stt_llm_request_duration_seconds_count', { ...remote, outcome: 'ok' })).toBe(3);
    // No local queue for an external server.
    expect(sample(text, 'stt_llm_queue_depth', { model: 'big-remote' })).toBeUndefined();
  });
});
