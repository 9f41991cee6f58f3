/**
 * ffmpeg / ffprobe wrappers: probe a media file and decode its first audio stream to
 * 16 kHz mono float32 PCM (or another rate: `decodeToPcm` with `sampleRate`, e.g. 48 kHz for
 * enhancement). The one place that runs ffmpeg on media files.
 *
 * Design rules:
 * - ffmpeg always reads the FILE PATH (never stdin): MP4/M4A files whose `moov` index sits at
 *   the end of the file cannot be demuxed from a pipe (ffmpeg then exits 0 with no output).
 * - Every failure is an {@link AudioDecodeError}: a DomainError whose kind says whose problem it is
 *   ('invalid' = the client's file, 'internal' = the server is misconfigured, 'cancelled' = aborted
 *   by the caller), with a `code` and a message that says what is wrong and what to do about it.
 * - An empty decode (0 samples) is an error, never a silent empty transcript.
 * - AbortSignal kills the child process (SIGKILL) and the promise settles only once the child
 *   has exited, so no orphan ffmpeg processes are left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, readFile, stat } from 'node:fs/promises';
import { DomainError, type ErrorKind } from '../errors.ts';
import { readWav } from './pcm.ts';

export const TARGET_SAMPLE_RATE = 16000;

export type AudioDecodeErrorCode =
  | 'file_not_found'
  | 'empty_file'
  | 'no_audio_stream'
  | 'corrupt_or_unsupported'
  | 'unsupported_codec'
  | 'empty_output'
  | 'decode_failed'
  | 'ffmpeg_missing'
  | 'aborted';

export class AudioDecodeError extends DomainError {
  override readonly name = 'AudioDecodeError';
  readonly code: AudioDecodeErrorCode;
  /** Tail of ffmpeg's stderr, for logs (never shown to API clients verbatim by default). */
  readonly detail?: string;

  /** `kind` defaults by code: 'invalid' (bad input), 'internal' (ffmpeg missing), 'cancelled' (aborted). */
  constructor(code: AudioDecodeErrorCode, message: string, opts: { kind?: ErrorKind; detail?: string; cause?: unknown } = {}) {
    super(opts.kind ?? defaultKind(code), message, { cause: opts.cause });
    this.code = code;
    if (opts.detail !== undefined) this.detail = opts.detail;
  }
}

function defaultKind(code: AudioDecodeErrorCode): ErrorKind {
  if (code === 'ffmpeg_missing') return 'internal';
  if (code === 'aborted') return 'cancelled';
  return 'invalid';
}

export interface AudioStreamInfo {
  /** Stream index inside the container. */
  index: number;
  /** Short codec name, e.g. 'aac', 'mp3', 'opus', 'pcm_s16le', 'wmav2'. */
  codec: string;
  codecLongName?: string;
  sampleRate?: number;
  channels?: number;
  channelLayout?: string;
  durationS?: number;
  bitRate?: number;
}

export interface ProbeInfo {
  /** ffprobe's demuxer name(s), e.g. 'mov,mp4,m4a,3gp,3g2,mj2', 'wav', 'matroska,webm'. */
  formatName: string;
  formatLongName?: string;
  /** Container duration in seconds, when known. */
  durationS?: number;
  sizeBytes?: number;
  bitRate?: number;
  audioStreams: AudioStreamInfo[];
  /** Number of video streams (cover art included). */
  videoStreams: number;
  hasAudio: boolean;
}

export interface FfmpegCommonOptions {
  signal?: AbortSignal;
  /** Binary to run; defaults to $FFMPEG_PATH or 'ffmpeg'. */
  ffmpegPath?: string;
  /** Binary to run; defaults to $FFPROBE_PATH or 'ffprobe'. */
  ffprobePath?: string;
  /** Observe the spawned child (tests use it to check that aborts really kill ffmpeg). */
  onProcess?: (child: ChildProcess) => void;
}

export interface DecodeOptions extends FfmpegCommonOptions {
  /** Start offset in seconds (ffmpeg -ss before -i: fast seek). */
  startS?: number;
  /** Decode at most this many seconds (ffmpeg -t). */
  maxDurationS?: number;
}

export interface PcmDecodeOptions extends DecodeOptions {
  /** Output sample rate in Hz (default 16 000, what the speech models take). */
  sampleRate?: number;
  /**
   * Read a WAV that is already mono 16-bit PCM or 32-bit float at `sampleRate` in-process instead of
   * starting ffmpeg (default true): the same samples, without ffmpeg's start-up (~0.15 s).
   */
  readPlainWav?: boolean;
}

