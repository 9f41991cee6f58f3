import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readWav } from '../../src/audio/pcm.ts';
import { WhisperEngine } from '../../src/engines/whisper/engine.ts';
import { cachedGraph } from '../../src/models/onnx-graph-cache.ts';
import { WHISPER_FIXTURE } from '../helpers/paths.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'graph-cache-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('graph cache (graphs rewritten at load, kept between loads)', () => {
  it('stores a rewrite, serves it without rewriting, and rewrites again once the model or its external data changed', () => {
    const model = path.join(tmp, 'm', 'decoder.onnx');
    fs.mkdirSync(path.dirname(model));
    fs.writeFileSync(model, 'graph v1');
    fs.writeFileSync(`${model}_data`, 'weights v1');
    const cache = path.join(tmp, 'cache');
    let rewrites = 0;
    const rewrite = (b: Uint8Array) => {
      rewrites++;
      return Buffer.concat([Buffer.from('rewritten:'), b]);
    };
    const first = cachedGraph(model, 'test-v1', cache, rewrite);
    expect(first.from).toBe('miss');
    expect(Buffer.from(first.bytes).toString()).toBe('rewritten:graph v1');
    const second = cachedGraph(model, 'test-v1', cache, rewrite);
    expect(second).toMatchObject({ from: 'hit' });
    expect(Buffer.from(second.bytes).toString()).toBe('rewritten:graph v1');
    expect(rewrites).toBe(1);
    expect(cachedGraph(model, 'test-v2', cache, rewrite).from).toBe('miss'); // another rewrite (version)
    fs.writeFileSync(`${model}_data`, 'weights v2, longer');
    expect(cachedGraph(model, 'test-v1', cache, rewrite).from).toBe('miss');
    const st = fs.statSync(model);
    fs.utimesSync(model, st.atime, new Date(st.mtimeMs + 10_000));
    expect(cachedGraph(model, 'test-v1', cache, rewrite).from).toBe('miss');
    expect(cachedGraph(model, 'test-v1', cache, rewrite).from).toBe('hit');
    expect(rewrites).toBe(4);
    expect(fs.readdirSync(cache).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a cache that cannot be written costs only the rewrite; no cache dir = rewrite every time', () => {
    const model = path.join(tmp, 'n.onnx');
    fs.writeFileSync(model, 'g');
    const blocked = path.join(tmp, 'a-file');
    fs.writeFileSync(blocked, 'not a folder');
    const r = cachedGraph(model, 't', path.join(blocked, 'cache'), (b) => b);
    expect(r.from).toBe('miss');
    expect(Buffer.from(r.bytes).toString()).toBe('g');
    expect(cachedGraph(model, 't', null, (b) => b).from).toBe('off');
  });

  it('precision q8 through the cache: the second load reads the stored graphs and decodes the same tokens', async () => {
    const cache = path.join(tmp, 'q8');
    const audio = readWav(fs.readFileSync(path.join(WHISPER_FIXTURE, 'golden', 'jfk.wav'))).samples;
    const tokens = async () => {
      const engine = await WhisperEngine.load(WHISPER_FIXTURE, { precision: 'q8', decoderLayout: 'split', graphCacheDir: cache });
      try {
        const [r] = await engine.transcribe([{ audio, options: { language: 'en', timestamps: false, maxNewTokens: 12, temperature: 0 } }]);
        return r.tokensPerWindow[0];
      } finally {
        await engine.close();
      }
    };
    const cold = await tokens();
    const stored = fs.readdirSync(cache).filter((f) => f.endsWith('.onnx'));
    expect(stored).toHaveLength(2); // decoder_model and decoder_with_past_model
    const mtimes = stored.map((f) => fs.statSync(path.join(cache, f)).mtimeMs);
    expect(await tokens()).toEqual(cold);
    expect(stored.map((f) => fs.statSync(path.join(cache, f)).mtimeMs)).toEqual(mtimes); // read, not written again
  });
});
