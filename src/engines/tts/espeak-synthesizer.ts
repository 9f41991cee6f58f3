/**
 * Text to speech with espeak-ng (the Debian package, like ffmpeg), matched to a reference voice:
 * the reference's median pitch picks a male or female voice variant and espeak's pitch setting
 * (calibrated by measuring espeak's own output once per voice, not assumed), and the result is
 * scaled to the reference's speech loudness.
 *
 * This is NOT voice cloning: the timbre is espeak's formant synthesis. The reference service clones
 * voices with F5-TTS; no F5-TTS weights (nor a random-weight fixture of its graphs) reach this
 * project yet, so /v1/tts answers with this engine and says so in `X-TTS-Engine`.
 */
import { spawn } from 'node:child_process';
import { DomainError } from '../../errors.ts';
import { StreamResampler } from '../../audio/resampler.ts';
import { readWav } from '../../audio/pcm.ts';
import { logF0Track } from '../diarization/baseline.ts';

export interface EspeakSynthesizerOptions {
  /** espeak-ng binary (default `espeak-ng` on PATH). */
  binary?: string;
  /** Words per minute (espeak's default is 175). */
  wordsPerMinute?: number;
}

export interface SynthesisOptions {
  /** espeak voice/language code, e.g. `en`, `de`, `fr` (default `en`). */
  language?: string;
  signal?: AbortSignal;
}

export interface SynthesisResult {
  samples: Float32Array;
  sampleRate: number;
  /** espeak voice used, e.g. `en+f3`. */
  voice: string;
  /** espeak pitch setting (0–99) chosen to match the reference. */
  pitch: number;
  /** Median pitch of the reference's voiced frames (Hz). */
  referenceF0Hz: number;
}

/** Below this median pitch a reference is given the male voice, above it the female one. */
export const FEMALE_F0_HZ = 165;
const FEMALE_VARIANT = 'f3';
// Several sentences, so that one sentence's intonation does not skew the median. Settings below 10
// are left out: espeak's lowest pitches can come out higher than 25 (measured: 107 Hz at 0, 88 at 25).
const CALIBRATION_TEXT = 'Hello there, this is a short test. Good morning everyone, welcome to the meeting. The quick brown fox jumps over the lazy dog.';
const CALIBRATION_PITCHES = [10, 30, 50, 70, 90, 99];

/** Median F0 (Hz) of the voiced frames of 16 kHz audio (80–500 Hz); null when fewer than 10 are voiced. */
export function medianF0Hz(samples16k: Float32Array): number | null {
  const frames = Math.floor(samples16k.length / 160);
  const track = logF0Track(samples16k, frames, 160, { octaveGuard: 0.9 });
  const voiced = Array.from(track)
    .filter((v) => !Number.isNaN(v))
    .sort((a, b) => a - b);
  if (voiced.length < 10) return null;
  return Math.exp(voiced[voiced.length >> 1]);
}

/** RMS of the speech frames (20 ms frames louder than a tenth of the loudest): loudness without pauses. */
export function speechRms(samples: Float32Array, sampleRate: number): number {
  const n = Math.max(1, Math.round(sampleRate * 0.02));
  const frames: number[] = [];
  for (let a = 0; a + n <= samples.length; a += n) {
    let s = 0;
    for (let i = a; i < a + n; i++) s += samples[i] * samples[i];
    frames.push(s / n);
  }
  if (!frames.length) return 0;
  const loudest = Math.max(...frames);
  const speech = frames.filter((e) => e > loudest * 0.01); // a tenth in amplitude
  return Math.sqrt(speech.reduce((a, b) => a + b, 0) / speech.length);
}

/**
 * espeak pitch setting whose measured F0 is closest to `targetHz`: linear interpolation over the
 * calibration points (setting → Hz), clamped to 0–99. Points that break the rise of F0 with the
 * setting (measurement glitches) are ignored.
 */
export function pitchSettingFor(targetHz: number, calibration: ReadonlyArray<readonly [number, number]>): number {
  const pts = risingPoints(calibration);
  if (targetHz <= pts[0][1]) return pts[0][0];
  if (targetHz >= pts[pts.length - 1][1]) return pts[pts.length - 1][0];
  for (let i = 1; i < pts.length; i++) {
    const [p0, h0] = pts[i - 1];
    const [p1, h1] = pts[i];
    if (targetHz <= h1) return Math.max(0, Math.min(99, Math.round(p0 + ((targetHz - h0) / (h1 - h0 || 1)) * (p1 - p0))));
  }
  return pts[pts.length - 1][0];
}

/** The longest run of calibration points (by setting) whose F0 rises: drops measurement glitches. */
function risingPoints(calibration: ReadonlyArray<readonly [number, number]>): Array<readonly [number, number]> {
  const pts = [...calibration].sort((a, b) => a[0] - b[0]);
  // Longest increasing subsequence by F0 (a handful of points: O(n²) is fine).
  const len = pts.map(() => 1);
  const prev = pts.map(() => -1);
  for (let i = 0; i < pts.length; i++) {
    for (let j = 0; j < i; j++) {
      if (pts[j][1] < pts[i][1] && len[j] + 1 > len[i]) {
        len[i] = len[j] + 1;
        prev[i] = j;
      }
    }
  }
  let end = len.indexOf(Math.max(...len));
  const out: Array<readonly [number, number]> = [];
  for (; end >= 0; end = prev[end]) out.unshift(pts[end]);
  return out;
}

