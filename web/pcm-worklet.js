// AudioWorklet: microphone audio (the context's rate, e.g. 48 or 44.1 kHz) → mono 16-bit PCM at
// 16 kHz for WS /v1/stream. Resampling is a windowed-sinc low-pass evaluated at each output
// instant (any ratio, no aliasing from the decimation), with a lookup table for the kernel.
// Chunks of `chunkMs` are posted to the page as transferable ArrayBuffers.

const TABLE_RES = 512; // kernel samples per input sample

class Pcm16kProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.outRate = o.targetRate || 16000;
    this.ratio = sampleRate / this.outRate; // input samples per output sample
    // Cut-off a little below the output Nyquist (in cycles per input sample).
    const fc = (0.5 / Math.max(1, this.ratio)) * 0.9;
    this.half = Math.ceil(8 * Math.max(1, this.ratio)); // kernel half-width, input samples
    const n = 2 * this.half * TABLE_RES + 1;
    this.kernel = new Float32Array(n);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const x = i / TABLE_RES - this.half;
      const sinc = x === 0 ? 1 : Math.sin(2 * Math.PI * fc * x) / (2 * Math.PI * fc * x);
      const w = 0.42 + 0.5 * Math.cos((Math.PI * x) / this.half) + 0.08 * Math.cos((2 * Math.PI * x) / this.half); // Blackman
      this.kernel[i] = 2 * fc * sinc * w;
      if (i % TABLE_RES === 0) sum += this.kernel[i];
    }
    for (let i = 0; i < n; i++) this.kernel[i] /= sum; // unity gain at DC
    // Input history (starts with `half` zeros so the first outputs have their left context).
    this.buf = new Float32Array(4096);
    this.len = this.half;
    this.pos = this.half; // position of the next output sample, in input samples from buf[0]
    this.chunk = new Int16Array(Math.round((this.outRate * (o.chunkMs || 100)) / 1000));
    this.fill = 0;
    this.port.onmessage = (e) => {
      if (e.data === 'flush') this.flush();
    };
  }

  push(samples) {
    if (this.len + samples.length > this.buf.length) {
      const bigger = new Float32Array(Math.max(this.buf.length * 2, this.len + samples.length));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    this.buf.set(samples, this.len);
    this.len += samples.length;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    // Mono mixdown.
    let mono = input[0];
    if (input.length > 1) {
      mono = new Float32Array(input[0].length);
      for (const ch of input) for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / input.length;
    }
    this.push(mono);
    const { buf, half, kernel } = this;
    while (this.pos + half < this.len) {
      const center = Math.floor(this.pos);
      let acc = 0;
      for (let k = center - half + 1; k <= center + half; k++) {
        // kernel index of x = pos - k
        acc += buf[k] * kernel[Math.round((this.pos - k + half) * TABLE_RES)];
      }
      const s = Math.max(-1, Math.min(1, acc));
      this.chunk[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.fill === this.chunk.length) this.flush();
      this.pos += this.ratio;
    }
    // Drop consumed input, keep the kernel's left context.
    const keep = Math.floor(this.pos) - half;
    if (keep > 0) {
      buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.pos -= keep;
    }
    return true;
  }

  flush() {
    if (this.fill === 0) return;
    const out = this.chunk.slice(0, this.fill);
    this.fill = 0;
    this.port.postMessage(out.buffer, [out.buffer]);
  }
}

registerProcessor('pcm16k', Pcm16kProcessor);
