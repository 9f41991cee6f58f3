#!/usr/bin/env python3
"""Independent reference for Whisper word timing: OpenAI whisper/timing.py in numpy, plus the parts of
whisper/transcribe.py and whisper/tokenizer.py that word timestamps depend on.

Used by word-timestamps-dtw.test.ts. Ported from openai/whisper (commit 05fd95f):
  * timing.py: median_filter, dtw_cpu + backtrace, find_alignment from the attention weights on (same float32
    cost matrix in the DTW, same tie rule, same reflect padding, same row/column choices), merge_punctuations,
    add_word_timestamps (median/max word duration, truncation at sentence boundaries, punctuation merging,
    words handed back to segments by token count, first-word truncation after a pause, segment start/end
    adjusted to the words);
  * tokenizer.py: split_to_word_tokens (split_tokens_on_unicode / split_tokens_on_spaces), with a byte-level
    decoder built from the model's tokenizer.json (tiktoken semantics: bytes joined, UTF-8 with replacement);
  * transcribe.py: the window's segments from consecutive timestamp pairs, last_speech_timestamp (get_end), and
    clearing segments that are instantaneous or without text after the word timestamps.
Not ported: the model run (the test feeds the cross-attention probabilities and logits of the ONNX decoder).
One server deviation is mirrored on purpose and marked SERVER: segment times are clamped to the window's audio
and rounded to milliseconds before word timestamps (docs/whisper-engine.md, Known gaps).

Usage: reference_timing.py CASES.json  ->  JSON on stdout, one result per case.
       reference_timing.py --post CASES.json: add_word_timestamps only, on hand-made alignments (see run_post).

A case is one audio: shared fields plus its windows, in order.
  {"n_heads": H, "n_frames": F,             # alignment heads; encoder positions per window (1500)
   "vocab": V,
   "sot_sequence": [sot, lang, task],
   "medfilt_width": W,                      # OpenAI default 7 (HF config median_filter_width)
   "tokenizer_json": "path",                # the model's tokenizer.json (byte-level BPE vocabulary)
   "language": "en",
   "eot": 50257, "no_timestamps": 50363, "timestamp_begin": 50364,
   "content_frames": C,                     # mel frames of the whole audio
   "windows": [{
     "seek": S,                             # mel frame of the window start, as the caller decoded it (checked)
     "window_tokens": [...],                # the window's generated tokens (timestamps included, EOT excluded)
     "attn": "file.f32",                    # float32 [n_heads, n_rows, n_frames]: softmax probabilities of the
                                            #   alignment heads over [*sot_sequence, no_timestamps, *text_tokens,
                                            #   eot] (rows) and all encoder positions (frames)
     "logits": "file.f32",                  # float32 [n_rows, vocab]: logits of the same teacher-forced pass
     "n_rows": R, "attn_tokens": [...]}]}   # that sequence (checked against the text this port derives)
A result: {"windows": [{"text_indices", "time_indices", "jump_times"}],
           "segments": [{"start", "end", "text_tokens", "words": [{"word", "start", "end", "probability"}]}]}
  (segments cleared by transcribe.py are left out).
"""
import json
import string
import sys

import numpy as np

TOKENS_PER_SECOND = 50  # OpenAI audio.TOKENS_PER_SECOND: 1500 encoder positions per 30 s
HOP_LENGTH = 160
SAMPLE_RATE = 16000
TIME_PRECISION = 0.02  # transcribe.py: input_stride * HOP_LENGTH / SAMPLE_RATE
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


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


# ---- tokenizer.py: byte-level decoding and split_to_word_tokens ----


