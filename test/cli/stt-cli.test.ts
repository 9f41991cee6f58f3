import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MODELS_DIR, REPO_ROOT, WHISPER_FIXTURE } from '../helpers/paths.ts';

const run = promisify(execFile);
const golden = JSON.parse(fs.readFileSync(path.join(WHISPER_FIXTURE, 'golden/golden.json'), 'utf8'));

async function stt(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [path.join(REPO_ROOT, 'bin/stt.mjs'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, STT_API_KEY: '', MODELS_DIR, ...env },
    timeout: 60_000,
  });
}

describe('stt transcribe (CLI)', () => {
  for (const name of ['tone', 'speech', 'jfk']) {
    it(`${name}: golden tokens with and without timestamps, through our own frontend`, async () => {
      const wav = path.join(WHISPER_FIXTURE, 'golden', `${name}.wav`);
      const common = [wav, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--max-new-tokens', '24', '--temperature', '0', '--json'];
      const plain = JSON.parse((await stt(['transcribe', ...common])).stdout);
      expect(plain.tokens).toEqual([golden.inputs[name].generate.notimestamps]);
      expect(plain.language).toBe('en');
      const ts = JSON.parse((await stt(['transcribe', ...common, '--timestamps'])).stdout);
      expect(ts.tokens).toEqual([golden.inputs[name].generate.timestamps]);
    });
  }

  it('takes a model folder path as well as an id', async () => {
    const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
    const { stdout } = await stt(['transcribe', wav, '--model', WHISPER_FIXTURE, '--language', 'en', '--no-vad', '--max-new-tokens', '24', '--temperature', '0', '--json']);
    expect(JSON.parse(stdout).tokens).toEqual([golden.inputs.jfk.generate.notimestamps]);
  });

  it('decoder weights packed at load (--prepack-decoder) or not (the CLI default): the same golden tokens', async () => {
    const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
    const args = ['transcribe', wav, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--max-new-tokens', '24', '--temperature', '0', '--json'];
    expect(JSON.parse((await stt([...args, '--prepack-decoder'])).stdout).tokens).toEqual([golden.inputs.jfk.generate.notimestamps]);
    await expect(stt([...args, '--prepack-decoder=yes'])).rejects.toMatchObject({ code: 2 });
  });

  it('--decoder-layout split / merged: the same golden tokens, and --json says which variant ran', async () => {
    const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
    const args = ['transcribe', wav, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--max-new-tokens', '24', '--temperature', '0', '--json'];
    for (const layout of ['split', 'merged']) {
      const out = JSON.parse((await stt([...args, '--decoder-layout', layout])).stdout);
      expect(out.variant).toEqual({ precision: 'fp32', layout });
      expect(out.tokens).toEqual([golden.inputs.jfk.generate.notimestamps]);
    }
    await expect(stt([...args, '--decoder-layout', 'fused'])).rejects.toMatchObject({ code: 2 });
  });

  it('--precision q8 loads the fp32 files with 8-bit decoder blocks, and --json says so; a bad precision is a usage error', async () => {
    const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
    const args = ['transcribe', wav, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--max-new-tokens', '8', '--temperature', '0', '--json'];
    const out = JSON.parse((await stt([...args, '--precision', 'q8', '--decoder-layout', 'split'])).stdout);
    expect(out.variant).toEqual({ precision: 'q8', layout: 'split' });
    expect(out.tokens[0]).toHaveLength(8);
    await expect(stt([...args, '--precision', 'fp16'])).rejects.toMatchObject({ code: 2 });
    await expect(stt([...args, '--precision', 'q8', '--quantized'])).rejects.toMatchObject({ code: 2 });
  });

  it('slides 30 s windows over long audio (31.5 s → 2 windows)', async () => {
    const wav = path.join(WHISPER_FIXTURE, 'golden', 'long.wav');
    const { stdout } = await stt(['transcribe', wav, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--timestamps', '--max-new-tokens', '24', '--temperature', '0', '--json']);
    const out = JSON.parse(stdout);
    expect(out.tokens.length).toBeGreaterThanOrEqual(2);
    for (const s of out.segments) expect(s.end).toBeLessThanOrEqual(31.6);
  });

  it('reports its own timings (--json: timing object; text mode: a line on stderr)', async () => {
    const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
    const args = ['transcribe', wav, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--max-new-tokens', '24', '--temperature', '0'];
    const out = JSON.parse((await stt([...args, '--json'])).stdout);
    const t = out.timing;
    for (const k of ['load_ms', 'features_ms', 'encoder_ms', 'decode_ms', 'transcribe_ms', 'tokens', 'decoder_run_ms', 'decoder_runs', 'audio_ms', 'startup_ms']) {
      expect(typeof t[k], k).toBe('number');
      expect(Number.isFinite(t[k]) && t[k] >= 0, `${k} = ${t[k]}`).toBe(true);
    }
    // tokens: what was generated, i.e. what is returned (greedy at temperature 0: no fallback re-decodes)
    expect(t.tokens).toBe(out.tokens.flat().length);
    expect(t.tokens).toBe(24);
    // One request without VAD runs its steps one after another inside transcribe, each measured on the same clock:
    // the parts cannot add up to more than the whole (0.1 ms rounding each aside). The model really ran.
    // (the audio is read beside the model load, so its time lies within load + transcribe, not within transcribe)
    expect(t.features_ms + t.encoder_ms + t.decode_ms).toBeLessThanOrEqual(t.transcribe_ms + 0.5);
    expect(t.audio_ms).toBeLessThanOrEqual(t.load_ms + t.transcribe_ms + 0.5);
    expect(t.decoder_run_ms).toBeLessThanOrEqual(t.decode_ms + 0.1);
    expect(t.encoder_ms).toBeGreaterThan(0);
    expect(t.decoder_run_ms).toBeGreaterThan(0);
    expect(t.decoder_runs).toBeGreaterThanOrEqual(1);
    expect(t.decoder_runs).toBeLessThanOrEqual(t.tokens + 1);
    const text = await stt([...args, '--quiet']);
    expect(text.stderr).toMatch(/timing \(ms\): load [\d.]+, features [\d.]+, encoder [\d.]+, decode [\d.]+, transcribe [\d.]+, tokens 24,/);
  });

  it('says what is wrong: missing file, unknown model, model not installed, bad flags', async () => {
    await expect(stt(['transcribe', '/nope.wav', '--model', 'whisper-mini-random'])).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/No such file/) });
    const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
    await expect(stt(['transcribe', wav, '--model', 'small'])).rejects.toMatchObject({
      stderr: expect.stringContaining('npm run models:pull -- small'),
    });
    await expect(stt(['transcribe', wav, '--model', 'no-such-model'])).rejects.toMatchObject({ code: 2 });
    await expect(stt(['transcribe', wav, '--model', 'whisper-mini-random', '--beam-size', 'zero'])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--beam-size must be an integer/),
    });
    await expect(stt(['transcribe', wav, '--model', 'whisper-mini-random', '--language', 'xx'])).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--language 'xx' is not a language of this model/),
    });
  });
});

