/**
 * `npx stt transcribe FILE --model DIR_OR_ID [--language xx] [--timestamps] [--beam-size N]
 *   [--max-new-tokens N] [--temperature T[,T…]] [--no-vad] [--json]`
 *
 * Runs the same pipeline as the server (ffmpeg decode → Silero VAD → batching scheduler → Whisper)
 * in-process, so the engine can be checked from outside the server. With --json it prints one
 * object: text, language, segments (start, end, text, words) and tokens (the generated ids of each
 * 30 s window or VAD chunk, prompt excluded, timestamp tokens included) and timing (ms, as whisper.cpp prints
 * its own): load (Whisper sessions, tokenizer, VAD), transcribe (everything after: audio decode, VAD, features,
 * encoder, decoder), and within it features / encoder / decode (see {@link timingOf}); tokens generated.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import cliProgress from 'cli-progress';
import { loadConfig } from '../../config/config.ts';
import { decodeToPcm16k } from '../audio/ffmpeg.ts';
import { SileroVad } from '../engines/vad/silero-vad.ts';
import type { EngineCounters, SpeechEngine } from '../engines/speech-engine.ts';
import { ModelRegistry } from '../models/registry.ts';
import { FileTranscriber } from '../pipeline/file-transcriber.ts';
import { SpeechModels } from '../pipeline/speech-models.ts';
import { TRANSLATE_USAGE, translateMain } from './translate.ts';
import { exitCodeOf, intFlag, UsageError } from './usage-error.ts';

const USAGE = `usage: stt transcribe FILE --model DIR_OR_ID [options]

options:
  --model, -m DIR_OR_ID   model id (see: npm run models:list) or a model folder path
  --language, -l CODE     language code or 'auto' (default auto)
  --task TASK             transcribe (default) or translate
  --timestamps            decode with timestamp tokens (segment times)
  --word-timestamps       word-level timestamps
  --beam-size N           beam search width (default 1 = greedy)
  --max-new-tokens N      token budget per 30 s window (random-weight models never stop early)
  --temperature T[,T...]  temperature or fallback schedule (default 0,0.2,0.4,0.6,0.8,1)
  --no-vad                send the whole file through 30 s windows instead of VAD speech chunks
  --precision P           fp32 (default), int8 (the *_quantized files) or q8 (the fp32 files with the
                          decoder's weights rewritten to 8-bit blocks at load: faster per token)
  --quantized             the same as --precision int8
  --decoder-layout L      merged, split or auto (default: merged when the folder has it)
  --threads N             onnxruntime intra-op threads
  --prepack-decoder       pre-pack the decoder weights at load, as the server does: a slower start
                          (tiny: ~0.6 s of CPU), for long files where batched decoder steps dominate
  --json                  print one JSON object
  --quiet                 no progress bar
  --server URL            send the file to a running server (POST /v1/transcribe) and follow
                          its progress (GET /v1/jobs/:id) instead of transcribing in-process
  --format FMT            with --server: json (default), txt, srt or vtt
  --api-key KEY           with --server: the API key (sent as Authorization: Bearer);
                          default: the STT_API_KEY environment variable

${TRANSLATE_USAGE}`;

/** How bin/stt.mjs started this code: its bundle (dist/cli, `npm run build`) or the TypeScript through tsx. */
export interface CliLaunch {
  runtime: 'bundle' | 'tsx';
}

