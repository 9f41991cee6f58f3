/**
 * MoonshineEngine: batched transcription with Moonshine (UsefulSensors), an English encoder-decoder whose encoder
 * reads raw samples with a cost proportional to the audio's length (no 30 s window): what a live partial of 2 s
 * should cost. Decoding (greedy, beam search, temperature fallback, KV cache, batching) is the machinery shared with
 * Whisper (../seq2seq); this file is what differs: the prompt is [<s>] (no language or task tokens, no timestamp
 * tokens), the token budget follows the audio (6.5 tokens per second, as the model card's examples), and audio of
 * one length shares an encoder and decoder batch (the export takes no attention mask).
 *
 * Long audio without VAD is cut into windows of at most `MOONSHINE_WINDOW_S` seconds, one segment each. Word timings
 * are the documented fallback ('proportional': a segment's span split over its words by length), reported as such.
 */
import { basename } from 'node:path';
import { decodeGreedy, decodeWithFallback, type DecodeIds, type DecodeTask, type FallbackOptions, type FallbackResult } from '../seq2seq/generate.ts';
import type { EngineCounters, EngineInfo, LanguageProbs, SpeechEngine, TranscribeOptions, TranscribeRequest, TranscribeResult, TranscriptSegment } from '../speech-engine.ts';
import { mergePunctuations, proportionalWordTimes, splitWords, withoutEmpty } from '../whisper/word-timestamps.ts';
import { loadMoonshineConfig, MOONSHINE_MIN_SAMPLES, type MoonshineConfig } from './config.ts';
import { MoonshineOnnxModel, type MoonshineModelOptions } from './model.ts';
import { MoonshineTokenizer } from './tokenizer.ts';

/** Longest window decoded at once when a long file comes without VAD chunks (the models are trained on short utterances). */
export const MOONSHINE_WINDOW_S = 30;

/**
 * Default length quantum of `encoder: 'trimmed'` (live partials): 0 = the exact audio, as finals. With a quantum,
 * audio is padded with trailing silence up to a multiple of it, so partials of different streams can share an
 * encoder and decoder batch — measured no faster at tiny size on 2 cores, and it changes tokens (docs/moonshine.md).
 */
export const MOONSHINE_PAD_QUANTUM_S = 0;

export type MoonshineEngineOptions = Omit<MoonshineModelOptions, 'decoderLayout'> & {
  id?: string;
  /** 'measure' is Whisper's (timed at load); Moonshine loads 'auto' (merged when present) for it. */
  decoderLayout?: MoonshineModelOptions['decoderLayout'] | 'measure';
  /** 'measure' is Whisper's; Moonshine loads fp32 for it (int8 changes results). 'q8': as Whisper's (8-bit decoder blocks at load). */
  precision?: 'fp32' | 'int8' | 'q8' | 'measure';
  /** Seconds of the padding quantum for 'trimmed' requests (default {@link MOONSHINE_PAD_QUANTUM_S}); 0 = exact length. */
  padQuantumS?: number;
};

/** Samples a 'trimmed' request is padded to: a multiple of the quantum, at least the encoder's minimum. */
export function paddedSamples(samples: number, quantum: number): number {
  const q = Math.max(1, Math.round(quantum));
  return Math.max(MOONSHINE_MIN_SAMPLES, Math.ceil(Math.max(1, samples) / q) * q);
}

/** One window of one request: the unit that is encoded and decoded. */
interface Window {
  req: number;
  /** first sample of the window in the request's audio */
  offset: number;
  /** the audio the encoder sees (padded for 'trimmed' requests; at least the encoder's minimum) */
  input: Float32Array;
  /** samples of real audio in the window */
  samples: number;
  task: DecodeTask;
  fallback: FallbackOptions;
}

export class MoonshineEngine implements SpeechEngine {
  readonly info: EngineInfo;
  readonly ids: DecodeIds;
  /** Cumulative ms since load (`stt transcribe --json`): the decoder phase of each batch (decoding, segments, words). */
  readonly timing = { decodeMs: 0 };
  private readonly padQuantum: number;

  private constructor(
    readonly dir: string,
    readonly config: MoonshineConfig,
    readonly tokenizer: MoonshineTokenizer,
    readonly model: MoonshineOnnxModel,
    id: string,
    padQuantumS: number,
  ) {
    this.info = {
      family: 'moonshine',
      id,
      dir,
      languages: ['en'],
      multilingual: false,
      layout: model.layout,
      quantized: model.quantized,
      precision: model.precision,
      crossAttentions: false,
      vocabSize: config.vocabSize,
      samplingRate: config.samplingRate,
      trimmableEncoder: true,
      tasks: ['transcribe'],
    };
    this.ids = { eot: config.eosTokenId, noSpeech: null };
    this.padQuantum = padQuantumS * config.samplingRate;
  }