describe('stt transcribe --server (against a running server)', () => {
  it('uploads, follows the job and prints the server result; says why on errors', async () => {
    const { App } = await import('../../src/app.ts');
    const { loadConfig } = await import('../../config/config.ts');
    const { pino } = await import('pino');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-cli-server-'));
    const app = await new App(loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: dir }), { logger: pino({ level: 'silent' }) }).start();
    try {
      const url = `http://127.0.0.1:${app.port}`;
      const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
      const { stdout } = await stt(['transcribe', wav, '--server', url, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--max-new-tokens', '24', '--temperature', '0', '--json']);
      const body = JSON.parse(stdout);
      expect(body.language).toBe('en');
      expect(body.segments.length).toBeGreaterThan(0);
      const srt = await stt(['transcribe', wav, '--server', url, '--model', 'whisper-mini-random', '--language', 'en', '--max-new-tokens', '4', '--format', 'srt']);
      expect(srt.stdout).toMatch(/^1\n00:00:\d\d,\d{3} --> /);
      await expect(stt(['transcribe', wav, '--server', url, '--model', 'small'])).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('503') });
    } finally {
      await app.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sends --api-key or STT_API_KEY as a Bearer key to a server that requires keys', async () => {
    const { App } = await import('../../src/app.ts');
    const { loadConfig } = await import('../../config/config.ts');
    const { pino } = await import('pino');
    const { paidKey } = await import('../helpers/accounts.ts');
    const os = await import('node:os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-cli-key-'));
    const app = await new App(loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: dir, ANON_DAILY_LIMIT: '0' }), { logger: pino({ level: 'silent' }) }).start();
    try {
      const url = `http://127.0.0.1:${app.port}`;
      const key = await paidKey(app);
      const wav = path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav');
      const args = ['transcribe', wav, '--server', url, '--model', 'whisper-mini-random', '--language', 'en', '--no-vad', '--max-new-tokens', '4', '--temperature', '0', '--json'];
      // Without a key the server refuses (keys required: ANON_DAILY_LIMIT=0), and the CLI says so.
      await expect(stt(args)).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('401') });
      const flag = JSON.parse((await stt([...args, '--api-key', key])).stdout);
      expect(flag.segments.length).toBeGreaterThan(0);
      const env = JSON.parse((await stt(args, { STT_API_KEY: key })).stdout);
      expect(env.segments.length).toBeGreaterThan(0);
      // The flag wins over the environment.
      await expect(stt([...args, '--api-key', 'stt_wrong'], { STT_API_KEY: key })).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('401') });
      // Both were saved as the key owner's transcripts.
      const list = await (await fetch(`${url}/api/v1/transcripts/`, { headers: { authorization: `Bearer ${key}` } })).json();
      expect(list.count).toBe(2);
    } finally {
      await app.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