export interface DecodeStreamOptions extends DecodeOptions {
  /** Samples per yielded chunk (the last one may be shorter). Default 32768 = 64 VAD frames ≈ 2.05 s. */
  chunkSamples?: number;
}

const ffmpegBin = (o: FfmpegCommonOptions) => o.ffmpegPath ?? process.env.FFMPEG_PATH ?? 'ffmpeg';
const ffprobeBin = (o: FfmpegCommonOptions) => o.ffprobePath ?? process.env.FFPROBE_PATH ?? 'ffprobe';

const STDERR_LIMIT = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Error classification
// ---------------------------------------------------------------------------------------------

function missingBinaryError(bin: string, cause: unknown): AudioDecodeError {
  const tool = bin.includes('ffprobe') ? 'ffprobe' : 'ffmpeg';
  return new AudioDecodeError(
    'ffmpeg_missing',
    `${tool} is not installed on the server (could not run "${bin}"). ` +
      'Install ffmpeg (it ships ffprobe), e.g. `apt-get install ffmpeg` or `brew install ffmpeg`, ' +
      'or point FFMPEG_PATH / FFPROBE_PATH at the binaries.',
    { cause },
  );
}

function abortedError(signal: AbortSignal): AudioDecodeError {
  return new AudioDecodeError('aborted', 'Audio decoding was aborted (request cancelled).', { cause: signal.reason });
}

/**
 * Map ffmpeg/ffprobe stderr + exit code to a typed error with an actionable message.
 * Exported for the streaming ingest path and for tests.
 */
export function classifyFfmpegFailure(stderr: string, exitCode: number | null, fileLabel = 'The file'): AudioDecodeError {
  const s = stderr;
  const detail = s.trim().slice(-2000);
  if (/matches no streams|does not contain any stream|Output file #0 does not contain/i.test(s)) {
    return new AudioDecodeError(
      'no_audio_stream',
      `${fileLabel} has no audio stream (e.g. a video without sound), so there is nothing to transcribe. ` + 'Upload a file that contains an audio track.',
      { detail },
    );
  }
  if (/No such file or directory/i.test(s)) {
    return new AudioDecodeError('file_not_found', `${fileLabel} could not be found on the server. Upload it again.`, { detail });
  }
  if (/Decoder \(codec [^)]*\) not found|Unknown decoder|unsupported codec|Codec .* is not supported|Could not find codec parameters/i.test(s)) {
    return new AudioDecodeError(
      'unsupported_codec',
      `${fileLabel} uses an audio codec this server cannot decode. ` + 'Convert it to a common format (WAV, FLAC, MP3, M4A/AAC, OGG/Opus) and try again.',
      { detail },
    );
  }
  if (
    /Invalid data found when processing input|moov atom not found|Invalid argument|could not find sync|Failed to read frame size|EBML header parsing failed|Header missing|invalid (frame|header)|Error while decoding|End of file/i.test(
      s,
    )
  ) {
    return new AudioDecodeError(
      'corrupt_or_unsupported',
      `${fileLabel} could not be read as audio: it is corrupt, truncated, or not a supported media format. ` +
        'Check that the upload completed and that the file plays locally, or convert it to WAV/MP3/FLAC and retry.',
      { detail },
    );
  }
  const lastLine = detail.split('\n').filter(Boolean).pop() ?? '';
  return new AudioDecodeError(
    'decode_failed',
    `${fileLabel} could not be decoded (ffmpeg exit code ${exitCode ?? 'unknown'}${lastLine ? `: ${lastLine}` : ''}). ` + 'Convert it to WAV/MP3/FLAC and retry.',
    { detail },
  );
}

async function checkInputFile(path: string): Promise<{ isFile: boolean }> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new AudioDecodeError('file_not_found', 'The audio file could not be found on the server. Upload it again.', { cause: err });
    }
    throw new AudioDecodeError('decode_failed', `The audio file could not be opened: ${(err as Error).message}`, { cause: err, kind: 'internal' });
  }
  if (st.isDirectory()) {
    throw new AudioDecodeError('corrupt_or_unsupported', 'Expected an audio file but got a directory.', { kind: 'internal' });
  }
  if (st.isFile() && st.size === 0) {
    throw new AudioDecodeError('empty_file', 'The uploaded file is empty (0 bytes). Check the upload and send the audio file again.');
  }
  return { isFile: st.isFile() };
}

// ---------------------------------------------------------------------------------------------
// Process runner
// ---------------------------------------------------------------------------------------------