  static async load(dir: string, opts: MoonshineEngineOptions = {}): Promise<MoonshineEngine> {
    const config = await loadMoonshineConfig(dir);
    const tokenizer = await MoonshineTokenizer.load(dir);
    const { decoderLayout, precision, padQuantumS, id, ...modelOpts } = opts;
    const quantized = precision && precision !== 'measure' ? precision === 'int8' : !!opts.quantized;
    const model = await MoonshineOnnxModel.load(dir, config, {
      ...modelOpts,
      quantized,
      decoderLayout: decoderLayout === 'measure' ? 'auto' : decoderLayout,
      blockQuantizeDecoder: precision === 'q8' || modelOpts.blockQuantizeDecoder,
    });
    return new MoonshineEngine(dir, config, tokenizer, model, id ?? basename(dir), padQuantumS ?? MOONSHINE_PAD_QUANTUM_S);
  }

  async close(): Promise<void> {
    await this.model.close();
  }

  counters(): EngineCounters {
    const d = this.model.decoder.timing;
    return { featuresMs: 0, encoderMs: this.model.timing.encoderMs, decodeMs: this.timing.decodeMs, decoderRunMs: d.decoderMs, decoderRuns: d.decoderRuns };
  }

  /** 'trimmed' requests (live partials) of one padded (or, unpadded, exact) length share a batch; 'full' ones are grouped by the engine. */
  shapeKey(samples: number, mode: TranscribeOptions['encoder'] = 'full'): string {
    if (mode !== 'trimmed' || samples > MOONSHINE_WINDOW_S * this.config.samplingRate) return '';
    // Unpadded partials still get a key of their own: in the finals' group they would be decoded one length after
    // another inside a batch that a final is waiting for.
    if (this.padQuantum < 1) return `exact@${Math.max(samples, MOONSHINE_MIN_SAMPLES)}`;
    return `padded@${paddedSamples(samples, this.padQuantum)}`;
  }

  /** English only: every audio is English with probability 1 (no detector to run). */
  async detectLanguage(batch: Float32Array[]): Promise<LanguageProbs[]> {
    return batch.map(() => ({ language: 'en', probs: [['en', 1]] }));
  }

  /** Token budget of a window: the caller's, else 6.5 per second of audio; never past the decoder's context. */
  private budget(promptLength: number, samples: number, maxNewTokens?: number): number {
    const natural = Math.ceil((samples / this.config.samplingRate) * this.config.tokensPerSecond);
    return Math.max(1, Math.min(maxNewTokens ?? natural, this.config.maxPositions - promptLength));
  }

  private validate(o: TranscribeOptions): void {
    if (o.language && o.language !== 'auto' && o.language.toLowerCase() !== 'en') {
      throw new Error(`unsupported language "${o.language}": ${this.info.id} is an English model`);
    }
    if (o.task === 'translate') throw new Error(`${this.info.id} only transcribes (task 'translate' needs a multilingual Whisper model)`);
  }

  private windows(reqs: TranscribeRequest[]): Window[] {
    const sr = this.config.samplingRate;
    const maxWindow = MOONSHINE_WINDOW_S * sr;
    const out: Window[] = [];
    reqs.forEach((r, req) => {
      const o = r.options ?? {};
      this.validate(o);
      const temperatures = o.temperature === undefined ? [0] : Array.isArray(o.temperature) ? o.temperature : [o.temperature];
      const fallback: FallbackOptions = {
        temperatures,
        beamSize: o.beamSize ?? 1,
        patience: o.patience,
        lengthPenalty: o.lengthPenalty ?? null,
        compressionRatioThreshold: o.compressionRatioThreshold === undefined ? 2.4 : o.compressionRatioThreshold,
        logprobThreshold: o.logprobThreshold === undefined ? -1.0 : o.logprobThreshold,
        noSpeechThreshold: null,
        seed: o.seed ?? 0,
      };
      const prefix = o.prefix?.trim() ? this.tokenizer.encodeText(o.prefix) : [];
      const padded = o.encoder === 'trimmed' && this.padQuantum >= 1 && r.audio.length <= maxWindow;
      const count = Math.max(1, Math.ceil(r.audio.length / maxWindow));
      for (let k = 0; k < count; k++) {
        const offset = k * maxWindow;
        const samples = Math.min(maxWindow, r.audio.length - offset);
        const length = padded ? paddedSamples(samples, this.padQuantum) : Math.max(samples, MOONSHINE_MIN_SAMPLES);
        const input = new Float32Array(length);
        input.set(r.audio.subarray(offset, offset + samples));
        // HF generate from decoder_start_token_id; a prefix (live partials' agreed words) is forced after it
        const prompt = [this.config.startTokenId, ...(offset === 0 ? prefix : [])];
        const task: DecodeTask = { prompt, sotIndex: 0, processors: [], maxNewTokens: this.budget(prompt.length, samples, o.maxNewTokens), temperature: temperatures[0] };
        if (o.tokenLogprobs === false) task.logprobs = false;
        out.push({ req, offset, input, samples, task, fallback });
      }
    });
    return out;
  }

