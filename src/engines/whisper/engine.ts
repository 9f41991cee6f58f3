/**
 * WhisperEngine: batched transcription on top of the ORT model, with OpenAI transcribe() long-form
 * semantics (30 s windows, seeking by the last timestamp, temperature fallback, no-speech skip,
 * conditioning on previous text). See docs/whisper-engine.md.
 *
 * The lower-level pieces (features, encode, prompts, processors, BatchDecoder) are exposed so a
 * cross-stream scheduler can batch encoder and decoder work from different streams itself.
 */
import { basename } from 'node:path';
import { loadWhisperConfig, type WhisperConfig } from './config.ts';
import { extractFeatures, longFormMel, sliceFrames, type LogMel } from './features.ts';
import { BatchDecoder, decodeWithFallback, type DecodeIds, type DecodeTask, type FallbackOptions, type FallbackResult } from '../seq2seq/generate.ts';
import type { DecoderLayout, EncoderOutput } from '../seq2seq/kv-decoder.ts';
import { selectEncoderRows } from '../seq2seq/kv-rows.ts';
import type { LogitsProcessor } from '../seq2seq/logits.ts';
import type { EngineCounters, EngineInfo, LanguageProbs, SpeechEngine, TranscribeOptions, TranscribeRequest, TranscribeResult, TranscriptSegment, VariantTiming } from '../speech-engine.ts';
import { detectLanguage as detectLanguageRows } from './language-detection.ts';
import { whisperLogitsProcessors } from './logits-processors.ts';
import { WhisperOnnxModel, type WhisperModelOptions } from './model.ts';
import { windowSegments } from './segments.ts';

export type { EngineInfo, TranscribeOptions, TranscribeRequest, TranscribeResult, TranscriptSegment } from '../speech-engine.ts';
import { TIME_PRECISION, WhisperTokenizer } from './tokenizer.ts';
import { loadFastestVariant } from './variant-choice.ts';
import {
  addWordTimestamps,
  alignTokens,
  alignWords,
  lastSpeechEnd,
  mergePunctuations,
  proportionalWordTimes,
  splitWords,
  withoutEmpty,
  type WordTimestampMethod,
  type WordTiming,
} from './word-timestamps.ts';

export type WhisperEngineOptions = Omit<WhisperModelOptions, 'decoderLayout'> & {
  id?: string;
  /** 'measure': time both layouts at load and keep the faster (variant-choice.ts); results are identical. */
  decoderLayout?: WhisperModelOptions['decoderLayout'] | 'measure';
  /**
   * 'measure': time fp32 and int8 at load and keep the faster (int8 changes results slightly). 'q8': the fp32 files
   * with the decoder's weights rewritten to 8-bit blocks at load (WhisperModelOptions.blockQuantizeDecoder). Default: `quantized`.
   */
  precision?: 'fp32' | 'int8' | 'q8' | 'measure';
};

/**
 * Mel-frame counts (10 ms each) the trimmed encoder runs at: audio is rounded up to one of these so that
 * windows of different streams share a shape (one encoder batch, one decoder batch) and onnxruntime sees
 * few distinct shapes. Finer at the short end, where live partials are.
 */
export const ENCODER_BUCKETS: readonly number[] = [250, 500, 750, 1000, 1500, 2000, 2500, 3000];

/** Frames the trimmed encoder runs for a window of `contentFrames` frames of audio (≤ nFrames). */
export function encoderBucketFrames(contentFrames: number, nFrames = 3000): number {
  const need = Math.min(Math.max(1, Math.ceil(contentFrames)), nFrames);
  return Math.min(nFrames, ENCODER_BUCKETS.find((b) => b >= need) ?? nFrames);
}

const DEFAULT_TEMPERATURES = [0, 0.2, 0.4, 0.6, 0.8, 1.0];

