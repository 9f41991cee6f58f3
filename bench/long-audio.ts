/**
 * Long files through the file pipeline (issue 13): what it costs before the metering hook answers,
 * and the peak memory of a whole transcription, in THIS process (run it as a child so that nothing
 * else pollutes the numbers; the tests in test/pipeline/long-audio.test.ts do).
 *
 *   node --import tsx bench/long-audio.ts <file> [--refuse] [--vad false] [--tokens 8] [--model whisper-mini-random]
 *
 * --refuse: the metering hook throws 402 (as a client without credits gets). Prints one JSON line:
 * delivered/metered seconds, the hook calls in order (with this process's CPU seconds at each),
 * CPU seconds of this process until the answer (ffmpeg's: run it under `/usr/bin/time -f '%U %S %M'`),
 * peak RSS of this process (MB), wall seconds. MODELS_DIR as for the server.
 */
import path from 'node:path';
import { pino } from 'pino';
import { SileroVad } from '../src/engines/vad/silero-vad.ts';
import { ModelRegistry } from '../src/models/registry.ts';
import { FileTranscriber } from '../src/pipeline/file-transcriber.ts';
import { JobRegistry } from '../src/pipeline/job-registry.ts';
import { SpeechModels } from '../src/pipeline/speech-models.ts';
import { TranscriptionService } from '../src/pipeline/transcription-service.ts';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const file = argv[0];
if (!file || file.startsWith('--')) {
  console.error('usage: node --import tsx bench/long-audio.ts <file> [--refuse] [--vad false] [--tokens 8] [--model whisper-mini-random]');
  process.exit(2);
}
const refuse = argv.includes('--refuse');
const modelsDir = path.resolve(process.env.MODELS_DIR ?? '../shared/models');

const registry = await ModelRegistry.create(modelsDir);
const models = new SpeechModels({ registry, logger: pino({ level: 'silent' }), maxBatch: 8, batchWindowMs: 10, inference: {} });
const vad = await SileroVad.load();
const jobs = new JobRegistry();
const service = new TranscriptionService({ models, transcriber: new FileTranscriber({ vad }), jobs });
const model = opt('model', 'whisper-mini-random');
await models.get(model); // load first: its memory is not the file's

const hooks: Array<{ kind: 'before' | 'more'; seconds: number; cpuS: number }> = [];
const cpu0 = process.cpuUsage();
const cpuS = () => {
  const c = process.cpuUsage(cpu0);
  return (c.user + c.system) / 1e6;
};
const t0 = performance.now();
let status = 200;
let error: string | undefined;
let result: Awaited<ReturnType<typeof service.transcribeFile>> | undefined;
try {
  result = await service.transcribeFile({
    path: path.resolve(file),
    model,
    language: 'en',
    vad: opt('vad', 'true') !== 'false',
    maxNewTokens: Number(opt('tokens', '8')),
    temperature: 0,
    beforeTranscribe: async (seconds) => {
      hooks.push({ kind: 'before', seconds, cpuS: cpuS() });
      if (refuse) throw Object.assign(new Error('Not enough credits'), { status: 402 });
    },
    meterMore: async (seconds) => {
      hooks.push({ kind: 'more', seconds, cpuS: cpuS() });
    },
  });
} catch (err) {
  status = (err as { status?: number }).status ?? 500;
  error = (err as Error).message;
}
const ru = process.resourceUsage();
console.log(
  JSON.stringify({
    file: path.basename(file),
    status,
    error,
    hooks,
    deliveredSeconds: result?.deliveredSeconds ?? result?.duration,
    meteredSeconds: result?.meteredSeconds,
    segments: result?.segments.length,
    cpuS: Number(cpuS().toFixed(2)),
    maxRssMB: Math.round(ru.maxRSS / 1024),
    wallS: Number(((performance.now() - t0) / 1000).toFixed(2)),
  }),
);
await jobs.close();
await models.close();
await vad.close();
