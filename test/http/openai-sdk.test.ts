/**
 * The official `openai` npm client against a real server (fixture models, embedded database): the
 * OpenAI-compatible routes must work with it unchanged — embeddings, models, audio translations —
 * and its errors must parse into `err.status` / `err.type` / `err.code` / `err.param`.
 */
import fs from 'node:fs';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { App } from '../../src/app.ts';
import { paidKey } from '../helpers/accounts.ts';
import { TEXTS, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { TestApps } from '../helpers/test-apps.ts';

const apps = new TestApps();
let app: App;
let base: string;
let key: string;
let client: OpenAI;
let speechPath: string;

beforeAll(async () => {
  app = await apps.start({ EMBED_MODEL: 'minilm-mini-random', LLM_MODEL: 'qwen2-mini-random', LLM_THREADS: '1', LLM_CONTEXT_SIZE: '512' });
  base = `http://127.0.0.1:${app.port}`;
  key = await paidKey(app);
  // No retries: a 429/5xx must surface as it was answered.
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 120_000 });
  speechPath = (await makeSpeechWav(TEXTS.hello, { padStartS: 0.5, padEndS: 0.5 })).path;
}, 120_000);
afterAll(() => apps.closeAll());

/** The rejection of `p` as the SDK's APIError (fails the test if `p` resolves). */
async function sdkError(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (err) {
    if (err instanceof OpenAI.APIError) return err;
    throw err;
  }
  throw new Error('expected the request to fail');
}

const audio = () => toFile(fs.createReadStream(speechPath), 'speech.wav', { type: 'audio/wav' });

describe('openai SDK: embeddings.create (POST /v1/embeddings)', () => {
  it('returns the same vectors as /v1/embed, in the OpenAI list shape, with base64 (the SDK default) and float', async () => {
    const texts = ['The meeting moved to Friday.', 'Ship the release.'];
    const ref = (await (
      await fetch(`${base}/v1/embed`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ texts }) })
    ).json()) as { embeddings: number[][]; dimensions: number; model: string };

    // No encoding_format: the SDK asks for base64 and decodes it to floats itself.
    const r = await client.embeddings.create({ model: 'text-embedding-3-small', input: texts });
    expect(r.object).toBe('list');
    expect(r.model).toBe('minilm-mini-random');
    expect(r.data.map((d) => [d.object, d.index])).toEqual([
      ['embedding', 0],
      ['embedding', 1],
    ]);
    expect(r.data[0].embedding).toHaveLength(ref.dimensions);
    // Float32 both ways: the decoded base64 is the float vector bit for bit.
    expect(r.data.map((d) => d.embedding)).toEqual(ref.embeddings);
    expect(r.usage.prompt_tokens).toBeGreaterThan(2 * 2); // at least [CLS] word [SEP] per text
    expect(r.usage.total_tokens).toBe(r.usage.prompt_tokens);

    const f = await client.embeddings.create({ model: 'minilm-mini-random', input: texts[0], encoding_format: 'float' });
    expect(f.data).toHaveLength(1);
    expect(f.data[0].embedding).toEqual(ref.embeddings[0]);
  });

  it('rejects what it cannot do with the SDK error fields: bad input, other dimensions, token ids', async () => {
    const empty = await sdkError(client.embeddings.create({ model: 'text-embedding-3-small', input: [] }));
    expect(empty).toBeInstanceOf(OpenAI.BadRequestError);
    expect(empty).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'input', code: 'invalid_request' });
    expect(empty.message).toMatch(/input is required/);

    const dims = await sdkError(client.embeddings.create({ model: 'text-embedding-3-small', input: 'hi', dimensions: 64 }));
    expect(dims).toMatchObject({ status: 400, param: 'dimensions', code: 'unsupported_value' });
    expect(dims.message).toMatch(/dimensions must be 384/);

    const ids = await sdkError(client.embeddings.create({ model: 'text-embedding-3-small', input: [[1, 2, 3]] }));
    expect(ids).toMatchObject({ status: 400, param: 'input' });
    expect(ids.message).toMatch(/token ids is not supported/);
  });
});

describe('openai SDK: models.list / models.retrieve (GET /v1/models)', () => {
  it('lists every model of the catalog as OpenAI model objects; the reference models field stays', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      expect(m).toMatchObject({ object: 'model', owned_by: expect.any(String), created: expect.any(Number) });
      ids.push(m.id);
    }
    for (const id of ['whisper-mini-random', 'minilm-mini-random', 'qwen2-mini-random', 'large-v3-turbo']) expect(ids).toContain(id);

    const raw = (await (await fetch(`${base}/v1/models`)).json()) as { object: string; models: { id: string; installed: boolean }[] };
    expect(raw.object).toBe('list');
    expect(raw.models.find((m) => m.id === 'whisper-mini-random')).toMatchObject({ installed: true });
    expect(raw.models.map((m) => m.id)).not.toContain('minilm-mini-random');

    expect(await client.models.retrieve('whisper-mini-random')).toMatchObject({ id: 'whisper-mini-random', object: 'model' });
    const missing = await sdkError(client.models.retrieve('no-such-model'));
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing).toMatchObject({ status: 404, type: 'invalid_request_error', code: 'model_not_found' });
  });
});