interface StreamState {
  audio: Float32Array;
  opts: Required<Pick<TranscribeOptions, 'task' | 'timestamps' | 'wordTimestamps' | 'beamSize' | 'conditionOnPrevious'>> & TranscribeOptions;
  mel: LogMel;
  contentFrames: number;
  seek: number;
  language: string | null;
  languageProbs?: [string, number][];
  allTokens: number[];
  promptResetSince: number;
  initialPromptLength: number;
  segments: TranscriptSegment[];
  tokensPerWindow: number[][];
  wordMethod?: WordTimestampMethod;
  /** OpenAI `last_speech_timestamp`: end of the last word so far (word timestamps only) */
  lastSpeechTimestamp: number;
  /** Encoder on the window's audio length rounded up to a bucket, instead of 30 s. */
  trimmed: boolean;
  /** Forced after the SOT sequence of the first window (`prefix` option). */
  prefixTokens: number[];
  onProgress?: TranscribeRequest['onProgress'];
}

export class WhisperEngine implements SpeechEngine {
  readonly info: EngineInfo;
  readonly ids: DecodeIds;
  /** Cumulative ms since load (timing counters: `stt transcribe --json`): log-mel of transcribe's input; each window's
   * decoder phase (language detection, decoding with fallbacks incl. logits processing, segments, word alignment). */
  readonly timing = { featuresMs: 0, decodeMs: 0 };

  private constructor(
    readonly dir: string,
    readonly config: WhisperConfig,
    readonly tokenizer: WhisperTokenizer,
    readonly model: WhisperOnnxModel,
    id: string,
    variantTimings?: VariantTiming[],
  ) {
    this.info = {
      family: 'whisper',
      id,
      dir,
      languages: [...tokenizer.languages.keys()],
      multilingual: config.gen.isMultilingual,
      layout: model.layout,
      quantized: model.quantized,
      precision: model.precision,
      crossAttentions: model.hasCrossAttentions,
      vocabSize: config.vocabSize,
      samplingRate: config.features.samplingRate,
      trimmableEncoder: model.trimmable,
      tasks: config.gen.isMultilingual ? ['transcribe', 'translate'] : ['transcribe'],
      variantTimings,
    };
    this.ids = { eot: tokenizer.eot, noSpeech: tokenizer.noSpeech };
  }

  static async load(dir: string, opts: WhisperEngineOptions = {}): Promise<WhisperEngine> {
    const config = await loadWhisperConfig(dir);
    const tokenizer = await WhisperTokenizer.load(dir, config.gen);
    const { decoderLayout, precision, ...rest } = opts;
    const quantized = precision ? precision === 'int8' : opts.quantized;
    const modelOpts = { ...rest, blockQuantizeDecoder: precision === 'q8' || rest.blockQuantizeDecoder };
    if (decoderLayout === 'measure' || precision === 'measure') {
      const multilingual = config.gen.isMultilingual;
      const sot = tokenizer.sotSequence({ language: multilingual ? 'en' : null, task: 'transcribe', timestamps: false, multilingual });
      // q8 measures layouts only (the fp32 files, rewritten at load)
      const filePrecision = precision === 'q8' ? 'fp32' : (precision ?? (quantized ? 'int8' : 'fp32'));
      const { model, timings } = await loadFastestVariant(dir, config, modelOpts, { precision: filePrecision, layout: decoderLayout ?? 'auto' }, sot);
      return new WhisperEngine(dir, config, tokenizer, model, opts.id ?? basename(dir), timings);
    }
    const model = await WhisperOnnxModel.load(dir, config, { ...modelOpts, quantized, decoderLayout });
    return new WhisperEngine(dir, config, tokenizer, model, opts.id ?? basename(dir));
  }

  async close(): Promise<void> {
    await this.model.close();
  }

  counters(): EngineCounters {
    const d = this.model.decoder.timing;
    return { featuresMs: this.timing.featuresMs, encoderMs: this.model.timing.encoderMs, decodeMs: this.timing.decodeMs, decoderRunMs: d.decoderMs, decoderRuns: d.decoderRuns };
  }

  /** Requests of one trimmed-encoder bucket share a batch (one encoder shape); full windows batch together ('' ). */
  shapeKey(samples: number, mode: TranscribeOptions['encoder'] = 'full'): string {
    if (mode !== 'trimmed') return '';
    const frames = this.encoderFrames(samples, 'trimmed');
    return frames >= this.config.features.nFrames ? '' : `trimmed@${frames}`;
  }

