/**
 * WeSpeaker embeddings and pyannote segmentation on the full-size random-weight fixtures, through
 * our own front-end and post-processing. Each model is loaded once for the whole file.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readWav } from '../../../src/audio/pcm.ts';
import { diarizerFromModels, type Diarizer } from '../../../src/engines/diarization/diarizer.ts';
import { kaldiFbank } from '../../../src/engines/diarization/fbank.ts';
import { PyannoteSegmenter, powersetClasses, powersetToMultilabel, segmentationFrameCount, segmentationFrameTime, segmentationGeometry } from '../../../src/engines/diarization/segmentation.ts';
import { WespeakerEmbedder } from '../../../src/engines/diarization/wespeaker.ts';
import { cosine, maxAbsDiff, readF32, SEGMENTATION_DIR, WESPEAKER_DIR } from './helpers.ts';

const WG = join(WESPEAKER_DIR, 'golden');
const SG = join(SEGMENTATION_DIR, 'golden');
let emb: WespeakerEmbedder;
let seg: PyannoteSegmenter;
let segGolden: { argmax_per_frame: number[]; powerset_classes: number[][] };
let logits: Float32Array;

beforeAll(async () => {
  [emb, seg] = await Promise.all([WespeakerEmbedder.load(WESPEAKER_DIR, { intraOpThreads: 1 }), PyannoteSegmenter.load(SEGMENTATION_DIR) /* default threads: exercises the options path */]);
  segGolden = JSON.parse(readFileSync(join(SG, 'golden.json'), 'utf8'));
  const wav = readWav(readFileSync(join(SG, 'input_10s_16k.wav'))).samples;
  const r = await seg.run([wav]);
  expect(r.frames).toBe(589);
  expect(r.classes).toBe(7);
  logits = r.logp[0];
});

describe('wespeaker embeddings (tolerance abs 1e-3, cosine ≥ 0.9999)', () => {
  const golden = readF32(join(WG, 'embs.f32'));

  it('golden CMN features → golden embedding (bit-exact on ORT 1.30 CPU; checked at 1e-4)', async () => {
    const [e] = await emb.embedFeats([readF32(join(WG, 'feats_cmn.f32'))], 298);
    expect(e.length).toBe(256);
    expect(maxAbsDiff(e, golden)).toBeLessThan(1e-4);
  });

  it('waveform → our fbank + CMN → golden embedding (measured max abs 6.1e-5, cosine 1 - 1e-13)', async () => {
    const wav = readWav(readFileSync(join(WG, 'input_3s_16k.wav'))).samples;
    const e = await emb.embedWaveform(wav);
    expect(maxAbsDiff(e, golden)).toBeLessThan(1e-3);
    expect(cosine(e, golden)).toBeGreaterThanOrEqual(0.9999);
  });

  it('batched ranges equal single calls; too few frames is refused', async () => {
    const wav = readWav(readFileSync(join(WG, 'input_3s_16k.wav'))).samples;
    const fb = kaldiFbank(wav);
    const ranges: Array<[number, number]> = [
      [0, 150],
      [100, 250],
      [148, 298],
    ];
    const batched = await emb.embedRanges(fb, ranges);
    const single = await emb.embedRanges(fb, [ranges[1]]);
    expect(maxAbsDiff(batched[1], single[0])).toBeLessThan(1e-3);
    await expect(emb.embedFeats([new Float32Array(8 * 80)], 8)).rejects.toThrow(/at least 9/);
  });
});

describe('pyannote segmentation (tolerance abs 1e-3)', () => {
  it('logits [1, 589, 7] match the golden', () => {
    expect(maxAbsDiff(logits, readF32(join(SG, 'logits.f32')))).toBeLessThan(1e-3);
    // log-softmax: exp sums to 1 per frame
    for (let t = 0; t < 589; t += 97) {
      let s = 0;
      for (let c = 0; c < 7; c++) s += Math.exp(logits[t * 7 + c]);
      expect(s).toBeCloseTo(1, 4);
    }
  });

  it('powerset classes and hard decoding follow the golden argmax', () => {
    const classes = powersetClasses(3, 2);
    expect(classes).toEqual(segGolden.powerset_classes);
    const ml = powersetToMultilabel(logits, 589);
    expect(ml.length).toBe(589 * 3);
    segGolden.argmax_per_frame.forEach((c, t) => {
      const active = [0, 1, 2].filter((s) => ml[t * 3 + s] === 1);
      expect(active).toEqual(classes[c]);
    });
  });

  it('soft decoding: per-speaker probability = sum over classes containing it', () => {
    const soft = powersetToMultilabel(logits, 589, { soft: true });
    for (let t = 0; t < 589; t += 53) {
      const p = [0, 1, 2, 3, 4, 5, 6].map((c) => Math.exp(logits[t * 7 + c]));
      expect(soft[t * 3]).toBeCloseTo(p[1] + p[4] + p[5], 5);
      expect(soft[t * 3 + 1]).toBeCloseTo(p[2] + p[4] + p[6], 5);
      expect(soft[t * 3 + 2]).toBeCloseTo(p[3] + p[5] + p[6], 5);
    }
  });

  it('frame geometry: step 270, receptive field 991, centre 495 samples; counts from the conv stack', async () => {
    expect(segmentationGeometry()).toMatchObject({ stepSamples: 270, receptiveFieldSamples: 991, centerOffsetSamples: 495, stepS: 0.016875, durationS: 0.0619375 });
    expect([16000, 80000, 160000, 160123, 320000].map(segmentationFrameCount)).toEqual([56, 293, 589, 590, 1182]);
    expect(segmentationFrameTime(1)).toEqual({ start: 270 / 16000, center: 765 / 16000, end: 1261 / 16000 });
    const r = await seg.run([new Float32Array(16000)]);
    expect(r.frames).toBe(56);
  });
});

describe('model diarizers run end to end (random weights: plumbing and cost only)', () => {
  let d: Diarizer;
  afterAll(async () => d?.close());

  it('pyannote+wespeaker and wespeaker give well-formed turns', async () => {
    const wav = readWav(readFileSync(join(SG, 'input_10s_16k.wav'))).samples;
    d = diarizerFromModels(emb, seg);
    expect(d.method).toBe('pyannote+wespeaker');
    for (const dz of [d, diarizerFromModels(emb)]) {
      const turns = await dz.diarize(wav, { speakers: 2 });
      expect(turns.length).toBeGreaterThan(0);
      for (const t of turns) {
        expect(t.start).toBeGreaterThanOrEqual(0);
        expect(t.end).toBeGreaterThan(t.start);
        expect(t.end).toBeLessThanOrEqual(10.1);
        expect(t.speaker).toMatch(/^Speaker [12]$/);
      }
      expect(turns[0].speaker).toBe('Speaker 1');
    }
    const ac = new AbortController();
    ac.abort();
    await expect(d.diarize(wav, { signal: ac.signal })).rejects.toThrow();
  });
});