export async function main(argv: string[], launch: CliLaunch = { runtime: 'tsx' }): Promise<number> {
  const startupMs = performance.now(); // since the process started: node, the bundle or tsx, and the imports
  if (argv[0] === 'translate') return translateMain(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        model: { type: 'string', short: 'm' },
        language: { type: 'string', short: 'l', default: 'auto' },
        task: { type: 'string', default: 'transcribe' },
        timestamps: { type: 'boolean', default: false },
        'word-timestamps': { type: 'boolean', default: false },
        'beam-size': { type: 'string' },
        'max-new-tokens': { type: 'string' },
        temperature: { type: 'string' },
        'no-vad': { type: 'boolean', default: false },
        quantized: { type: 'boolean', default: false },
        precision: { type: 'string' },
        'decoder-layout': { type: 'string', default: 'auto' },
        threads: { type: 'string' },
        'prepack-decoder': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        quiet: { type: 'boolean', default: false },
        server: { type: 'string' },
        'api-key': { type: 'string' },
        format: { type: 'string', default: 'json' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values: o, positionals } = parsed;
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  const [command, file] = positionals;
  if (command !== 'transcribe' || !file || (!o.model && !o.server)) {
    console.error(USAGE);
    return 2;
  }
  if (o.server) return transcribeOnServer(o.server, file, { ...o, apiKey: o['api-key'] ?? (process.env.STT_API_KEY || undefined) });
  const modelArg = o.model!;
  let models: SpeechModels | null = null;
  let vad: SileroVad | null = null;
  try {
    if (!fs.existsSync(file)) throw new UsageError(`No such file: ${file}`);
    if (o.task !== 'transcribe' && o.task !== 'translate') throw new UsageError(`--task must be transcribe or translate`);
    const precision = o.precision ?? (o.quantized ? 'int8' : 'fp32');
    if (precision !== 'fp32' && precision !== 'int8' && precision !== 'q8') throw new UsageError(`--precision must be fp32, int8 or q8`);
    if (o.quantized && precision !== 'int8') throw new UsageError(`--quantized is --precision int8; it cannot go with --precision ${precision}`);
    const layout = o['decoder-layout'];
    if (layout !== 'auto' && layout !== 'merged' && layout !== 'split') throw new UsageError(`--decoder-layout must be merged, split or auto`);
    const temperature = o.temperature?.split(',').map((t) => {
      const n = Number(t);
      if (!Number.isFinite(n) || n < 0) throw new UsageError(`--temperature takes numbers ≥ 0 (got '${t}')`);
      return n;
    });
    const config = loadConfig();
    // The file is read (ffmpeg, a child process, for anything but a plain 16 kHz mono WAV) while the models load.
    const tAudio = performance.now();
    let audioMs = 0;
    const audio = decodeToPcm16k(file).then((s) => {
      audioMs = performance.now() - tAudio;
      return s;
    });
    audio.catch(() => {}); // awaited after the load; a failure is reported there, not as an unhandled rejection
    const tLoad = performance.now();
    const registry = await ModelRegistry.create(config.paths.modelsDir);
    const logger = pino({ level: 'silent' });
    models = new SpeechModels({
      registry,
      logger,
      inference: {
        executionProvider: config.inference.executionProvider,
        allowSpinning: config.inference.allowSpinning,
        graphCacheDir: config.inference.graphCacheDir ?? undefined,
        intraOpThreads: intFlag('threads', o.threads, 1) ?? (config.inference.intraOpThreads || undefined),
        precision,
        decoderLayout: layout,
        // one file, a few hundred decoder steps: packing the weights costs more at load than it saves (bench/startup.ts)
        prepackDecoder: o['prepack-decoder'],
      },
    });
    const isPath = modelArg.includes('/') || modelArg.startsWith('.');
    const model = isPath ? await models.getByPath(path.resolve(modelArg)) : await models.get(modelArg);
    if (o.language !== 'auto' && !model.engine.info.languages.includes(o.language)) {
      throw new UsageError(`--language '${o.language}' is not a language of this model; use 'auto' or one of: ${model.engine.info.languages.join(', ')}`);
    }
    if (o.task === 'translate' && !model.engine.info.tasks.includes('translate')) {
      throw new UsageError(`--task translate needs a multilingual Whisper model; ${model.id} only transcribes`);
    }
    if (!o['no-vad']) vad = await SileroVad.load();
    const loadMs = performance.now() - tLoad;
    const before = countersOf(model.engine);
    const samples = await audio;

    const bar =
      o.json || o.quiet || !process.stderr.isTTY
        ? null
        : new cliProgress.SingleBar({ format: ' {stage} [{bar}] {percentage}% | {value}/{total} s', stream: process.stderr }, cliProgress.Presets.shades_classic);
    const duration = Math.round(samples.length / 16000);
    bar?.start(duration, 0, { stage: 'vad' });
    const result = await new FileTranscriber({ vad: vad ?? undefined }).transcribe(
      model,
      samples,
      {
        language: o.language,
        task: o.task,
        vad: !o['no-vad'],
        timestamps: o.timestamps,
        wordTimestamps: o['word-timestamps'],
        beamSize: intFlag('beam-size', o['beam-size'], 1),
        maxNewTokens: intFlag('max-new-tokens', o['max-new-tokens'], 1),
        temperature: temperature && (temperature.length === 1 ? temperature[0] : temperature),
      },
      { onProgress: (p) => bar?.update(Math.round(p.fraction * duration), { stage: p.stage }) },
    );
    bar?.stop();
    const timing = timingOf({
      startupMs,
      loadMs,
      audioMs,
      transcribeMs: performance.now() - tLoad - loadMs,
      before,
      after: countersOf(model.engine),
      tokens: result.tokens.reduce((a, t) => a + t.length, 0),
    });

    if (o.json) {
      console.log(
        JSON.stringify({
          text: result.text,
          language: result.language,
          duration: result.duration,
          model: result.model,
          word_timestamps: result.wordTimestamps,
          segments: result.segments.map((s) => ({ start: s.start, end: s.end, text: s.text, words: s.words })),
          tokens: result.tokens,
          variant: { precision: model.engine.info.precision, layout: model.engine.info.layout },
          timing,
          runtime: launch.runtime,
        }),
      );
    } else {
      for (const s of result.segments) console.log(`[${fmt(s.start)} → ${fmt(s.end)}] ${s.text}`);
      console.error(`language: ${result.language}, duration: ${result.duration.toFixed(1)} s, model: ${result.model}`);
      console.error(
        `timing (ms): ${Object.entries(timing)
          .map(([k, v]) => `${k.replace(/_ms$/, '')} ${v}`)
          .join(', ')}`,
      );
    }
    return 0;
  } catch (err) {
    console.error(`error: ${(err as Error).message}`);
    // The caller's mistake (bad file, unknown model or language) is a usage error, as a 4xx would be.
    return exitCodeOf(err);
  } finally {
    await vad?.close();
    await models?.close();
  }
}

/** The engine's cumulative counters now (they run from load; a request's share is a difference). */
function countersOf(e: SpeechEngine): EngineCounters {
  return e.counters();
}

/**
 * The `timing` object of --json (ms, rounded to 0.1): load_ms = models loaded (Whisper config, tokenizer, ONNX
 * sessions; Silero VAD unless --no-vad); transcribe_ms = everything after (what is left of the audio decode, which
 * starts before the load and runs beside it, then VAD, features, encoder, decoder, result);
 * within it features_ms = log-mel, encoder_ms = encoder session runs, decode_ms = each window's decoder phase
 * (language detection, decoder runs, logits processing, fallbacks, segments), decoder_run_ms = the decoder session
 * runs alone (decoder_runs of them), audio_ms = reading the file to 16 kHz PCM (overlapping the load); tokens =
 * tokens generated (those returned); startup_ms = process start until the CLI ran (node and the imports: the
 * bundle bin/stt.mjs runs, or tsx compiling the sources when they changed since `npm run build`).
 */
export function timingOf(t: { startupMs: number; loadMs: number; audioMs: number; transcribeMs: number; before: EngineCounters; after: EngineCounters; tokens: number }) {
  const r = (x: number) => Math.round(x * 10) / 10;
  const d = (k: keyof EngineCounters) => t.after[k] - t.before[k];
  return {
    load_ms: r(t.loadMs),
    features_ms: r(d('featuresMs')),
    encoder_ms: r(d('encoderMs')),
    decode_ms: r(d('decodeMs')),
    transcribe_ms: r(t.transcribeMs),
    tokens: t.tokens,
    decoder_run_ms: r(d('decoderRunMs')),
    decoder_runs: d('decoderRuns'),
    audio_ms: r(t.audioMs),
    startup_ms: r(t.startupMs),
  };
}

/** Uploads to a running server with a client-chosen job id and draws the job's progress meanwhile. */
async function transcribeOnServer(
  server: string,
  file: string,
  o: {
    model?: string;
    language?: string;
    format?: string;
    json?: boolean;
    quiet?: boolean;
    'no-vad'?: boolean;
    'max-new-tokens'?: string;
    temperature?: string;
    apiKey?: string;
  },
): Promise<number> {
  if (!fs.existsSync(file)) {
    console.error(`error: No such file: ${file}`);
    return 2;
  }
  const base = server.replace(/\/+$/, '');
  const jobId = crypto.randomUUID();
  // Job ids are scoped per owner: the progress poll needs the key as much as the upload.
  const auth: Record<string, string> = o.apiKey ? { authorization: `Bearer ${o.apiKey}` } : {};
  const form = new FormData();
  form.append('file', await fs.openAsBlob(file), path.basename(file));
  const fields: Record<string, string | undefined> = {
    model: o.model,
    language: o.language,
    response_format: o.json ? 'json' : o.format,
    vad: o['no-vad'] ? 'false' : undefined,
    max_new_tokens: o['max-new-tokens'],
    temperature: o.temperature,
  };
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) form.append(k, v);
  const bar = o.quiet || !process.stderr.isTTY ? null : new cliProgress.SingleBar({ format: ' {stage} [{bar}] {percentage}%', stream: process.stderr }, cliProgress.Presets.shades_classic);
  bar?.start(100, 0, { stage: 'uploading' });
  let finished = false;
  const poll = (async () => {
    while (!finished) {
      await new Promise((r) => setTimeout(r, 250));
      const r = await fetch(`${base}/v1/jobs/${jobId}`, { headers: auth }).catch(() => null);
      if (r?.ok) {
        const j = (await r.json()) as { progress: { stage: string; fraction: number } };
        bar?.update(Math.round(j.progress.fraction * 100), { stage: j.progress.stage });
      }
    }
  })();
  try {
    const res = await fetch(`${base}/v1/transcribe`, { method: 'POST', body: form, headers: { ...auth, 'x-job-id': jobId } });
    finished = true;
    await poll;
    bar?.stop();
    const body = await res.text();
    if (!res.ok) {
      console.error(`error: ${res.status} ${(JSON.parse(body) as { error: string }).error}`);
      return res.status < 500 ? 2 : 1;
    }
    process.stdout.write(body.endsWith('\n') ? body : body + '\n');
    return 0;
  } catch (err) {
    finished = true;
    bar?.stop();
    console.error(`error: cannot reach ${base}: ${(err as Error).message}`);
    return 1;
  }
}

function fmt(s: number): string {
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, '0')}:${(s - m * 60).toFixed(2).padStart(5, '0')}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then((code) => (process.exitCode = code));
}