describe('openai SDK: audio.translations.create (POST /v1/audio/translations)', () => {
  it("runs Whisper's translate task: every response format, verbose_json says translate / english", async () => {
    const v = (await client.audio.translations.create({ file: await audio(), model: 'whisper-1', response_format: 'verbose_json', temperature: 0 })) as OpenAI.Audio.TranslationVerbose & {
      task: string;
    };
    expect(v).toMatchObject({ task: 'translate', language: 'english', text: expect.any(String) });
    expect(v.duration).toBeGreaterThan(1);
    expect(v.segments?.length).toBeGreaterThan(0);

    // Same audio, same model, greedy: only the task token differs, and the random-weight decoder answers it differently.
    const t = await client.audio.transcriptions.create({ file: await audio(), model: 'whisper-1', response_format: 'verbose_json', temperature: 0 });
    expect((t as unknown as { task: string }).task).toBe('transcribe');
    expect(v.text).not.toBe(t.text);

    const json = await client.audio.translations.create({ file: await audio(), model: 'whisper-1', temperature: 0 });
    expect(json.text).toBe(v.text);
    const text = (await client.audio.translations.create({ file: await audio(), model: 'whisper-1', response_format: 'text', temperature: 0 })) as unknown as string;
    expect(text.trim()).toBe(v.text.trim());
    const srt = (await client.audio.translations.create({ file: await audio(), model: 'whisper-1', response_format: 'srt', temperature: 0 })) as unknown as string;
    expect(srt).toMatch(/^1\r?\n\d\d:\d\d:\d\d,\d\d\d --> /);
    const vtt = (await client.audio.translations.create({ file: await audio(), model: 'whisper-1', response_format: 'vtt', temperature: 0 })) as unknown as string;
    expect(vtt).toMatch(/^WEBVTT/);
  });

  it('errors parse into the SDK fields: bad format 400, unknown model, bad key 401', async () => {
    const fmt = await sdkError(client.audio.translations.create({ file: await audio(), model: 'whisper-1', response_format: 'xml' as never }));
    expect(fmt).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'response_format', code: 'invalid_request' });
    expect(fmt.message).toMatch(/response_format must be one of json, text, srt, verbose_json, vtt/);

    const model = await sdkError(client.audio.translations.create({ file: await audio(), model: 'no-such-model' }));
    expect(model.status).toBeGreaterThanOrEqual(400);
    expect(model.status).toBeLessThan(500);
    expect(model.type).toBe('invalid_request_error');
    expect(model.message).toMatch(/no-such-model/);

    const anonymous = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'stt_not-a-real-key', maxRetries: 0 });
    const bad = await sdkError(anonymous.audio.translations.create({ file: await audio(), model: 'whisper-1' }));
    expect(bad).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(bad).toMatchObject({ status: 401, type: 'invalid_request_error', code: 'invalid_api_key' });
    const badEmbed = await sdkError(anonymous.embeddings.create({ model: 'text-embedding-3-small', input: 'hi' }));
    expect(badEmbed).toMatchObject({ status: 401, code: 'invalid_api_key' });
  });
});

describe('openai SDK: chat.completions.create rejects what it would otherwise ignore', () => {
  const messages = [{ role: 'user' as const, content: 'What is the weather in Paris?' }];

  it('tools, functions and tool_choice: 400 unsupported_parameter naming the field', async () => {
    const tools = await sdkError(
      client.chat.completions.create({
        model: 'qwen2-mini-random',
        messages,
        tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
      }),
    );
    expect(tools).toBeInstanceOf(OpenAI.BadRequestError);
    expect(tools).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'tools', code: 'unsupported_parameter' });
    expect(tools.message).toMatch(/tools is not supported/);

    const choice = await sdkError(client.chat.completions.create({ model: 'qwen2-mini-random', messages, tool_choice: 'required' }));
    expect(choice).toMatchObject({ status: 400, param: 'tool_choice', code: 'unsupported_parameter' });

    const fns = await sdkError(client.chat.completions.create({ model: 'qwen2-mini-random', messages, functions: [{ name: 'weather', parameters: { type: 'object' } }] }));
    expect(fns).toMatchObject({ status: 400, param: 'functions', code: 'unsupported_parameter' });
  });

  it('n > 1: 400 unsupported_value naming n', async () => {
    const n = await sdkError(client.chat.completions.create({ model: 'qwen2-mini-random', messages, n: 3 }));
    expect(n).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'n', code: 'unsupported_value' });
    expect(n.message).toMatch(/n must be 1 \(got 3\).*send 3 requests/);

    const empty = await sdkError(client.chat.completions.create({ model: 'qwen2-mini-random', messages: [] }));
    expect(empty).toMatchObject({ status: 400, param: 'messages', code: 'invalid_request' });
  });
});