  // ---- building blocks (for schedulers) ----

  /** Log-mel of one ≤ 30 s window exactly as HF's feature extractor ([nMels, 3000]), or its first `frames` frames. */
  features(audio: Float32Array, frames = this.config.features.nFrames): Float32Array {
    return extractFeatures(audio, this.config.features, frames);
  }

  /** One encoder run over several windows (possibly from different streams), all of `frames` frames. */
  encode(features: Float32Array[], frames = this.config.features.nFrames): Promise<EncoderOutput> {
    return this.model.encode(features, frames);
  }

  /**
   * Frames the encoder runs for the first window of `samples` samples of audio with `mode`: 3000 for 'full'
   * (and whenever the encoder could not be rewritten), else the length rounded up to an {@link ENCODER_BUCKETS}
   * bucket. Requests with equal values can share a batch (schedulers group by it).
   */
  encoderFrames(samples: number, mode: TranscribeOptions['encoder'] = 'full'): number {
    const { nFrames, hopLength } = this.config.features;
    if (mode !== 'trimmed' || !this.model.trimmable) return nFrames;
    return encoderBucketFrames(Math.ceil(samples / hopLength), nFrames);
  }

  /** HF/OpenAI processors for a row; `timestamps` selects the timestamp rules. */
  processors(timestamps: boolean): LogitsProcessor[] {
    const g = this.config.gen;
    return whisperLogitsProcessors({
      suppressTokens: g.suppressTokens,
      beginSuppressTokens: g.beginSuppressTokens,
      timestamps,
      timestampRules: {
        eot: this.tokenizer.eot,
        noTimestamps: this.tokenizer.noTimestamps,
        timestampBegin: this.tokenizer.timestampBegin,
        maxInitialTimestampIndex: g.maxInitialTimestampIndex,
      },
    });
  }

  /**
   * Decoder prompt: [<|startofprev|>, last (n_ctx/2 - 1) previous tokens]? + [sot, lang, task, <|notimestamps|>?].
   */
  buildPrompt(o: { language: string; task?: 'transcribe' | 'translate'; timestamps: boolean; previous?: number[]; prefix?: number[] }): { prompt: number[]; sotIndex: number } {
    const sotSeq = this.tokenizer.sotSequence({ language: o.language, task: o.task, timestamps: o.timestamps, multilingual: this.config.gen.isMultilingual });
    // OpenAI's `prefix`: forced after the SOT sequence (at most half the context, as its prompt)
    const prefix = (o.prefix ?? []).slice(-(Math.floor(this.config.maxTargetPositions / 2) - 1));
    const prev = o.previous ?? [];
    if (!prev.length) return { prompt: [...sotSeq, ...prefix], sotIndex: 0 };
    const keep = prev.slice(-(Math.floor(this.config.maxTargetPositions / 2) - 1));
    return { prompt: [this.tokenizer.sotPrev, ...keep, ...sotSeq, ...prefix], sotIndex: keep.length + 1 };
  }

  /** A decode task for one row (greedy when temperature is 0). */
  task(o: {
    language: string;
    task?: 'transcribe' | 'translate';
    timestamps: boolean;
    previous?: number[];
    prefix?: number[];
    maxNewTokens?: number;
    temperature?: number;
    /** false: no per-token log-softmax (DecodeTask.logprobs) */
    logprobs?: boolean;
  }): DecodeTask {
    const { prompt, sotIndex } = this.buildPrompt(o);
    const task: DecodeTask = { prompt, sotIndex, processors: this.processors(o.timestamps), maxNewTokens: this.budget(prompt.length, o.maxNewTokens), temperature: o.temperature ?? 0 };
    if (o.logprobs === false) task.logprobs = false;
    return task;
  }

  /** Step-wise batched decoder (one session.run per step for all rows); rows must share prompt length. */
  startDecoding(encoder: EncoderOutput, tasks: DecodeTask[]): Promise<BatchDecoder> {
    return BatchDecoder.start(this.model, encoder, tasks, this.ids);
  }

