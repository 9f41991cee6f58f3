/** The parts of bench/vs-whispercpp.ts and bench/whispercpp/compare-tokens.ts that read whisper-cli's output (captured from a real run). */
import { describe, expect, it } from 'vitest';
import { debugTokens, leadingAgreement } from '../../bench/whispercpp/compare-tokens.ts';
import { deepMerge } from '../../bench/lib/ort-profile-tags.ts';
import { parseWhisperCppTimings } from '../../bench/vs-whispercpp.ts';

const TIMINGS = `output_json: saving output to '/tmp/wcpp/jfk.json'

whisper_print_timings:     load time =   106.79 ms
whisper_print_timings:     fallbacks =   0 p /   0 h
whisper_print_timings:      mel time =    28.94 ms
whisper_print_timings:   sample time =    60.60 ms /     1 runs (    60.60 ms per run)
whisper_print_timings:   encode time =    56.35 ms /     1 runs (    56.35 ms per run)
whisper_print_timings:   decode time =   162.12 ms /   219 runs (     0.74 ms per run)
whisper_print_timings:   batchd time =    27.54 ms /     4 runs (     6.88 ms per run)
whisper_print_timings:   prompt time =     0.00 ms /     1 runs (     0.00 ms per run)
whisper_print_timings:    total time =   482.42 ms
`;

const DEBUG_LOG = `whisper_full_with_state: id =   0, decoder = 0, token =  37421, p =  0.997, ts =        [?],  0.000, result_len =    0 ' dietary'
whisper_full_with_state: id =   1, decoder = 0, token =  11057, p =  0.894, ts =        [?],  0.000, result_len =    0 'x'
whisper_full_with_state: id =   2, decoder = 0, token =  30825, p =  0.896, ts =        [?],  0.000, result_len =    0 ' y'
whisper_full_with_state: id =   0, decoder = 0, token =    400, p =  0.5, ts =        [?],  0.000, result_len =    0 'next window'
`;

describe('reading whisper-cli output', () => {
  it('timings: ms and runs per phase', () => {
    const t = parseWhisperCppTimings(TIMINGS);
    expect(t.ms).toEqual({ load: 106.79, mel: 28.94, sample: 60.6, encode: 56.35, decode: 162.12, batchd: 27.54, prompt: 0, total: 482.42 });
    expect(t.runs).toEqual({ sample: 1, encode: 1, decode: 219, batchd: 4, prompt: 1 });
    expect(() => parseWhisperCppTimings('whisper_print_timings:     load time =   1.00 ms')).toThrow(/encode/);
  });

  it('debug log: the first window’s sampled tokens', () => {
    expect(debugTokens(DEBUG_LOG)).toEqual([37421, 11057, 30825]);
    expect(leadingAgreement([1, 2, 3, 4], [1, 2, 5, 4])).toBe(2);
    expect(leadingAgreement([1, 2], [1, 2, 3])).toBe(2);
  });

  it('BENCH_ORT_SESSION_OPTIONS merges into nested session options without dropping the engine’s own keys', () => {
    const engine = { intraOpNumThreads: 2, extra: { session: { disable_prepacking: '1' } } };
    const bench = { extra: { session: { intra_op: { allow_spinning: '0' } } } };
    expect(deepMerge(engine, bench)).toEqual({ intraOpNumThreads: 2, extra: { session: { disable_prepacking: '1', intra_op: { allow_spinning: '0' } } } });
    expect(deepMerge({ a: [1, 2] }, { a: [3] })).toEqual({ a: [3] }); // arrays are values
  });
});
