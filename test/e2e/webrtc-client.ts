/**
 * A WHIP client without a browser (werift + libopus): offers an Opus track and a data channel,
 * streams PCM as 20 ms Opus packets, and collects the server's data-channel messages.
 */
import { MediaStreamTrack, RTCPeerConnection, RtpHeader, RtpPacket, useOPUS, type RTCDataChannel } from 'werift';
import { OpusEncoder } from '../../src/ingest/opus-decoder.ts';

export class WebRtcTestClient {
  readonly messages: Array<Record<string, unknown>> = [];
  readonly pc: RTCPeerConnection;
  readonly dc: RTCDataChannel;
  readonly track = new MediaStreamTrack({ kind: 'audio' });
  location: string | null = null;
  sessionId: string | null = null;
  private waiters: Array<{ pred: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }> = [];
  private seq = Math.floor(Math.random() * 30000);
  private ts = Math.floor(Math.random() * 1e6);

  constructor(opts: { dataChannel?: boolean } = {}) {
    this.pc = new RTCPeerConnection({ iceServers: [], codecs: { audio: [useOPUS()], video: [] }, iceAdditionalHostAddresses: ['127.0.0.1'] });
    this.pc.addTransceiver(this.track, { direction: 'sendonly' });
    this.dc = opts.dataChannel === false ? (null as never) : this.pc.createDataChannel('captions');
    this.dc?.onMessage.subscribe((data) => {
      const m = JSON.parse(data.toString()) as Record<string, unknown>;
      this.messages.push(m);
      this.waiters = this.waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    });
  }

  /** A complete offer (after ICE gathering). */
  async offer(): Promise<string> {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    if (this.pc.iceGatheringState !== 'complete') {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 3000);
        this.pc.iceGatheringStateChange.subscribe((s) => {
          if (s === 'complete') {
            clearTimeout(t);
            resolve();
          }
        });
      });
    }
    return this.pc.localDescription!.sdp;
  }

  /** POST the offer; on 201 apply the answer and wait for the connection. */
  async connect(baseUrl: string, query: Record<string, string | number | boolean> = {}): Promise<Response> {
    const qs = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)])).toString();
    const res = await fetch(`${baseUrl}/v1/webrtc${qs ? `?${qs}` : ''}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: await this.offer() });
    if (res.status !== 201) return res;
    this.location = res.headers.get('location');
    this.sessionId = this.location?.split('/').pop() ?? null;
    await this.pc.setRemoteDescription({ type: 'answer', sdp: await res.clone().text() });
    await this.connected();
    return res;
  }

  async connected(timeoutMs = 15_000): Promise<void> {
    if (this.pc.connectionState === 'connected') return;
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`WebRTC connection not established (${this.pc.connectionState})`)), timeoutMs);
      this.pc.connectionStateChange.subscribe((s) => {
        if (s === 'connected') {
          clearTimeout(t);
          resolve();
        }
      });
    });
  }

  next(pred: (m: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const found = this.messages.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for a message; got ${JSON.stringify(this.messages).slice(0, 500)}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  }

  send(obj: unknown): void {
    this.dc.send(JSON.stringify(obj));
  }

  /**
   * Streams 48 kHz mono PCM as 20 ms Opus packets, `pace`× faster than real time.
   * `skipEvery` drops every n-th packet (simulated loss; the server must keep time).
   */
  async sendPcm48k(pcm: Float32Array, opts: { pace?: number; skipEvery?: number } = {}): Promise<void> {
    const enc = new OpusEncoder();
    const pace = opts.pace ?? 1;
    const t0 = performance.now();
    let k = 0;
    for (let off = 0; off + OpusEncoder.FRAME <= pcm.length; off += OpusEncoder.FRAME, k++) {
      const payload = enc.encode(pcm.subarray(off, off + OpusEncoder.FRAME));
      this.seq = (this.seq + 1) & 0xffff;
      this.ts = (this.ts + OpusEncoder.FRAME) >>> 0;
      if (opts.skipEvery && k % opts.skipEvery === opts.skipEvery - 1) continue;
      this.track.writeRtp(new RtpPacket(new RtpHeader({ sequenceNumber: this.seq, timestamp: this.ts, payloadType: 111, marker: k === 0 }), payload));
      const due = t0 + ((k + 1) * 20) / pace;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    }
  }

  finals(): Array<Record<string, unknown>> {
    return this.messages.filter((m) => typeof m.text === 'string');
  }

  async close(): Promise<void> {
    await this.pc.close();
  }
}