  /** Language probabilities for encoder rows (one batched decoder step). */
  detectLanguageEncoded(encoder: EncoderOutput): Promise<LanguageProbs[]> {
    return detectLanguageRows(this.model, encoder, this.tokenizer.sot, this.tokenizer.languages);
  }

  /** Language detection on the first 30 s of each audio, batched. */
  async detectLanguage(batch: Float32Array[]): Promise<LanguageProbs[]> {
    if (!this.config.gen.isMultilingual) return batch.map(() => ({ language: 'en', probs: [['en', 1]] }));
    const tFeatures = performance.now(); // timing
    const features = batch.map((a) => this.features(a));
    this.timing.featuresMs += performance.now() - tFeatures; // timing
    const enc = await this.encode(features);
    const tDecode = performance.now(); // timing
    const probs = await this.detectLanguageEncoded(enc);
    this.timing.decodeMs += performance.now() - tDecode; // timing
    return probs;
  }

  private budget(promptLength: number, maxNewTokens?: number): number {
    const ctxLeft = this.config.maxTargetPositions - promptLength;
    return Math.max(1, Math.min(maxNewTokens ?? Math.floor(this.config.maxTargetPositions / 2), ctxLeft));
  }

  // ---- transcription ----

  /** Transcribe a batch of requests; windows of all requests are encoded and decoded together. */
  async transcribe(reqs: TranscribeRequest[]): Promise<TranscribeResult[]> {
    const fc = this.config.features;
    const tFeatures = performance.now(); // timing
    const states: StreamState[] = reqs.map((r) => {
      const o = r.options ?? {};
      const opts = {
        ...o,
        task: o.task ?? 'transcribe',
        timestamps: o.timestamps ?? true,
        wordTimestamps: o.wordTimestamps ?? false,
        beamSize: o.beamSize ?? 1,
        conditionOnPrevious: o.conditionOnPrevious ?? true,
      };
      let mel: LogMel;
      let contentFrames: number;
      const trimmed = o.encoder === 'trimmed' && this.model.trimmable;
      if (r.audio.length <= fc.nSamples) {
        // ≤ 30 s: exactly HF's short-form input (pad to 30 s, then log-mel); trimmed: its first frames only
        contentFrames = Math.min(fc.nFrames, Math.floor(r.audio.length / fc.hopLength));
        if (r.audio.length > 0) contentFrames = Math.max(1, contentFrames);
        const frames = trimmed ? this.encoderFrames(r.audio.length, 'trimmed') : fc.nFrames;
        mel = { data: extractFeatures(r.audio, fc, frames), nMels: fc.nMels, nFrames: frames };
      } else {
        const lm = longFormMel(r.audio, fc);
        mel = lm;
        contentFrames = lm.contentFrames;
      }
      const lang = o.language && o.language !== 'auto' ? o.language.toLowerCase() : this.config.gen.isMultilingual ? null : 'en';
      if (lang && this.config.gen.isMultilingual) this.tokenizer.languageToken(lang); // validate early
      const initial = o.initialPrompt ? this.tokenizer.encodeText(o.initialPrompt) : [];
      return {
        audio: r.audio,
        opts,
        mel,
        contentFrames,
        seek: 0,
        language: lang,
        allTokens: [...initial],
        promptResetSince: 0,
        initialPromptLength: initial.length,
        segments: [],
        lastSpeechTimestamp: 0,
        tokensPerWindow: [],
        trimmed,
        prefixTokens: o.prefix?.trim() ? this.tokenizer.encodeText(` ${o.prefix.trim()}`) : [],
        onProgress: r.onProgress,
      };
    });
    this.timing.featuresMs += performance.now() - tFeatures; // timing

    for (;;) {
      const active = states.filter((s) => s.seek < s.contentFrames);
      if (!active.length) break;
      // one encoder shape per batch: full windows together, trimmed ones per bucket
      const byFrames = new Map<number, StreamState[]>();
      for (const s of active) {
        const frames = this.windowFrames(s);
        byFrames.set(frames, [...(byFrames.get(frames) ?? []), s]);
      }
      for (const [frames, group] of byFrames) await this.decodeWindows(group, frames);
    }

    return states.map((s) => ({
      text: s.segments
        .map((x) => x.text)
        .join('')
        .trim(),
      language: s.language ?? 'en',
      languageProbs: s.languageProbs,
      segments: s.segments,
      tokensPerWindow: s.tokensPerWindow,
      wordTimestamps: s.opts.wordTimestamps ? (s.wordMethod ?? (this.model.hasCrossAttentions ? 'cross-attention-dtw' : 'proportional')) : undefined,
      duration: s.audio.length / fc.samplingRate,
    }));
  }