  /** Transcribe a batch of requests: windows of one length share an encoder run and a decoder batch. */
  async transcribe(reqs: TranscribeRequest[]): Promise<TranscribeResult[]> {
    const windows = this.windows(reqs);
    const results: FallbackResult[] = new Array(windows.length);
    const byShape = new Map<string, number[]>();
    windows.forEach((w, i) => {
      const k = `${w.input.length}|${JSON.stringify(w.fallback)}`;
      byShape.set(k, [...(byShape.get(k) ?? []), i]);
    });
    const covered = this.progressHooks(reqs, windows);
    for (const idx of byShape.values()) {
      const enc = await this.model.encode(idx.map((i) => windows[i].input));
      const t0 = performance.now(); // timing
      const fo = windows[idx[0]].fallback;
      const tasks = idx.map((i) => windows[i].task);
      const res =
        fo.temperatures.length === 1 && fo.temperatures[0] === 0 && fo.beamSize <= 1
          ? (await decodeGreedy(this.model, enc, tasks, this.ids)).map((r) => ({ ...r, compressionRatio: 0 }))
          : await decodeWithFallback(this.model, enc, tasks, this.ids, (t) => this.tokenizer.decode(t), fo);
      res.forEach((r, j) => (results[idx[j]] = r));
      for (const i of idx) covered[i] = windows[i].samples / this.config.samplingRate; // ended (EOT) before its budget
      this.timing.decodeMs += performance.now() - t0; // timing
    }
    const t0 = performance.now(); // timing
    const out = reqs.map((r, req) =>
      this.result(
        r,
        windows.flatMap((w, i) => (w.req === req ? [{ w, r: results[i] }] : [])),
      ),
    );
    this.timing.decodeMs += performance.now() - t0; // timing
    return out;
  }

  /**
   * Per-step progress for the requests that ask for it: each window's share of its token budget (which follows its
   * audio's length) times its seconds, summed over the request's windows. Returns the seconds decoded per window.
   */
  private progressHooks(reqs: TranscribeRequest[], windows: Window[]): Float64Array {
    const covered = new Float64Array(windows.length);
    const ofReq: number[][] = reqs.map(() => []);
    windows.forEach((w, i) => ofReq[w.req].push(i));
    windows.forEach((w, i) => {
      const report = reqs[w.req].onProgress;
      if (!report) return;
      const mine = ofReq[w.req];
      const window = mine.indexOf(i);
      const seconds = w.samples / this.config.samplingRate;
      const maxTokens = w.task.maxNewTokens;
      w.task.onToken = (_token, generated) => {
        covered[i] = Math.min(seconds, (generated / maxTokens) * seconds);
        let sum = 0;
        for (const j of mine) sum += covered[j];
        report({ window, tokens: generated, maxTokens, seconds: sum });
      };
    });
    return covered;
  }

  private result(req: TranscribeRequest, parts: { w: Window; r: FallbackResult }[]): TranscribeResult {
    const sr = this.config.samplingRate;
    const words = req.options?.wordTimestamps ?? false;
    const segments: TranscriptSegment[] = [];
    for (const { w, r } of parts) {
      const text = this.tokenizer.decode(r.tokens);
      if (!text.trim()) continue;
      const start = round3(w.offset / sr);
      const end = round3((w.offset + w.samples) / sr);
      const seg: TranscriptSegment = {
        id: segments.length,
        seek: Math.round((w.offset / sr) * 100),
        start,
        end,
        text: ` ${text.trim()}`,
        tokens: r.tokens,
        avgLogprob: r.avgLogprob,
        // Moonshine has no no-speech token: VAD decides what is speech
        noSpeechProb: 0,
        compressionRatio: r.compressionRatio,
        temperature: r.temperature,
      };
      if (words) {
        const split = withoutEmpty(mergePunctuations(splitWords(r.tokens, r.tokenLogprobs, (ids) => this.tokenizer.decodePiece(ids), 'en')));
        seg.words = proportionalWordTimes(split, start, end);
      }
      segments.push(seg);
    }
    return {
      text: segments
        .map((s) => s.text)
        .join('')
        .trim(),
      language: 'en',
      segments,
      tokensPerWindow: parts.map((p) => p.r.tokens),
      wordTimestamps: words ? 'proportional' : undefined,
      duration: req.audio.length / sr,
    };
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
