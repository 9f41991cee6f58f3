import WebSocket from 'ws';

/** A test client for /v1/stream: collects every server message and the close code. */
export class StreamClient {
  readonly messages: Array<Record<string, unknown>> = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;
  private waiters: Array<{ pred: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }> = [];

  constructor(readonly ws: WebSocket) {
    this.opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const m = JSON.parse(data.toString()) as Record<string, unknown>;
      this.messages.push(m);
      this.waiters = this.waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    });
  }

  static async connect(url: string, headers: Record<string, string> = {}): Promise<StreamClient> {
    const c = new StreamClient(new WebSocket(url, { headers }));
    await c.opened;
    return c;
  }

  next(pred: (m: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const found = this.messages.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(this.messages).slice(0, 500)}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  }

  json(obj: unknown): void {
    this.ws.send(JSON.stringify(obj));
  }

  /** Sends float samples as PCM16 LE in frames of `frameMs`, `pace` × real time (Infinity = at once). */
  async sendPcm(samples: Float32Array, opts: { frameMs?: number; pace?: number } = {}): Promise<void> {
    const frame = Math.round(((opts.frameMs ?? 100) / 1000) * 16000);
    const pace = opts.pace ?? Infinity;
    const t0 = Date.now();
    for (let i = 0; i < samples.length; i += frame) {
      const chunk = samples.subarray(i, i + frame);
      const pcm = new Int16Array(chunk.length);
      for (let k = 0; k < chunk.length; k++) pcm[k] = Math.max(-32768, Math.min(32767, Math.round(chunk[k] * 32767)));
      if (this.ws.readyState !== WebSocket.OPEN) return;
      this.ws.send(Buffer.from(pcm.buffer));
      if (Number.isFinite(pace)) {
        const due = t0 + (((i + frame) / 16000) * 1000) / pace;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  finals(): Array<Record<string, unknown>> {
    return this.messages.filter((m) => typeof m.text === 'string');
  }

  /** The partials' `stable` prefixes, in order (a stream of one utterance: each must start with the one before). */
  stablePrefixes(): string[] {
    return this.messages.filter((m) => 'partial' in m).map((m) => m.stable as string);
  }
}

/** Whether each stable prefix extends the previous one (a stable prefix is never retracted within an utterance). */
export function stableNeverShrinks(prefixes: readonly string[]): boolean {
  return prefixes.every((p, i) => i === 0 || prefixes[i - 1] === '' || p.startsWith(prefixes[i - 1]));
}