  /** Encoder frames of a state's next window (3000, or its remaining audio rounded up to a bucket). */
  private windowFrames(s: StreamState): number {
    const { nFrames } = this.config.features;
    if (!s.trimmed) return nFrames;
    const frames = encoderBucketFrames(s.contentFrames - s.seek, nFrames);
    // A short-form mel holds only the first bucket: a later window past it needs the full 30 s mel.
    if (s.seek + frames > s.mel.nFrames && s.audio.length <= this.config.features.nSamples) {
      s.mel = { data: extractFeatures(s.audio, this.config.features), nMels: s.mel.nMels, nFrames };
    }
    return frames;
  }

  /** Encodes and decodes the next window of each state (all of `frames` frames), then advances them. */
  private async decodeWindows(active: StreamState[], frames: number): Promise<void> {
    const windows = active.map((s) => (s.mel.nFrames === frames && s.seek === 0 ? s.mel.data : sliceFrames(s.mel, s.seek, frames)));
    const enc = await this.encode(windows, frames);
    const tDecode = performance.now(); // timing

    const needLang = active.map((s, i) => (s.language === null ? i : -1)).filter((i) => i >= 0);
    if (needLang.length) {
      const probs = await this.detectLanguageEncoded(selectEncoderRows(enc, needLang));
      needLang.forEach((i, j) => {
        active[i].language = probs[j].language;
        active[i].languageProbs = probs[j].probs;
      });
    }

    // one fallback run per distinct decoding configuration
    const groups = new Map<string, number[]>();
    active.forEach((s, i) => {
      const k = JSON.stringify(this.fallbackOptions(s.opts));
      groups.set(k, [...(groups.get(k) ?? []), i]);
    });
    const results: FallbackResult[] = new Array(active.length);
    const tasks: DecodeTask[] = active.map((s) => {
      const prev = s.allTokens.slice(s.promptResetSince);
      const prefix = s.seek === 0 ? s.prefixTokens : [];
      return this.task({
        language: s.language!,
        task: s.opts.task,
        timestamps: s.opts.timestamps,
        previous: prev,
        prefix,
        maxNewTokens: s.opts.maxNewTokens,
        logprobs: s.opts.tokenLogprobs,
      });
    });
    active.forEach((s, i) => {
      if (s.onProgress) tasks[i].onToken = this.progressHook(s, s.onProgress, tasks[i].maxNewTokens);
    });
    for (const idx of groups.values()) {
      const fo = this.fallbackOptions(active[idx[0]].opts);
      const res = await decodeWithFallback(
        this.model,
        selectEncoderRows(enc, idx),
        idx.map((i) => tasks[i]),
        this.ids,
        (t) => this.tokenizer.decode(t),
        fo,
      );
      idx.forEach((i, j) => (results[i] = res[j]));
    }

    for (let i = 0; i < active.length; i++) {
      await this.consumeWindow(active[i], results[i], selectEncoderRows(enc, [i]));
    }
    this.timing.decodeMs += performance.now() - tDecode; // timing
  }

  /**
   * The per-step progress of a state's next window: the window's start plus the time of its last timestamp token (the
   * audio the text has reached), or the window's share of the token budget when that is further (no timestamps yet).
   */
  private progressHook(s: StreamState, report: NonNullable<StreamState['onProgress']>, maxTokens: number): NonNullable<DecodeTask['onToken']> {
    const fc = this.config.features;
    const frameSec = fc.hopLength / fc.samplingRate;
    const start = s.seek * frameSec;
    const length = Math.min(fc.nFrames, s.contentFrames - s.seek) * frameSec;
    const timestampBegin = this.tokenizer.timestampBegin;
    const window = s.tokensPerWindow.length;
    let stamped = 0;
    return (token, generated) => {
      if (token >= timestampBegin) stamped = (token - timestampBegin) * TIME_PRECISION;
      const at = Math.min(length, Math.max(stamped, (generated / maxTokens) * length));
      report({ window, tokens: generated, maxTokens, seconds: start + at });
    };
  }