def bytes_to_unicode() -> dict:
    """GPT-2 / tiktoken byte <-> printable-unicode table used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class ByteDecoder:
    def __init__(self, tokenizer_json: str, eot: int):
        with open(tokenizer_json, encoding="utf-8") as fh:
            vocab = json.load(fh)["model"]["vocab"]
        inv = {u: b for b, u in bytes_to_unicode().items()}
        self.token_bytes = {i: bytes(inv[ch] for ch in piece) for piece, i in vocab.items()}
        self.eot = eot

    def decode(self, tokens) -> str:
        """tiktoken decode (decode_with_timestamps for the specials used here): bytes joined, UTF-8 'replace'."""
        out = b""
        for t in tokens:
            out += b"<|endoftext|>" if t == self.eot else self.token_bytes[t]
        return out.decode("utf-8", errors="replace")


def split_tokens_on_unicode(tokens, dec: ByteDecoder):
    decoded_full = dec.decode(tokens)
    replacement_char = "\ufffd"
    words = []
    word_tokens = []
    current_tokens = []
    unicode_offset = 0
    for token in tokens:
        current_tokens.append(token)
        decoded = dec.decode(current_tokens)
        if replacement_char not in decoded or decoded_full[unicode_offset + decoded.index(replacement_char)] == replacement_char:
            words.append(decoded)
            word_tokens.append(current_tokens)
            current_tokens = []
            unicode_offset += len(decoded)
    return words, word_tokens


def split_tokens_on_spaces(tokens, dec: ByteDecoder):
    subwords, subword_tokens_list = split_tokens_on_unicode(tokens, dec)
    words = []
    word_tokens = []
    for subword, subword_tokens in zip(subwords, subword_tokens_list):
        special = subword_tokens[0] >= dec.eot
        with_space = subword.startswith(" ")
        punctuation = subword.strip() in string.punctuation
        if special or with_space or punctuation or len(words) == 0:
            words.append(subword)
            word_tokens.append(subword_tokens)
        else:
            words[-1] = words[-1] + subword
            word_tokens[-1].extend(subword_tokens)
    return words, word_tokens


def split_to_word_tokens(tokens, dec: ByteDecoder, language: str):
    if language in {"zh", "ja", "th", "lo", "my", "yue"}:
        return split_tokens_on_unicode(tokens, dec)
    return split_tokens_on_spaces(tokens, dec)


# ---- timing.py: find_alignment (word part), merge_punctuations, add_word_timestamps ----


class WordTiming:
    def __init__(self, word, tokens, start, end, probability):
        self.word, self.tokens, self.start, self.end, self.probability = word, tokens, start, end, probability


def find_alignment(case: dict, text_tokens, dec: ByteDecoder):
    """timing.find_alignment from the model outputs on; returns (alignment, dtw details)."""
    if len(text_tokens) == 0:
        return [], None
    h, r, f = case["n_heads"], case["n_rows"], case["n_frames"]
    sot_sequence = case["sot_sequence"]
    tokens = [*sot_sequence, case["no_timestamps"], *text_tokens, case["eot"]]
    if tokens != case["attn_tokens"] or len(tokens) != r:
        raise AssertionError(f"attention was computed for another sequence: {case['attn_tokens']} != {tokens}")
    probs = np.fromfile(case["attn"], dtype="<f4").reshape(h, r, f)
    logits = np.fromfile(case["logits"], dtype="<f4").reshape(r, case["vocab"])
    # sampled_logits = logits[len(sot_sequence):, :eot]; token_probs = softmax (float32, like torch)
    sampled = logits[len(sot_sequence):, : case["eot"]].astype(np.float32)
    e = np.exp(sampled - sampled.max(axis=-1, keepdims=True))
    token_probs = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    text_token_probs = token_probs[np.arange(len(text_tokens)), text_tokens].tolist()

    width = int(case.get("medfilt_width", 7))
    text_indices, time_indices, jump_times, standardised, filtered = find_alignment_from_attention(
        probs, int(case["num_frames"]), len(sot_sequence), width
    )
    self_check_median(standardised, filtered, width)
    details = {"text_indices": text_indices.tolist(), "time_indices": time_indices.tolist(), "jump_times": jump_times.tolist()}

    words, word_tokens = split_to_word_tokens(text_tokens + [case["eot"]], dec, case["language"])
    if len(word_tokens) <= 1:
        return [], details
    word_boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    if len(word_boundaries) <= 1:
        return [], details
    start_times = jump_times[word_boundaries[:-1]]
    end_times = jump_times[word_boundaries[1:]]
    word_probabilities = [np.mean(text_token_probs[i:j]) for i, j in zip(word_boundaries[:-1], word_boundaries[1:])]
    alignment = [
        WordTiming(word, tokens, start, end, probability)
        for word, tokens, start, end, probability in zip(words, word_tokens, start_times, end_times, word_probabilities)
    ]
    return alignment, details


def merge_punctuations(alignment, prepended: str, appended: str):
    i = len(alignment) - 2
    j = len(alignment) - 1
    while i >= 0:
        previous = alignment[i]
        following = alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word = previous.word + following.word
            following.tokens = previous.tokens + following.tokens
            previous.word = ""
            previous.tokens = []
        else:
            j = i
        i -= 1
    i = 0
    j = 1
    while j < len(alignment):
        previous = alignment[i]
        following = alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word = previous.word + following.word
            previous.tokens = previous.tokens + following.tokens
            following.word = ""
            following.tokens = []
        else:
            i = j
        j += 1


def add_word_timestamps(segments, case: dict, dec, last_speech_timestamp: float, alignment=None):
    """`alignment` given (the --post mode): find_alignment's output, so only the steps after it run."""
    if len(segments) == 0:
        return None
    eot = case["eot"]
    text_tokens_per_segment = [[t for t in s["tokens"] if t < eot] for s in segments]
    text_tokens = [t for ts in text_tokens_per_segment for t in ts]
    if alignment is None:
        alignment, details = find_alignment(case, text_tokens, dec)
    else:
        details = None
    word_durations = np.array([t.end - t.start for t in alignment])
    word_durations = word_durations[word_durations.nonzero()]
    median_duration = np.median(word_durations) if len(word_durations) > 0 else 0.0
    median_duration = min(0.7, float(median_duration))
    max_duration = median_duration * 2

    if len(word_durations) > 0:
        sentence_end_marks = ".。!！?？"
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > max_duration:
                if alignment[i].word in sentence_end_marks:
                    alignment[i].end = alignment[i].start + max_duration
                elif alignment[i - 1].word in sentence_end_marks:
                    alignment[i].start = alignment[i].end - max_duration

    merge_punctuations(alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS)

    time_offset = segments[0]["seek"] * HOP_LENGTH / SAMPLE_RATE
    word_index = 0
    for segment, text_tokens in zip(segments, text_tokens_per_segment):
        saved_tokens = 0
        words = []
        while word_index < len(alignment) and saved_tokens < len(text_tokens):
            timing = alignment[word_index]
            if timing.word:
                words.append(dict(word=timing.word, start=round(time_offset + timing.start, 2), end=round(time_offset + timing.end, 2), probability=timing.probability))
            saved_tokens += len(timing.tokens)
            word_index += 1
        if len(words) > 0:
            if words[0]["end"] - last_speech_timestamp > median_duration * 4 and (
                words[0]["end"] - words[0]["start"] > max_duration or (len(words) > 1 and words[1]["end"] - words[0]["start"] > max_duration * 2)
            ):
                if len(words) > 1 and words[1]["end"] - words[1]["start"] > max_duration:
                    boundary = max(words[1]["end"] / 2, words[1]["end"] - max_duration)
                    words[0]["end"] = words[1]["start"] = boundary
                words[0]["start"] = max(0, words[0]["end"] - max_duration)
            if segment["start"] < words[0]["end"] and segment["start"] - 0.5 > words[0]["start"]:
                words[0]["start"] = max(0, min(words[0]["end"] - median_duration, segment["start"]))
            else:
                segment["start"] = words[0]["start"]
            if segment["end"] > words[-1]["start"] and segment["end"] + 0.5 < words[-1]["end"]:
                words[-1]["end"] = max(words[-1]["start"] + median_duration, segment["end"])
            else:
                segment["end"] = words[-1]["end"]
            last_speech_timestamp = segment["end"]
        segment["words"] = words
    return details