interface RunHandle {
  child: ChildProcess;
  /** Resolves with exit code (or null when killed) once the child has exited and stdio closed. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

function startProcess(bin: string, args: string[], o: FfmpegCommonOptions): RunHandle {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr += d;
    if (stderr.length > STDERR_LIMIT * 2) stderr = stderr.slice(-STDERR_LIMIT);
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'EACCES') reject(missingBinaryError(bin, err));
      else reject(new AudioDecodeError('decode_failed', `Could not start ${bin}: ${err.message}`, { kind: 'internal', cause: err }));
    });
    child.once('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  // Avoid unhandled rejections if the caller never awaits `done` (it always does, but be safe).
  done.catch(() => {});
  o.onProcess?.(child);
  return { child, done };
}

/** Wire an AbortSignal to SIGKILL the child. Returns a disposer. */
function killOnAbort(child: ChildProcess, signal: AbortSignal | undefined): () => void {
  if (!signal) return () => {};
  const onAbort = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

// ---------------------------------------------------------------------------------------------
// Probe
// ---------------------------------------------------------------------------------------------

const num = (v: unknown): number | undefined => {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
};

/** Parse ffprobe `-print_format json -show_format -show_streams` output. Exported for tests. */
export function parseProbeJson(json: unknown): ProbeInfo {
  const j = (json ?? {}) as { format?: Record<string, unknown>; streams?: Record<string, unknown>[] };
  const format = j.format ?? {};
  const streams = Array.isArray(j.streams) ? j.streams : [];
  const audioStreams: AudioStreamInfo[] = streams
    .filter((s) => s.codec_type === 'audio')
    .map((s) => {
      const a: AudioStreamInfo = { index: num(s.index) ?? 0, codec: String(s.codec_name ?? 'unknown') };
      if (s.codec_long_name) a.codecLongName = String(s.codec_long_name);
      const sr = num(s.sample_rate);
      if (sr !== undefined) a.sampleRate = sr;
      const ch = num(s.channels);
      if (ch !== undefined) a.channels = ch;
      if (s.channel_layout) a.channelLayout = String(s.channel_layout);
      const d = num(s.duration);
      if (d !== undefined) a.durationS = d;
      const br = num(s.bit_rate);
      if (br !== undefined) a.bitRate = br;
      return a;
    });
  const info: ProbeInfo = {
    formatName: String(format.format_name ?? 'unknown'),
    audioStreams,
    videoStreams: streams.filter((s) => s.codec_type === 'video').length,
    hasAudio: audioStreams.length > 0,
  };
  if (format.format_long_name) info.formatLongName = String(format.format_long_name);
  const d = num(format.duration) ?? audioStreams.find((a) => a.durationS !== undefined)?.durationS;
  if (d !== undefined) info.durationS = d;
  const size = num(format.size);
  if (size !== undefined) info.sizeBytes = size;
  const br = num(format.bit_rate);
  if (br !== undefined) info.bitRate = br;
  return info;
}

/**
 * Probe a media file with ffprobe. Does NOT throw when the file has no audio stream
 * (check `hasAudio`); throws AudioDecodeError for unreadable files or a missing ffprobe.
 */
export async function probeAudio(path: string, opts: FfmpegCommonOptions = {}): Promise<ProbeInfo> {
  if (opts.signal?.aborted) throw abortedError(opts.signal);
  await checkInputFile(path);
  const args = ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', '-i', safeInput(path)];
  const { child, done } = startProcess(ffprobeBin(opts), args, opts);
  const disposeAbort = killOnAbort(child, opts.signal);
  const chunks: Buffer[] = [];
  child.stdout!.on('data', (c: Buffer) => chunks.push(c));
  try {
    const { code, stderr } = await done;
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    if (code !== 0) throw classifyFfmpegFailure(stderr, code);
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      throw new AudioDecodeError('decode_failed', 'ffprobe returned unreadable output.', { kind: 'internal', cause: err });
    }
    return parseProbeJson(parsed);
  } finally {
    disposeAbort();
  }
}

/**
 * Duration of the first audio stream found by reading its packets without decoding them
 * (`ffmpeg -map 0:a:0 -c copy -f null`, last `out_time_us` of `-progress`): about 0.4 s of CPU per
 * hour of Opus, against ~6 s per hour to decode it. For containers that declare no duration (live
 * WebM/Matroska, some raw streams). Returns undefined when no packet carries a time.
 */
export async function scanAudioDuration(path: string, opts: FfmpegCommonOptions = {}): Promise<number | undefined> {
  if (opts.signal?.aborted) throw abortedError(opts.signal);
  await checkInputFile(path);
  const args = ['-nostdin', '-hide_banner', '-v', 'error', '-i', safeInput(path), '-map', '0:a:0', '-c', 'copy', '-f', 'null', '-progress', 'pipe:1', '-'];
  const { child, done } = startProcess(ffmpegBin(opts), args, opts);
  const disposeAbort = killOnAbort(child, opts.signal);
  let last: number | undefined;
  let tail = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    tail += d;
    const lines = tail.split('\n');
    tail = lines.pop() ?? '';
    for (const l of lines) {
      const m = /^out_time_us=(\d+)/.exec(l);
      if (m) last = Number(m[1]) / 1e6;
    }
  });
  try {
    const { code, stderr } = await done;
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    if (code !== 0) throw classifyFfmpegFailure(stderr, code);
    return last !== undefined && last > 0 ? last : undefined;
  } finally {
    disposeAbort();
  }
}