/** Scales `samples` in place to `targetRms` over speech, never past a -1 dBFS peak. */
export function matchLoudness(samples: Float32Array, sampleRate: number, targetRms: number): Float32Array {
  const rms = speechRms(samples, sampleRate);
  if (rms <= 0 || targetRms <= 0) return samples;
  let peak = 0;
  for (const v of samples) peak = Math.max(peak, Math.abs(v));
  const gain = Math.min(targetRms / rms, peak > 0 ? 0.891 / peak : Infinity);
  for (let i = 0; i < samples.length; i++) samples[i] *= gain;
  return samples;
}

export class EspeakSynthesizer {
  /** voice → [(pitch setting, measured F0 Hz)] */
  private readonly calibrations = new Map<string, Promise<Array<[number, number]>>>();

  private constructor(
    private readonly binary: string,
    private readonly wpm: number,
    /** Language codes espeak has voices for. */
    readonly languages: ReadonlySet<string>,
    readonly version: string,
  ) {}

  /** Checks that espeak-ng runs and lists its languages; throws 'unavailable' with the fix when it does not. */
  static async load(opts: EspeakSynthesizerOptions = {}): Promise<EspeakSynthesizer> {
    const binary = opts.binary ?? 'espeak-ng';
    let version: string;
    let voices: string;
    try {
      version = (await run(binary, ['--version'])).stdout.toString('utf8').trim();
      voices = (await run(binary, ['--voices'])).stdout.toString('utf8');
    } catch (err) {
      throw new DomainError('unavailable', `Text to speech is unavailable: ${binary} could not be run (${(err as Error).message}). Install it (Debian/Ubuntu: apt install espeak-ng).`, {
        expected: false,
        cause: err,
      });
    }
    const languages = new Set<string>();
    for (const line of voices.split('\n').slice(1)) {
      const lang = line.trim().split(/\s+/)[1];
      if (lang) {
        languages.add(lang.toLowerCase());
        languages.add(lang.toLowerCase().split('-')[0]);
      }
    }
    return new EspeakSynthesizer(binary, opts.wordsPerMinute ?? 165, languages, version);
  }

  /** Speech for `text` in a voice matched to `reference` (16 kHz mono). */
  async synthesize(text: string, reference16k: Float32Array, opts: SynthesisOptions = {}): Promise<SynthesisResult> {
    const language = (opts.language ?? 'en').toLowerCase();
    if (!this.languages.has(language)) {
      throw new DomainError('invalid', `language: espeak-ng has no voice for '${language}'; use an ISO 639-1 code such as en, de, fr, es.`);
    }
    const referenceF0Hz = medianF0Hz(reference16k);
    if (referenceF0Hz === null) {
      throw new DomainError('invalid', 'reference has no voiced speech (no pitch found): send 3–10 s of one person speaking, without music or long silence.');
    }
    const female = referenceF0Hz >= FEMALE_F0_HZ;
    const voice = female ? `${language}+${FEMALE_VARIANT}` : language;
    const calibration = await this.calibrate(voice, opts.signal);
    const pitch = pitchSettingFor(referenceF0Hz, calibration);
    const wav = await this.speak(text, voice, pitch, opts.signal);
    const samples = matchLoudness(wav.samples, wav.sampleRate, speechRms(reference16k, 16_000));
    return { samples, sampleRate: wav.sampleRate, voice, pitch, referenceF0Hz };
  }

  async close(): Promise<void> {
    // Nothing held: espeak-ng runs per request, and resamplers are made per measurement.
  }

  /** Measures espeak's F0 at a few pitch settings, once per voice. */
  private calibrate(voice: string, signal?: AbortSignal): Promise<Array<[number, number]>> {
    let p = this.calibrations.get(voice);
    if (!p) {
      p = (async () => {
        const points: Array<[number, number]> = [];
        for (const pitch of CALIBRATION_PITCHES) {
          const wav = await this.speak(CALIBRATION_TEXT, voice, pitch, signal);
          const hz = await this.f0Of(wav.samples, wav.sampleRate);
          if (hz !== null) points.push([pitch, hz]);
        }
        if (points.length < 2) throw new Error(`could not measure the pitch of espeak-ng voice ${voice}`);
        return points;
      })();
      this.calibrations.set(voice, p);
      p.catch(() => this.calibrations.delete(voice));
    }
    return p;
  }

  private async f0Of(samples: Float32Array, sampleRate: number): Promise<number | null> {
    if (sampleRate === 16_000) return medianF0Hz(samples);
    // A fresh converter per call: libsamplerate keeps state between chunks of one stream.
    const r = await StreamResampler.create(sampleRate, 16_000);
    try {
      return medianF0Hz(r.process(samples));
    } finally {
      r.close();
    }
  }

  private async speak(text: string, voice: string, pitch: number, signal?: AbortSignal): Promise<{ samples: Float32Array; sampleRate: number }> {
    // Text on stdin (never argv: no option injection), UTF-8 (-b 1), WAV on stdout.
    const { stdout } = await run(this.binary, ['--stdout', '--stdin', '-b', '1', '-v', voice, '-p', String(pitch), '-s', String(this.wpm)], text, signal);
    const wav = readWav(stdout);
    return { samples: wav.samples, sampleRate: wav.sampleRate };
  }
}

function run(cmd: string, args: string[], stdin?: string, signal?: AbortSignal): Promise<{ stdout: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], signal });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout: Buffer.concat(out) });
      else reject(new Error(`${cmd} exited with ${code}: ${Buffer.concat(err).toString('utf8').trim().slice(0, 500)}`));
    });
    child.stdin.on('error', () => {}); // a failed start is reported by 'error'
    child.stdin.end(stdin ?? '');
  });
}