  private fallbackOptions(o: StreamState['opts']): FallbackOptions {
    const t = o.temperature;
    return {
      temperatures: t === undefined ? DEFAULT_TEMPERATURES : Array.isArray(t) ? t : [t],
      beamSize: o.beamSize,
      patience: o.patience,
      lengthPenalty: o.lengthPenalty ?? null,
      compressionRatioThreshold: o.compressionRatioThreshold === undefined ? 2.4 : o.compressionRatioThreshold,
      logprobThreshold: o.logprobThreshold === undefined ? -1.0 : o.logprobThreshold,
      noSpeechThreshold: o.noSpeechThreshold === undefined ? 0.6 : o.noSpeechThreshold,
      seed: o.seed ?? 0,
    };
  }

  /** OpenAI transcribe() bookkeeping for one decoded window: skip, segments, seek. */
  private async consumeWindow(s: StreamState, r: FallbackResult, enc: EncoderOutput): Promise<void> {
    const fc = this.config.features;
    const tok = this.tokenizer;
    const frameSec = fc.hopLength / fc.samplingRate;
    const segmentSize = Math.min(fc.nFrames, s.contentFrames - s.seek);
    const timeOffset = s.seek * frameSec;
    const windowEnd = (s.seek + segmentSize) * frameSec;
    const inputStride = fc.nFrames / this.config.maxSourcePositions; // mel frames per encoder position (2)
    const tokens = r.tokens;
    s.tokensPerWindow.push(tokens);
    const fo = this.fallbackOptions(s.opts);

    let skip = false;
    if (fo.noSpeechThreshold !== null) {
      skip = r.noSpeechProb > fo.noSpeechThreshold;
      if (fo.logprobThreshold !== null && r.avgLogprob > fo.logprobThreshold) skip = false;
    }
    if (skip) {
      s.seek += segmentSize;
      return;
    }

    const previousSeek = s.seek;
    const { pieces, seekAdvance } = windowSegments(tokens, {
      timestamps: s.opts.timestamps,
      timestampBegin: tok.timestampBegin,
      timePrecision: TIME_PRECISION,
      segmentSize,
      frameSec,
      inputStride,
    });
    s.seek += seekAdvance;

    // OpenAI builds every piece, adds word timestamps over all of them (they can move segment times), and only
    // then clears segments that are instantaneous or without text.
    const candidates: TranscriptSegment[] = [];
    const segLogprobs: number[][] = [];
    for (const p of pieces) {
      const segTokens = tokens.slice(p.from, p.to);
      // timestamps are clamped to the audio of this window (random or confused models overshoot)
      const start = Math.min(Math.max(timeOffset + p.start, timeOffset), windowEnd);
      const end = Math.min(Math.max(timeOffset + p.end, start), windowEnd);
      candidates.push({
        id: 0,
        seek: previousSeek,
        start: round3(start),
        end: round3(end),
        text: tok.decode(segTokens),
        tokens: segTokens,
        avgLogprob: r.avgLogprob,
        noSpeechProb: r.noSpeechProb,
        compressionRatio: r.compressionRatio,
        temperature: r.temperature,
      });
      segLogprobs.push(r.tokenLogprobs.slice(p.from, p.to));
    }

    if (s.opts.wordTimestamps && candidates.length) {
      // OpenAI time_offset = seek * HOP_LENGTH / SAMPLE_RATE (not seek * 0.01: the doubles differ)
      const wordOffset = (previousSeek * fc.hopLength) / fc.samplingRate;
      s.wordMethod = await this.addWordTimestamps(s, candidates, segLogprobs, enc, segmentSize, wordOffset);
      const end = lastSpeechEnd(candidates);
      if (end !== undefined) s.lastSpeechTimestamp = end;
    }
    const newSegs = candidates.filter((x) => x.start !== x.end && x.text.trim() !== '');
    newSegs.forEach((x, k) => (x.id = s.segments.length + k));

    s.segments.push(...newSegs);
    s.allTokens.push(...newSegs.flatMap((x) => x.tokens));
    if (!s.opts.conditionOnPrevious || r.temperature > 0.5) s.promptResetSince = s.allTokens.length;
  }

