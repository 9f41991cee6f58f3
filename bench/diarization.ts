/**
 * Diarization benchmark on an espeak-ng dialogue set with exact references (issue 7):
 *
 *   npx tsx bench/diarization.ts [--models /work/shared/models] [--tokens 24] [--write]
 *
 * Five dialogues (2–3 voices, 5–8 turns, pauses 0.3–0.6 s) are synthesised, their RTTMs written
 * next to the WAVs (.tmp/bench/diarization/), then:
 *  - baseline-mfcc, auto speaker count and with the true count: DER per dialogue and overall (collar ±0.25 s);
 *  - wespeaker and pyannote+wespeaker on the random-weight fixtures: cost only (their DER is meaningless);
 *  - cost as a fraction of the audio duration and, with whisper-mini-random at a fixed token budget,
 *    of the file pipeline's transcription time of the same audio.
 * --write replaces the diarization section of docs/benchmarks.md with the results.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import * as ort from 'onnxruntime-node';
import { createDiarizer, type Diarizer } from '../src/engines/diarization/diarizer.ts';
import { diarizationErrorRate, toRttm, type Turn } from '../src/engines/diarization/der.ts';
import { SileroVad } from '../src/engines/vad/silero-vad.ts';
import { ModelRegistry } from '../src/models/registry.ts';
import { FileTranscriber } from '../src/pipeline/file-transcriber.ts';
import { SpeechModels } from '../src/pipeline/speech-models.ts';
import { makeDialogue, SENTENCES, type DialogueTurn } from '../test/engines/diarization/dialogue.ts';

const argv = process.argv.slice(2);
const opt = (n: string) => {
  const i = argv.indexOf(`--${n}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const MODELS = opt('models') ?? '/work/shared/models';
const TOKENS = Number(opt('tokens') ?? 24);
const OUT = resolve('.tmp/bench/diarization');
mkdirSync(OUT, { recursive: true });

// voices not all used in the unit tests' tuning sets
const SETS: Array<{ name: string; voices: string[][]; turns: number; pauses: number[] }> = [
  {
    name: 'd1 en+m3 / en+f4',
    voices: [
      ['-v', 'en+m3'],
      ['-v', 'en+f4'],
    ],
    turns: 8,
    pauses: [0.3, 0.4],
  },
  {
    name: 'd2 en-us+m1 / en+f2',
    voices: [
      ['-v', 'en-us+m1'],
      ['-v', 'en+f2'],
    ],
    turns: 6,
    pauses: [0.3, 0.6],
  },
  {
    name: 'd3 en-gb-scotland / en-us+f3',
    voices: [
      ['-v', 'en-gb-scotland'],
      ['-v', 'en-us+f3'],
    ],
    turns: 5,
    pauses: [0.35, 0.5],
  },
  {
    name: 'd4 en+m3 / en+f4 / en-us+m1 -p30',
    voices: [
      ['-v', 'en+m3'],
      ['-v', 'en+f4'],
      ['-v', 'en-us+m1', '-p', '30'],
    ],
    turns: 7,
    pauses: [0.4, 0.3],
  },
  {
    name: 'd5 en+m2 / en-us+f4 / en-gb-x-rp',
    voices: [
      ['-v', 'en+m2'],
      ['-v', 'en-us+f4'],
      ['-v', 'en-gb-x-rp'],
    ],
    turns: 8,
    pauses: [0.5, 0.3],
  },
];

const dialogues = SETS.map((s, k) => {
  // speaker order is not strictly alternating for 3 voices: A B C A C B A C
  const order = s.voices.length === 2 ? (i: number) => i % 2 : (i: number) => [0, 1, 2, 0, 2, 1, 0, 2][i];
  const turns: DialogueTurn[] = Array.from({ length: s.turns }, (_, i) => ({ voice: s.voices[order(i)], text: SENTENCES[(i + 3 * k) % SENTENCES.length], speaker: `spk${order(i)}` }));
  const pauseS = turns.map((_, i) => s.pauses[i % s.pauses.length]);
  const wav = join(OUT, `dialogue${k + 1}.wav`);
  const dl = makeDialogue(turns, { pauseS, writeTo: wav });
  writeFileSync(join(OUT, `dialogue${k + 1}.rttm`), toRttm(dl.reference, `dialogue${k + 1}`));
  return { ...s, ...dl, nSpk: s.voices.length, wav };
});
const totalAudio = dialogues.reduce((a, d) => a + d.durationS, 0);

async function timed(d: Diarizer, samples: Float32Array, speakers: number): Promise<{ turns: Turn[]; s: number }> {
  const t0 = performance.now();
  const turns = await d.diarize(samples, { speakers });
  return { turns, s: (performance.now() - t0) / 1000 };
}

const lines: string[] = [];
const log = (l = '') => {
  console.log(l);
  lines.push(l);
};
const cpu = `${os.cpus()[0].model} × ${os.cpus().length}, node ${process.version}, onnxruntime-node ${ort.env.versions.common}, load ${os
  .loadavg()
  .map((x) => x.toFixed(1))
  .join(' ')}`;

// ---- DER of the baseline
const base = await createDiarizer({});
await timed(base, dialogues[0].samples, 0); // warm-up (JIT)
log(
  `espeak-ng dialogue set: ${dialogues.length} dialogues, ${totalAudio.toFixed(1)} s of audio, references from the known turn times (files and RTTMs in .tmp/bench/diarization/). DER with a ±0.25 s collar, overlap scored.`,
);
log('');
log('| dialogue | voices | turns | s | baseline auto: DER (spk found) | baseline speakers=N: DER |');
log('|---|---|---|---|---|---|');
const tot = { auto: { err: 0, total: 0 }, fixed: { err: 0, total: 0 } };
let baseS = 0;
for (const d of dialogues) {
  const a = await timed(base, d.samples, 0);
  const f = await timed(base, d.samples, d.nSpk);
  baseS += a.s;
  const ra = diarizationErrorRate(d.reference, a.turns);
  const rf = diarizationErrorRate(d.reference, f.turns);
  tot.auto.err += ra.der * ra.total;
  tot.auto.total += ra.total;
  tot.fixed.err += rf.der * rf.total;
  tot.fixed.total += rf.total;
  log(
    `| ${d.name} | ${d.nSpk} | ${d.reference.length} | ${d.durationS.toFixed(1)} | ${(100 * ra.der).toFixed(1)} % (${new Set(a.turns.map((t) => t.speaker)).size}) | ${(100 * rf.der).toFixed(1)} % |`,
  );
}
log(`| **overall** | | | ${totalAudio.toFixed(1)} | **${((100 * tot.auto.err) / tot.auto.total).toFixed(1)} %** | **${((100 * tot.fixed.err) / tot.fixed.total).toFixed(1)} %** |`);
log('');

// ---- cost
const cost: Array<[string, number]> = [['baseline-mfcc', baseS]];
const withModels = existsSync(join(MODELS, 'wespeaker-resnet34-random'));
const threads = Number(opt('threads') ?? 1);
if (withModels) {
  for (const seg of [null, join(MODELS, 'pyannote-segmentation-3.0-random')]) {
    const dz = await createDiarizer({ embeddingModelDir: join(MODELS, 'wespeaker-resnet34-random'), segmentationModelDir: seg, intraOpThreads: threads });
    await timed(dz, dialogues[0].samples.subarray(0, 16000 * 3), 2);
    let s = 0;
    for (const d of dialogues) s += (await timed(dz, d.samples, 0)).s;
    cost.push([`${dz.method} (random weights, ${threads} thread)`, s]);
    await dz.close();
  }
}
let asrS = 0;
const whisper = join(MODELS, 'whisper-mini-random');
if (existsSync(whisper)) {
  const registry = await ModelRegistry.create(MODELS);
  const models = new SpeechModels({ registry, logger: pino({ level: 'silent' }), inference: { intraOpThreads: threads } });
  const model = await models.getByPath(whisper);
  const vad = await SileroVad.load();
  const ft = new FileTranscriber({ vad });
  const opts = { language: 'en', maxNewTokens: TOKENS, temperature: 0, timestamps: true, wordTimestamps: true };
  await ft.transcribe(model, dialogues[0].samples, opts);
  for (const d of dialogues) {
    const t0 = performance.now();
    await ft.transcribe(model, d.samples, opts);
    asrS += (performance.now() - t0) / 1000;
  }
  await models.close();
}
log(`Cost over the ${totalAudio.toFixed(1)} s set (${cpu}):`);
log('');
log(`| method | diarization time | × audio duration |${asrS ? ` × transcription time (whisper-mini-random, ${TOKENS} tokens/chunk, VAD on) |` : ''}`);
log(`|---|---|---|${asrS ? '---|' : ''}`);
for (const [name, s] of cost) log(`| ${name} | ${s.toFixed(2)} s | ${(s / totalAudio).toFixed(4)} |${asrS ? ` ${(s / asrS).toFixed(3)} |` : ''}`);
if (asrS) log(`| (transcription itself) | ${asrS.toFixed(2)} s | ${(asrS / totalAudio).toFixed(4)} | 1 |`);
log('');
log(
  'whisper-mini-random is a d_model-64, 2+2-layer fixture: real Whisper models transcribe many times slower, so the last column is an upper bound on the share of diarization. The wespeaker/pyannote rows use full-size random-weight models: their cost is real, their DER is meaningless (not shown). The baseline DER is on espeak voices only.',
);
await base.close();

if (argv.includes('--write')) {
  const doc = resolve('docs/benchmarks.md');
  const start = '<!-- diarization:start -->';
  const end = '<!-- diarization:end -->';
  const body = [
    start,
    '## Diarization (issue 7)',
    '',
    '```sh',
    'npx tsx bench/diarization.ts --write          # this section',
    'npx tsx bench/der.ts .tmp/bench/diarization/dialogue1.wav .tmp/bench/diarization/dialogue1.rttm --method baseline',
    '```',
    '',
    ...lines,
    end,
  ].join('\n');
  let text = existsSync(doc) ? readFileSync(doc, 'utf8') : '# Benchmarks\n';
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  text = a >= 0 && b > a ? text.slice(0, a) + body + text.slice(b + end.length) : `${text.trimEnd()}\n\n${body}\n`;
  writeFileSync(doc, text);
  console.log(`\nwrote ${doc}`);
}
