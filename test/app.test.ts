import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { loadConfig } from '../config/config.ts';
import { App } from '../src/app.ts';
import type { GpuInfo } from '../src/system/gpu.ts';
import { MODELS_DIR, REPO_ROOT, WHISPER_FIXTURE } from './helpers/paths.ts';
import { startServerProcess } from './helpers/server-process.ts';

// The fixtures live next to the checkout (../shared); without them these tests cannot run: skip, saying why.
const HAVE_MODELS = fs.existsSync(WHISPER_FIXTURE);
const SPEC = path.join(REPO_ROOT, '..', 'shared', 'spec', 'stt-api-reference.txt');
const HAVE_SPEC = fs.existsSync(SPEC);
if (!HAVE_MODELS) console.warn(`test/app.test.ts skipped: no model fixtures at ${WHISPER_FIXTURE} (set MODELS_DIR, or put the shared folder next to the checkout)`);
else if (!HAVE_SPEC) console.warn(`test/app.test.ts: the API reference test is skipped: ${SPEC} not found`);

/** What the App is told about the accelerator: /health must report exactly this, whatever this machine has. */
const GIVEN_GPU: GpuInfo = { available: true, name: 'Test GPU 9000', memoryMb: 24576, detail: 'given by the test' };

describe.skipIf(!HAVE_MODELS)('App', () => {
  let app: App;
  let base: string;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-app-'));

  beforeAll(async () => {
    const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: dataDir });
    app = await new App(config, { logger: pino({ level: 'silent' }), gpu: GIVEN_GPU }).start();
    base = `http://127.0.0.1:${app.port}`;
  });
  afterAll(async () => {
    await app?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  describe('GET /health', () => {
    it('reports the GPU the App was given, in the spec shape', async () => {
      const r = await fetch(`${base}/health`);
      expect(r.status).toBe(200);
      const body = await r.json();
      const { auto_pull, models, ...spec } = body;
      expect(spec).toEqual({ status: 'ok', gpu_available: true, gpu_name: 'Test GPU 9000', gpu_memory_mb: 24576 });
      // Extensions: what the configured models' first use does (AUTO_PULL is off in these tests).
      expect(auto_pull).toBe(false);
      expect(models[0]).toEqual({ role: 'speech (DEFAULT_MODEL)', id: 'large-v3-turbo', kind: 'asr', installed: false, first_use: 'manual' });
      expect(models).toContainEqual({ role: 'embeddings (EMBED_MODEL)', id: 'all-minilm-l6-v2', kind: 'embedding', installed: false, first_use: 'manual' });
    });
  });

  describe('GET /v1/models', () => {
    it('lists the seed ids, base and tiny, and the fixture folders, with installed flags', async () => {
      const r = await fetch(`${base}/v1/models`);
      expect(r.status).toBe(200);
      const { models } = await r.json();
      const ids = models.map((m: { id: string }) => m.id);
      for (const id of ['large-v3-turbo', 'large-v3', 'medium', 'small', 'base', 'tiny']) expect(ids).toContain(id);
      expect(models.find((m: { id: string }) => m.id === 'large-v3-turbo')).toEqual({
        id: 'large-v3-turbo',
        name: 'Whisper Large V3 Turbo',
        languages: 99,
        speed: 'fast',
        installed: false,
      });
      expect(models.find((m: { id: string }) => m.id === 'small')).toMatchObject({ name: 'Whisper Small', speed: 'very_fast' });
      expect(models.find((m: { id: string }) => m.id === 'whisper-mini-random')).toMatchObject({ installed: true, languages: 99 });
      // Only speech models here: embedders and LLMs are not transcription models.
      expect(ids).not.toContain('minilm-mini-random');
      expect(ids).not.toContain('qwen2-mini-random');
    });
  });

  describe('GET /v1/languages', () => {
    it("lists Whisper's 99 languages, each a language token of the real vocabulary", async () => {
      const { languages } = await (await fetch(`${base}/v1/languages`)).json();
      expect(languages).toHaveLength(99);
      expect(languages.slice(0, 3)).toEqual([
        { code: 'en', name: 'english' },
        { code: 'zh', name: 'chinese' },
        { code: 'de', name: 'german' },
      ]);
      const gen = JSON.parse(fs.readFileSync(path.join(WHISPER_FIXTURE, 'generation_config.json'), 'utf8'));
      const tokens = Object.keys(gen.lang_to_id).sort();
      expect(languages.map((l: { code: string }) => `<|${l.code}|>`).sort()).toEqual(tokens);
    });
  });

  describe('GET /metrics', () => {
    it('serves Prometheus text with request counters and model state', async () => {
      await fetch(`${base}/health`);
      const r = await fetch(`${base}/metrics`);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(/text\/plain/);
      const text = await r.text();
      expect(text).toMatch(/stt_http_requests_total\{method="GET",route="\/health",status="200"\} \d+/);
      expect(text).toMatch(/stt_http_request_duration_seconds_bucket/);
      expect(text).toMatch(/stt_model_installed\{model="whisper-mini-random",kind="asr"\} 1/);
      expect(text).toMatch(/stt_model_installed\{model="large-v3",kind="asr"\} 0/);
      expect(text).toMatch(/# TYPE stt_active_streams gauge/);
    });
  });

  describe('npm start', () => {
    it('serves on embedded defaults, reports the GPU nvidia-smi lists, and exits 0 on SIGTERM after a clean shutdown', async () => {
      // The nvidia-smi found first on PATH is a script that lists one GPU: /health says what it said.
      const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-fake-smi-'));
      fs.writeFileSync(path.join(bin, 'nvidia-smi'), '#!/bin/sh\necho "Scripted GPU A1, 40960"\n', { mode: 0o755 });
      // Embedded defaults: no DATABASE_URL, no NATS; the default model (not installed) is fine for /health.
      const srv = await startServerProcess({ env: { DEFAULT_MODEL: 'large-v3-turbo', PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` } });
      try {
        const health = await fetch(`${srv.url}/health`);
        expect(health.status).toBe(200);
        const { auto_pull: _a, models, ...spec } = await health.json();
        expect(spec).toEqual({ status: 'ok', gpu_available: true, gpu_name: 'Scripted GPU A1', gpu_memory_mb: 40960 });
        // The default model is not installed and AUTO_PULL is off here: /health and the start-up log say what to run.
        expect(models[0]).toMatchObject({ id: 'large-v3-turbo', installed: false, first_use: 'manual' });
        expect(srv.output(1 << 20)).toMatch(/model large-v3-turbo \(speech \(DEFAULT_MODEL\)\): not installed and AUTO_PULL is off; install it with: npm run models:pull -- large-v3-turbo/);
        expect(await srv.kill('SIGTERM')).toBe(0);
        expect(srv.output(1 << 20)).toMatch(/shut down cleanly/);
        expect(srv.output(1 << 20)).toMatch(/"method":"GET","path":"\/health","status":200,.*"msg":"request"/);
      } finally {
        await srv.close();
        fs.rmSync(bin, { recursive: true, force: true });
      }
    });
  });

  describe.skipIf(!HAVE_SPEC)('the API reference', () => {
    it('every HTTP endpoint and method it lists is routed (no "Not found" route miss, no 405)', async () => {
      const spec = fs.readFileSync(SPEC, 'utf8');
      const endpoints = [...spec.matchAll(/^((?:GET|POST|PUT|DELETE)(?: (?:GET|POST|PUT|DELETE))*) https:\/\/[^/\s]+(\/\S*)$/gm)].flatMap((m) =>
        m[1].split(' ').map((method) => ({ method, path: m[2].replace(':format', 'txt').replace(':id', '00000000-0000-0000-0000-000000000000') })),
      );
      expect(endpoints.length).toBeGreaterThanOrEqual(25);
      expect(endpoints.map((e) => e.path)).toContain('/v1/tts');
      for (const e of endpoints) {
        const r = await fetch(`${base}${e.path}`, {
          method: e.method,
          headers: e.method === 'GET' || e.method === 'DELETE' ? {} : { 'content-type': 'application/json' },
          body: e.method === 'GET' || e.method === 'DELETE' ? undefined : '{}',
        });
        const text = await r.text();
        expect({ ...e, status: r.status, routed: !text.includes('Not found: ') }).toMatchObject({ routed: true });
        expect(r.status, `${e.method} ${e.path}`).not.toBe(405);
      }
    });
  });
});