  private async addWordTimestamps(s: StreamState, segs: TranscriptSegment[], segLogprobs: number[][], enc: EncoderOutput, numFrames: number, timeOffset: number): Promise<WordTimestampMethod> {
    const tok = this.tokenizer;
    const decode = (ids: number[]) => tok.decode(ids);
    const language = s.language ?? undefined;
    const textOf = (seg: TranscriptSegment, k: number) => {
      const toks: number[] = [];
      const lps: number[] = [];
      seg.tokens.forEach((t, j) => {
        if (t < tok.eot) {
          toks.push(t);
          lps.push(segLogprobs[k][j] ?? 0);
        }
      });
      return { toks, lps };
    };
    const parts = segs.map(textOf);
    if (this.model.hasCrossAttentions && this.config.gen.alignmentHeads.length) {
      // OpenAI add_word_timestamps: one teacher-forced pass over [sot…, notimestamps, text…, eot] with the text of
      // every segment of the window, words split over that text as a whole
      const text = parts.flatMap((p) => p.toks);
      let alignment: ReturnType<typeof alignWords> = [];
      if (text.length) {
        const prompt = this.buildPrompt({ language: s.language!, task: s.opts.task, timestamps: false }).prompt;
        const out = await this.model.prefill(enc, [[...prompt, ...text, tok.eot]]);
        if (!out.crossAttentions) throw new Error('decoder reported cross-attention outputs but returned none');
        const seq = out.seqLen;
        const frames = enc.frames;
        // OpenAI normalises over every row of [sot, lang, task, notimestamps, text…, eot], then aligns
        // rows from <|notimestamps|> (its attention places text token 0) to the last text token.
        const heads = this.config.gen.alignmentHeads.map(([layer, head]) => {
          const a = out.crossAttentions![layer];
          if (!a || a.length !== this.config.decoderHeads * seq * frames) throw new Error(`cross_attentions.${layer}: unexpected size ${a?.length}`);
          return a.subarray(head * seq * frames, (head + 1) * seq * frames);
        });
        const jumps = alignTokens(heads, seq, frames, numFrames, this.config.medianFilterWidth, prompt.length - 1, text.length + 1);
        // word probability: OpenAI's softmax over the text vocabulary (< EOT) of this pass, row k predicting text token k
        const probs = textTokenProbs(out.logits, out.vocab, prompt.length - 1, text, tok.eot);
        alignment = alignWords(splitWords(text, [], decode, language), jumps, probs);
      }
      const placed = addWordTimestamps(
        segs.map((seg, j) => ({ start: seg.start, end: seg.end, textTokens: parts[j].toks.length })),
        alignment,
        { timeOffset, lastSpeechTimestamp: s.lastSpeechTimestamp },
      );
      segs.forEach((seg, j) => {
        seg.start = placed[j].start;
        seg.end = placed[j].end;
        seg.words = placed[j].words;
      });
      return 'cross-attention-dtw';
    }
    segs.forEach((seg, j) => {
      const words = withoutEmpty(mergePunctuations(splitWords(parts[j].toks, parts[j].lps, decode, language)));
      seg.words = proportionalWordTimes(words, seg.start, seg.end);
    });
    return 'proportional';
  }
}

/** Softmax over logits[row, 0..eot) for rows first…first+n-1, probability of text[k] at row first+k (float32 like torch). */
function textTokenProbs(logits: Float32Array, vocab: number, first: number, text: number[], eot: number): number[] {
  return text.map((t, k) => {
    const base = (first + k) * vocab;
    let max = -Infinity;
    for (let v = 0; v < eot; v++) max = Math.max(max, logits[base + v]);
    let z = 0;
    for (let v = 0; v < eot; v++) z += Math.exp(logits[base + v] - max);
    return Math.fround(Math.exp(logits[base + t] - max) / z);
  });
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
