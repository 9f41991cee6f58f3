#!/usr/bin/env python3
"""Independent reference for Whisper word timing: OpenAI whisper/timing.py `find_alignment` maths in numpy.

Used by word-timestamps-dtw.test.ts. Ported from openai/whisper `whisper/timing.py` (median_filter,
dtw_cpu + backtrace, find_alignment from the attention weights on): same float32 cost matrix in the DTW,
same tie rule, same reflect padding, same row/column choices. Not ported: the model run (the test feeds the
cross-attention probabilities of the ONNX decoder) and the tokenizer's word split (the test passes the word
token counts); everything after the attention is here.

Usage: reference_timing.py CASES.json  ->  JSON on stdout, one result per case.

A case: {"attn": "file.f32",               # float32 [n_heads, n_rows, n_frames]: softmax probabilities of the
                                            #   alignment heads over the sequence [*sot_sequence, no_timestamps,
                                            #   *text_tokens, eot] (rows) and all encoder positions (frames)
         "n_heads": H, "n_rows": R, "n_frames": F,
         "num_frames": N,                   # mel frames of real audio in the window (OpenAI `num_frames`)
         "sot_len": S,                      # len(tokenizer.sot_sequence), e.g. 3 for [sot, lang, task]
         "medfilt_width": W,                # OpenAI default 7 (HF config median_filter_width)
         "word_token_counts": [n1, n2, ...],  # tokens per word, text tokens only (sum = R - S - 2)
         "time_offset": T}                  # seconds added to word times (window start)
A result: {"text_indices", "time_indices", "jump_times", "words": [{"start", "end"}]}.
"""
import json
import sys

import numpy as np

TOKENS_PER_SECOND = 50  # OpenAI audio.TOKENS_PER_SECOND: 1500 encoder positions per 30 s


def median_filter(x: np.ndarray, filter_width: int) -> np.ndarray:
    """timing.median_filter: median along the last axis, torch F.pad(mode="reflect") padding."""
    pad_width = filter_width // 2
    if x.shape[-1] <= pad_width:
        return x
    assert filter_width > 0 and filter_width % 2 == 1, "`filter_width` should be an odd number"
    pad = [(0, 0)] * (x.ndim - 1) + [(pad_width, pad_width)]
    xp = np.pad(x, pad, mode="reflect")  # numpy "reflect" = torch "reflect" (edge not repeated)
    windows = np.lib.stride_tricks.sliding_window_view(xp, filter_width, axis=-1)
    return np.sort(windows, axis=-1)[..., filter_width // 2]


def backtrace(trace: np.ndarray):
    """timing.backtrace (trace is modified in place, as there)."""
    i = trace.shape[0] - 1
    j = trace.shape[1] - 1
    trace[0, :] = 2
    trace[:, 0] = 1
    result = []
    while i > 0 or j > 0:
        result.append((i - 1, j - 1))
        if trace[i, j] == 0:
            i -= 1
            j -= 1
        elif trace[i, j] == 1:
            i -= 1
        elif trace[i, j] == 2:
            j -= 1
        else:
            raise ValueError("Unexpected trace[i, j]")
    result = np.array(result)
    return result[::-1, :].T


def dtw_cpu(x: np.ndarray):
    """timing.dtw_cpu: float32 cost table, x in float64, ties go to the horizontal move (t = 2)."""
    N, M = x.shape
    cost = np.ones((N + 1, M + 1), dtype=np.float32) * np.inf
    trace = -np.ones((N + 1, M + 1), dtype=np.float32)
    cost[0, 0] = 0
    # plain Python floats for speed; each stored value is rounded to float32 exactly as numba stores it
    c_rows = [[float(v) for v in row] for row in cost]
    xl = x.tolist()
    f32 = np.float32
    for j in range(1, M + 1):
        for i in range(1, N + 1):
            c0 = c_rows[i - 1][j - 1]
            c1 = c_rows[i - 1][j]
            c2 = c_rows[i][j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            c_rows[i][j] = float(f32(xl[i - 1][j - 1] + c))
            trace[i, j] = t
    return backtrace(trace)


def find_alignment_from_attention(probs: np.ndarray, num_frames: int, sot_len: int, medfilt_width: int, qk_scale: float = 1.0):
    """find_alignment from `weights = torch.stack(QKs...)` to the DTW and jump times.

    OpenAI hooks the pre-softmax QK products; the ONNX graph gives softmax probabilities over all 1500 positions.
    log(probs) equals QK up to a per-row constant, which softmax ignores, so softmax(log(probs)[..., :n]) is
    exactly OpenAI's softmax(QK[..., :n]) (with qk_scale 1, its default)."""
    with np.errstate(divide="ignore"):
        qk = np.log(probs.astype(np.float32))
    weights = qk[:, :, : num_frames // 2]
    weights = weights * np.float32(qk_scale)
    weights = weights - weights.max(axis=-1, keepdims=True)
    weights = np.exp(weights)
    weights = (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True, ddof=0)  # torch.std_mean(unbiased=False)
    weights = ((weights - mean) / std).astype(np.float32)
    standardised = weights
    weights = median_filter(weights, medfilt_width)

    matrix = weights.mean(axis=0).astype(np.float32)
    matrix = matrix[sot_len:-1]
    text_indices, time_indices = dtw_cpu((-matrix).astype(np.float64))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / TOKENS_PER_SECOND
    return text_indices, time_indices, jump_times, standardised, weights


def self_check_median(weights_before: np.ndarray, filtered: np.ndarray, width: int) -> None:
    """If scipy is present: its 'mirror' mode is torch's reflect padding; the two medians must agree."""
    try:
        from scipy.ndimage import median_filter as nd_median
    except ImportError:
        return
    if weights_before.shape[-1] <= width // 2:
        return
    ref = nd_median(weights_before, size=(1, 1, width), mode="mirror")
    if not np.array_equal(ref, filtered):
        raise AssertionError("numpy median filter disagrees with scipy.ndimage (mode=mirror)")


def run_case(case: dict) -> dict:
    h, r, f = case["n_heads"], case["n_rows"], case["n_frames"]
    probs = np.fromfile(case["attn"], dtype="<f4").reshape(h, r, f)
    width = int(case.get("medfilt_width", 7))
    text_indices, time_indices, jump_times, standardised, filtered = find_alignment_from_attention(
        probs, int(case["num_frames"]), int(case["sot_len"]), width
    )
    self_check_median(standardised, filtered, width)

    # find_alignment: word_boundaries over the text words (the trailing EOT "word" is not a boundary source)
    counts = case["word_token_counts"]
    word_boundaries = np.pad(np.cumsum(counts), (1, 0)).astype(int)
    start_times = jump_times[word_boundaries[:-1]]
    end_times = jump_times[word_boundaries[1:]]
    off = float(case.get("time_offset", 0.0))
    # add_word_timestamps: round(time_offset + t, 2)
    words = [{"start": round(off + float(s), 2), "end": round(off + float(e), 2)} for s, e in zip(start_times, end_times)]
    return {
        "text_indices": text_indices.tolist(),
        "time_indices": time_indices.tolist(),
        "jump_times": jump_times.tolist(),
        "words": words,
    }


def main() -> None:
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    json.dump([run_case(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