# ---- transcribe.py: one window ----


def window_segments(case: dict, tokens, seek: int, segment_size: int):
    """The window's segments (transcribe.py, consecutive timestamp pairs) before word timestamps, and the next seek."""
    tb = case["timestamp_begin"]
    input_stride = 2  # N_FRAMES // n_audio_ctx
    seek0 = seek
    time_offset = float(seek * HOP_LENGTH / SAMPLE_RATE)
    window_end_time = float((seek + segment_size) * HOP_LENGTH / SAMPLE_RATE)
    segment_duration = segment_size * HOP_LENGTH / SAMPLE_RATE
    ts = [t >= tb for t in tokens]
    single_timestamp_ending = ts[-2:] == [False, True]
    consecutive = [k + 1 for k in range(len(tokens) - 1) if ts[k] and ts[k + 1]]
    raw = []
    if len(consecutive) > 0:
        slices = list(consecutive)
        if single_timestamp_ending:
            slices.append(len(tokens))
        last_slice = 0
        for current_slice in slices:
            sliced = tokens[last_slice:current_slice]
            raw.append((time_offset + (sliced[0] - tb) * TIME_PRECISION, time_offset + (sliced[-1] - tb) * TIME_PRECISION, sliced))
            last_slice = current_slice
        if single_timestamp_ending:
            seek += segment_size
        else:
            last_timestamp_pos = tokens[last_slice - 1] - tb
            seek += last_timestamp_pos * input_stride
    else:
        duration = segment_duration
        timestamps = [t for t in tokens if t >= tb]
        if len(timestamps) > 0 and timestamps[-1] != tb:
            duration = (timestamps[-1] - tb) * TIME_PRECISION
        raw.append((time_offset, time_offset + duration, tokens))
        seek += segment_size
    segments = []
    for start, end, toks in raw:
        # SERVER: clamp to the window's audio and round to ms (the engine's documented deviation)
        start = min(max(start, time_offset), window_end_time)
        end = min(max(end, start), window_end_time)
        segments.append({"seek": seek0, "start": round(start, 3), "end": round(end, 3), "tokens": list(toks)})
    return segments, seek