/**
 * The audio duration to meter before decoding: the container's (format, else stream) duration,
 * else a packet scan ({@link scanAudioDuration}). A container may still lie (a chained Ogg
 * declares only its last link's length): callers meter what is really decoded as it goes.
 */
export async function audioDurationS(path: string, probe: ProbeInfo, opts: FfmpegCommonOptions = {}): Promise<number> {
  if (probe.durationS !== undefined && probe.durationS > 0) return probe.durationS;
  return (await scanAudioDuration(path, opts)) ?? 0;
}

// ---------------------------------------------------------------------------------------------
// Decode
// ---------------------------------------------------------------------------------------------

/** `file:` protocol prefix so a relative path like "a:b.wav" or "-x.wav" is never read as a protocol/option. */
function safeInput(path: string): string {
  return path.startsWith('/') ? path : `file:${path}`;
}

function decodeArgs(path: string, o: PcmDecodeOptions): string[] {
  const args = ['-nostdin', '-hide_banner', '-v', 'error'];
  if (o.startS !== undefined && o.startS > 0) args.push('-ss', String(o.startS));
  args.push('-i', safeInput(path));
  if (o.maxDurationS !== undefined && o.maxDurationS > 0) args.push('-t', String(o.maxDurationS));
  args.push(
    '-map',
    '0:a:0', // first audio stream only; fails with "matches no streams" when there is none
    '-vn',
    '-sn',
    '-dn',
    '-ac',
    '1',
    '-ar',
    String(o.sampleRate ?? TARGET_SAMPLE_RATE),
    '-c:a',
    'pcm_f32le',
    '-f',
    'f32le',
    'pipe:1',
  );
  return args;
}

/**
 * Decode the first audio stream of a media file to 16 kHz mono float32 samples.
 * Throws AudioDecodeError (see module docs); never returns an empty array.
 */
export function decodeToPcm16k(path: string, opts: Omit<PcmDecodeOptions, 'sampleRate'> = {}): Promise<Float32Array> {
  return decodeToPcm(path, { ...opts, sampleRate: TARGET_SAMPLE_RATE });
}

/**
 * Decode the first audio stream of a media file to mono float32 samples at `sampleRate` (default
 * 16 kHz). Throws AudioDecodeError (see module docs); never returns an empty array.
 */
export async function decodeToPcm(path: string, opts: PcmDecodeOptions = {}): Promise<Float32Array> {
  if (opts.sampleRate !== undefined && !(Number.isInteger(opts.sampleRate) && opts.sampleRate > 0)) {
    throw new RangeError(`sampleRate must be a positive integer, got ${opts.sampleRate}`);
  }
  if (opts.signal?.aborted) throw abortedError(opts.signal);
  const input = await checkInputFile(path);
  if (opts.signal?.aborted) throw abortedError(opts.signal);
  // Only a regular file: a FIFO or a device is ffmpeg's to read (and to be killed on abort while it waits).
  if (input.isFile && opts.readPlainWav !== false && opts.startS === undefined && opts.maxDurationS === undefined) {
    const plain = await readPlainWav(path, opts.sampleRate ?? TARGET_SAMPLE_RATE);
    if (plain) return plain;
  }
  const { child, done } = startProcess(ffmpegBin(opts), decodeArgs(path, opts), opts);
  const disposeAbort = killOnAbort(child, opts.signal);
  const chunks: Buffer[] = [];
  let bytes = 0;
  child.stdout!.on('data', (c: Buffer) => {
    chunks.push(c);
    bytes += c.length;
  });
  try {
    const { code, stderr } = await done;
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    if (code !== 0) throw classifyFfmpegFailure(stderr, code);
    const n = Math.floor(bytes / 4);
    if (n === 0) throw emptyOutputError(stderr);
    const out = new Float32Array(n);
    const u8 = new Uint8Array(out.buffer);
    let off = 0;
    for (const c of chunks) {
      const take = Math.min(c.length, n * 4 - off);
      if (take <= 0) break;
      u8.set(take === c.length ? c : c.subarray(0, take), off);
      off += take;
    }
    return out;
  } finally {
    disposeAbort();
  }
}

