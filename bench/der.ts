/**
 * DER of one diarization run on any audio + reference RTTM pair:
 *
 *   npx tsx bench/der.ts <audio> <reference.rttm> [--method baseline|wespeaker|pyannote]
 *        [--speakers N] [--collar 0.25] [--models /work/shared/models] [--rttm-out hyp.rttm]
 *
 * Audio is decoded with ffmpeg to 16 kHz mono. Collar: ± seconds around reference boundaries
 * (md-eval -c; pyannote's collar=2×). wespeaker/pyannote need the model folders under --models.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { decodeToPcm16k } from '../src/audio/ffmpeg.ts';
import { createDiarizer } from '../src/engines/diarization/diarizer.ts';
import { diarizationErrorRate, parseRttm, toRttm } from '../src/engines/diarization/der.ts';

const argv = process.argv.slice(2);
const opt = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const pos = argv.filter((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
if (pos.length < 2) {
  console.error('usage: npx tsx bench/der.ts <audio> <reference.rttm> [--method baseline|wespeaker|pyannote] [--speakers N] [--collar 0.25] [--models DIR] [--rttm-out FILE]');
  process.exit(2);
}
const [audio, refPath] = pos;
const method = opt('method') ?? 'baseline';
const models = opt('models') ?? process.env.DIARIZATION_MODELS_DIR ?? '/work/shared/models';
const emb = method === 'baseline' ? null : join(models, 'wespeaker-resnet34-random');
const seg = method === 'pyannote' ? join(models, 'pyannote-segmentation-3.0-random') : null;

const samples = await decodeToPcm16k(audio);
const d = await createDiarizer({ embeddingModelDir: emb, segmentationModelDir: seg });
const t0 = performance.now();
const hyp = await d.diarize(samples, { speakers: Number(opt('speakers') ?? 0) });
const s = (performance.now() - t0) / 1000;
await d.close();
const ref = parseRttm(readFileSync(refPath, 'utf8'));
const r = diarizationErrorRate(ref, hyp, { collar: Number(opt('collar') ?? 0.25) });
if (opt('rttm-out')) writeFileSync(opt('rttm-out')!, toRttm(hyp, 'audio'));
const dur = samples.length / 16000;
console.log(
  `method ${d.method}${emb ? ` (${emb})` : ''}, audio ${dur.toFixed(1)} s, ${new Set(hyp.map((t) => t.speaker)).size} speakers found / ${new Set(ref.map((t) => t.speaker)).size} in reference`,
);
console.log(
  `DER ${(100 * r.der).toFixed(2)} % = missed ${r.missed.toFixed(2)} s + false alarm ${r.falseAlarm.toFixed(2)} s + confusion ${r.confusion.toFixed(2)} s over ${r.total.toFixed(2)} s scored`,
);
console.log(`diarization ${s.toFixed(3)} s = ${(s / dur).toFixed(4)} × audio duration`);