def get_end(segments):
    return next((w["end"] for s in reversed(segments) for w in reversed(s["words"])), segments[-1]["end"] if segments else None)


def run_case(case: dict) -> dict:
    """transcribe.py's window loop, reduced to what word timestamps touch (no skip, no fallback)."""
    dec = ByteDecoder(case["tokenizer_json"], case["eot"])
    seek = 0
    last_speech_timestamp = 0.0
    all_segments = []
    details = []
    for window in case["windows"]:
        if seek >= case["content_frames"]:
            raise AssertionError(f"the caller decoded a window at {window['seek']} after the end")
        if window["seek"] != seek:
            raise AssertionError(f"window seek {window['seek']} != transcribe.py seek {seek}")
        segment_size = min(3000, case["content_frames"] - seek)
        w = {**case, **window, "num_frames": segment_size}
        current_segments, seek = window_segments(case, window["window_tokens"], seek, segment_size)
        details.append(add_word_timestamps(current_segments, w, dec, last_speech_timestamp) or {})
        last_word_end = get_end(current_segments)
        if last_word_end is not None:
            last_speech_timestamp = last_word_end
        for segment in current_segments:
            text = dec.decode([t for t in segment["tokens"] if t < case["eot"]])
            if segment["start"] == segment["end"] or text.strip() == "":
                continue  # transcribe.py clears them (text, tokens, words); the server drops them
            all_segments.append(
                {
                    "start": float(segment["start"]),
                    "end": float(segment["end"]),
                    "text_tokens": [t for t in segment["tokens"] if t < case["eot"]],
                    "words": [{k: (v if k == "word" else float(v)) for k, v in w.items()} for w in segment["words"]],
                }
            )
    if seek < case["content_frames"]:
        raise AssertionError(f"transcribe.py would decode another window at {seek}")
    return {"windows": details, "segments": all_segments}


def run_post(case: dict) -> list:
    """--post: add_word_timestamps on a hand-made alignment (times as numpy float64, as find_alignment returns
    them) and hand-made segments {"seek", "start", "end", "tokens"}; returns the segments with their words."""
    alignment = [
        WordTiming(w["word"], list(w["tokens"]), np.float64(w["start"]), np.float64(w["end"]), w["probability"]) for w in case["alignment"]
    ]
    segments = [dict(s) for s in case["segments"]]
    add_word_timestamps(segments, case, None, float(case["last_speech_timestamp"]), alignment=alignment)
    return [
        {"start": float(s["start"]), "end": float(s["end"]), "words": [{k: (v if k == "word" else float(v)) for k, v in w.items()} for w in s["words"]]}
        for s in segments
    ]


def main() -> None:
    post = sys.argv[1] == "--post"
    with open(sys.argv[2 if post else 1]) as fh:
        cases = json.load(fh)
    json.dump([run_post(c) if post else run_case(c) for c in cases], sys.stdout)


if __name__ == "__main__":
    main()