/** Larger WAVs go through ffmpeg, which streams them instead of holding the file and its samples at once. */
const PLAIN_WAV_MAX_BYTES = 256 * 1024 * 1024;

/**
 * The samples of a WAV file that needs no conversion (mono, 16-bit PCM or 32-bit float, already at
 * `sampleRate`), as ffmpeg would decode them (s16 → float is x / 32768 there too); null for anything
 * else, which then goes through ffmpeg (its errors included).
 */
async function readPlainWav(path: string, sampleRate: number): Promise<Float32Array | null> {
  const fh = await open(path, 'r');
  try {
    const head = new Uint8Array(12);
    const { bytesRead } = await fh.read(head, 0, 12, 0);
    const tag = (off: number) => String.fromCharCode(...head.subarray(off, off + 4));
    if (bytesRead < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') return null;
    if ((await fh.stat()).size > PLAIN_WAV_MAX_BYTES) return null;
  } finally {
    await fh.close();
  }
  let wav: ReturnType<typeof readWav>;
  try {
    wav = readWav(await readFile(path));
  } catch {
    return null; // a codec or a header readWav does not take: ffmpeg decides
  }
  const plain = (wav.encoding === 'pcm' && wav.bitsPerSample === 16) || (wav.encoding === 'float' && wav.bitsPerSample === 32);
  if (!plain || wav.channels !== 1 || wav.sampleRate !== sampleRate || wav.samples.length === 0) return null;
  return wav.samples;
}

function emptyOutputError(stderr: string): AudioDecodeError {
  return new AudioDecodeError(
    'empty_output',
    'The file decoded to zero audio samples: its audio track is empty or the file is truncated. ' + 'Check that the recording actually contains sound and that the upload completed.',
    { detail: stderr.trim().slice(-2000) },
  );
}

/**
 * Streaming variant of {@link decodeToPcm16k}: yields 16 kHz mono float32 chunks of
 * `chunkSamples` (last one shorter) with backpressure, so memory stays bounded for long files.
 * Breaking out of the loop (or aborting) kills ffmpeg. Errors are thrown from the iterator; an
 * error can surface after some chunks were already yielded (e.g. corruption mid-file).
 */
export async function* decodeStream(path: string, opts: DecodeStreamOptions = {}): AsyncGenerator<Float32Array, void, undefined> {
  const chunkSamples = opts.chunkSamples ?? 32768;
  if (!Number.isInteger(chunkSamples) || chunkSamples <= 0) throw new RangeError(`chunkSamples must be a positive integer, got ${chunkSamples}`);
  if (opts.signal?.aborted) throw abortedError(opts.signal);
  await checkInputFile(path);
  const { child, done } = startProcess(ffmpegBin(opts), decodeArgs(path, opts), opts);
  const disposeAbort = killOnAbort(child, opts.signal);
  // Surface spawn errors (ENOENT) even though we are iterating stdout.
  let spawnError: unknown = null;
  done.catch((e) => {
    spawnError = e;
  });
  const chunkBytes = chunkSamples * 4;
  let pending: Buffer = Buffer.alloc(0);
  let total = 0;
  let finished = false;
  try {
    for await (const data of child.stdout! as AsyncIterable<Buffer>) {
      pending = pending.length ? Buffer.concat([pending, data]) : data;
      while (pending.length >= chunkBytes) {
        const out = copyF32(pending, chunkSamples);
        pending = pending.subarray(chunkBytes);
        total += chunkSamples;
        yield out;
      }
    }
    const result = await done;
    if (opts.signal?.aborted) throw abortedError(opts.signal);
    if (result.code !== 0) throw classifyFfmpegFailure(result.stderr, result.code);
    const rest = Math.floor(pending.length / 4);
    if (rest > 0) {
      total += rest;
      yield copyF32(pending, rest);
    }
    if (total === 0) throw emptyOutputError(result.stderr);
    finished = true;
  } catch (err) {
    if (spawnError) throw spawnError;
    if (opts.signal?.aborted && !(err instanceof AudioDecodeError)) throw abortedError(opts.signal);
    throw err;
  } finally {
    disposeAbort();
    if (!finished && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await done.catch(() => {});
    }
  }
}

function copyF32(buf: Buffer, samples: number): Float32Array {
  const out = new Float32Array(samples);
  new Uint8Array(out.buffer).set(buf.subarray(0, samples * 4));
  return out;
}
