/**
 * WebRTC ingest on werift (pure TypeScript, in-process): WHIP-style signalling (SDP offer in,
 * complete SDP answer out), the client's Opus audio track decoded with libopus (RTP gaps filled
 * with silence) and handed at 48 kHz to a `LiveSession`, the same as /v1/stream's. Results go back
 * over the client's data channel as the /v1/stream JSON messages (ready / partial / final /
 * is_final / error). This file owns only the peer connection, the RTP timeline and the data
 * channel; the session owns everything else.
 *
 *   POST /v1/webrtc (offer)  → session created (model loaded, pipeline ready), answer returned
 *   data channel opens       → {"status":"ready","session_id"}
 *   RTP (Opus)               → partials / finals on the data channel and the bus
 *   {"action":"stop"} on the data channel, or DELETE /v1/webrtc/<id>  → last finals, {"is_final":true}, closed
 *   ICE failure, no audio for idleTimeoutS, maximum duration → {"error"} (when possible), closed
 */
import type { Logger } from 'pino';
import { RTCPeerConnection, useOPUS, type MediaStreamTrack, type RTCDataChannel, type RtpPacket } from 'werift';
import { DomainError } from '../errors.ts';
import type { LiveClient, LiveConfig, LiveSession, LiveSessions } from '../pipeline/live-session.ts';
import type { WebRtcAnswer, WebRtcIngest } from './ingest.ts';
import { OPUS_SAMPLE_RATE, OpusDecoder, opusAvailability } from './opus-decoder.ts';
import { encodeServerMessage, parseControlMessage, toServerMessage } from './stream-protocol.ts';
import type { IceServer, WebRtcConfig } from '../../config/webrtc.ts';
import { RtpAudioTimeline } from './webrtc-rtp.ts';

export interface WebRtcIngestOptions {
  /** The server's live sessions (admission, metering, pipeline, limits), shared with /v1/stream. */
  live: LiveSessions;
  logger: Logger;
  /** ICE servers, UDP port range, announced IP (webrtcConfigFromEnv). */
  webrtc: WebRtcConfig;
  /** How long the answer waits for ICE candidate gathering (default 3000 ms). */
  gatherTimeoutMs?: number;
  /** A session whose ICE/DTLS never connects is dropped after this long (default 30 s). */
  connectTimeoutMs?: number;
  /** After {"is_final":true} the peer connection stays open this long for the client's DELETE (default 3 s). */
  lingerMs?: number;
}

interface Peer {
  session: LiveSession;
  pc: RTCPeerConnection;
  decoder: OpusDecoder;
  timeline: RtpAudioTimeline;
  connected: boolean;
  dc: RTCDataChannel | null;
  /** Messages waiting for the data channel to open. */
  outbox: string[];
  timers: Set<NodeJS.Timeout>;
  decodeErrors: number;
  closed: boolean;
}

const MAX_DC_MESSAGE = 64 * 1024;

export class WeriftWebRtcIngest implements WebRtcIngest {
  readonly transport = 'webrtc';
  private readonly peers = new Map<string, Peer>();
  private closing = false;

  constructor(private readonly o: WebRtcIngestOptions) {}

  get active(): number {
    return this.o.live.active(this.transport);
  }

  get iceServers(): ReadonlyArray<IceServer> {
    return this.o.webrtc.iceServers;
  }

  availability(): { ok: true } | { ok: false; reason: string } {
    if (this.closing || this.o.live.isClosing) return { ok: false, reason: 'server is shutting down' };
    return opusAvailability();
  }

  async start(): Promise<void> {
    const a = opusAvailability();
    if (!a.ok) this.o.logger.warn(`WebRTC ingest disabled: ${a.reason}. POST /v1/webrtc answers 503 until it is fixed.`);
    else this.o.logger.info({ iceServers: this.o.webrtc.iceServers.length, portRange: this.o.webrtc.portRange ?? null, announcedIp: this.o.webrtc.announcedIp ?? null }, 'WebRTC ingest ready');
  }

  async createSession(offerSdp: string, options: Omit<LiveConfig, 'sampleRate'>, client: LiveClient): Promise<WebRtcAnswer> {
    if (this.closing) throw new DomainError('unavailable', 'Server is shutting down; reconnect to another instance.');
    const avail = opusAvailability();
    if (!avail.ok) throw new DomainError('unavailable', `WebRTC is unavailable on this server: ${avail.reason}.`);
    checkOffer(offerSdp);
    // The slot is reserved before anything asynchronous, so that a burst cannot overrun the limit.
    const slot = this.o.live.reserve();
    let session: LiveSession;
    try {
      session = await this.o.live.open(slot, client, this.transport);
    } catch (err) {
      slot.release();
      throw err;
    }
    const w = this.o.webrtc;
    const peer: Peer = {
      session,
      pc: new RTCPeerConnection({
        iceServers: w.iceServers.map((s) => ({ ...s })),
        icePortRange: w.portRange,
        codecs: { audio: [useOPUS()], video: [] },
        // Answers carry every candidate (no trickle): loopback too, so that same-host clients connect.
        iceAdditionalHostAddresses: ['127.0.0.1'],
      }),
      decoder: new OpusDecoder(),
      timeline: new RtpAudioTimeline(),
      connected: false,
      dc: null,
      outbox: [],
      timers: new Set(),
      decodeErrors: 0,
      closed: false,
    };
    const id = session.id;
    this.peers.set(id, peer);
    // Everything the session says goes to the data channel (queued until it opens; `ready` first).
    session.output$.subscribe((m) => this.send(peer, encodeServerMessage(toServerMessage(m))));
    void session.ended.then((end) => {
      // Let the last message leave, and the client DELETE the resource, before closing.
      if (!this.closing && !peer.closed && end.reason !== 'gone') this.timer(peer, end.reason === 'complete' ? (this.o.lingerMs ?? 3000) : 500, () => this.dispose(peer));
    });
    try {
      await session.configure({ ...options, sampleRate: OPUS_SAMPLE_RATE });
      const pc = peer.pc;
      pc.onTrack.subscribe((track: MediaStreamTrack) => {
        if (track.kind !== 'audio') return;
        track.onReceiveRtp.subscribe((rtp: RtpPacket) => this.onRtp(peer, rtp));
      });
      pc.onDataChannel.subscribe((dc: RTCDataChannel) => this.onDataChannel(peer, dc));
      pc.connectionStateChange.subscribe((state) => {
        if (state === 'connected' && !peer.connected) {
          peer.connected = true;
          session.touch(); // the idle timeout runs from here
          this.o.logger.info({ session: id }, 'webrtc connected');
        } else if (state === 'failed' || state === 'closed') {
          if (session.phase !== 'closed') this.o.logger.info({ session: id, state }, 'webrtc connection lost');
          this.dispose(peer);
        }
      });
      this.timer(peer, this.o.connectTimeoutMs ?? 30_000, () => {
        if (!peer.connected) {
          this.o.logger.info({ session: id }, 'webrtc connection never established');
          this.dispose(peer);
        }
      });
      try {
        await pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
      } catch (err) {
        throw new DomainError('invalid', `The SDP offer was rejected: ${(err as Error).message}`);
      }
      await pc.setLocalDescription(await pc.createAnswer());
      await this.gathered(pc);
      const sdp = pc.localDescription?.sdp;
      if (!sdp) throw new Error('no local description after setLocalDescription');
      this.o.logger.info({ session: id, model: options.model, language: options.language }, 'webrtc session created');
      return { sessionId: id, sdp: w.announcedIp ? announceIp(sdp, w.announcedIp) : sdp };
    } catch (err) {
      this.dispose(peer);
      throw err;
    }
  }

  /**
   * Ends a session (DELETE /v1/webrtc/<id>). With `client`, only its owner may (LiveSessions.isOwner);
   * anyone else is told it does not exist (false). A bad key throws 'unauthenticated'.
   */
  async endSession(sessionId: string, client?: LiveClient): Promise<boolean> {
    const peer = this.peers.get(sessionId);
    if (client && !(await this.o.live.isOwner(peer?.session ?? null, client))) return false;
    if (!peer) return false;
    await peer.session.stop();
    await this.drain(peer);
    this.dispose(peer);
    return true;
  }

  /** Shutdown, after LiveSessions.close() flushed the sessions: the last messages leave, then every peer connection closes. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(
      [...this.peers.values()].map(async (p) => {
        await p.session.stop();
        await this.drain(p);
        this.dispose(p);
      }),
    );
  }

  /** Ids of the sessions with a peer connection (tests, admin). */
  sessions(): string[] {
    return [...this.peers.keys()];
  }

  // -------------------------------------------------------------------------------------------

  private onDataChannel(peer: Peer, dc: RTCDataChannel): void {
    if (peer.dc) {
      dc.close();
      return;
    }
    peer.dc = dc;
    const opened = () => {
      for (const m of peer.outbox.splice(0)) this.send(peer, m);
    };
    dc.stateChanged.subscribe((s) => {
      if (s === 'open') opened();
    });
    if (dc.readyState === 'open') opened();
    dc.onMessage.subscribe((data) => {
      const text = typeof data === 'string' ? data : data.length <= MAX_DC_MESSAGE ? data.toString('utf8') : '';
      const ctl = parseControlMessage(text);
      if (!ctl.ok) return this.send(peer, encodeServerMessage({ error: `${ctl.error}; audio goes in the RTP track, control messages are {"action":"stop"}` }));
      peer.session.control(ctl.value);
    });
  }

  private onRtp(peer: Peer, rtp: RtpPacket): void {
    if (peer.session.phase !== 'streaming') return;
    const step = peer.timeline.push({ sequenceNumber: rtp.header.sequenceNumber, timestamp: rtp.header.timestamp, payload: rtp.payload });
    if (step.kind === 'drop') return;
    let pcm: Float32Array;
    try {
      pcm = peer.decoder.decode(step.payload);
    } catch (err) {
      // A corrupt packet costs 20 ms of audio, not the session (unless every packet is bad).
      if (++peer.decodeErrors === 50) peer.session.fail(new DomainError('invalid', `cannot decode the audio track as Opus (${(err as Error).message})`));
      return;
    }
    peer.timeline.played(pcm.length);
    // Lost packets become silence: timings stay true, and the gap is metered like audio.
    peer.session.pushAudio(step.gapSamples > 0 ? concat(new Float32Array(step.gapSamples), pcm) : pcm);
  }

  private send(peer: Peer, text: string): void {
    if (peer.closed) return;
    const dc = peer.dc;
    if (!dc || dc.readyState !== 'open') {
      peer.outbox.push(text);
      return;
    }
    try {
      dc.send(text);
    } catch (err) {
      this.o.logger.debug({ err, session: peer.session.id }, 'data channel send failed');
    }
  }

  /** Lets the last data-channel messages leave before the connection is closed (SCTP has no flush). */
  private async drain(peer: Peer, maxMs = 2000): Promise<void> {
    const dc = peer.dc;
    if (!dc || dc.readyState !== 'open' || peer.closed) return;
    const t0 = Date.now();
    while (dc.bufferedAmount > 0 && Date.now() - t0 < maxMs) await sleep(20);
    await sleep(250);
  }

  private timer(peer: Peer, ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      peer.timers.delete(t);
      fn();
    }, ms);
    peer.timers.add(t);
  }

  private async gathered(pc: RTCPeerConnection): Promise<void> {
    if (pc.iceGatheringState === 'complete') return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, this.o.gatherTimeoutMs ?? 3000);
      const sub = pc.iceGatheringStateChange.subscribe((s) => {
        if (s === 'complete') done();
      });
      function done() {
        clearTimeout(t);
        sub.unSubscribe();
        resolve();
      }
    });
  }

  /** Closes the peer connection and the session (no flush if it is still live). Idempotent. */
  private dispose(peer: Peer): void {
    if (peer.closed) return;
    const flushed = peer.session.phase === 'closed';
    peer.session.close();
    peer.closed = true;
    for (const t of peer.timers) clearTimeout(t);
    peer.timers.clear();
    peer.outbox.length = 0;
    this.peers.delete(peer.session.id);
    peer.pc.close().catch((err) => this.o.logger.debug({ err, session: peer.session.id }, 'peer connection close failed'));
    this.o.logger.info({ session: peer.session.id, audioS: Math.round(peer.session.receivedS * 10) / 10, rtp: peer.timeline.stats, flushed }, 'webrtc session closed');
  }
}

/** What the session needs from an offer: SDP with an Opus audio m-line and a data channel for the results. */
function checkOffer(sdp: string): void {
  if (!/^v=0/m.test(sdp) || !/^m=/m.test(sdp)) throw new DomainError('invalid', 'Request body is not an SDP offer (expected "v=0 … m=audio …" with Content-Type: application/sdp).');
  if (!/^m=audio /m.test(sdp)) throw new DomainError('invalid', 'The SDP offer has no audio m-line: add a microphone track (sendonly or sendrecv).');
  if (!/^a=rtpmap:\d+ opus\/48000/im.test(sdp)) throw new DomainError('invalid', 'The SDP offer does not offer Opus audio (opus/48000/2), the only codec this server decodes.');
  if (!/^m=application [^\n]*(DTLS\/SCTP|webrtc-datachannel)/m.test(sdp)) {
    throw new DomainError('invalid', 'The SDP offer has no data channel: create one (e.g. pc.createDataChannel("captions")) before createOffer(); results are sent over it.');
  }
}

/** Rewrites the candidates of an SDP to one announced address (server behind NAT / port forwarding). */
export function announceIp(sdp: string, ip: string): string {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const line of sdp.split(/\r?\n/)) {
    const m = /^a=candidate:(\S+) (\d) (\S+) (\d+) (\S+) (\d+) typ host(.*)$/.exec(line);
    if (m) {
      const [, foundation, component, proto, priority, , port, rest] = m;
      const key = `${component} ${proto} ${port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      lines.push(`a=candidate:${foundation} ${component} ${proto} ${priority} ${ip} ${port} typ host${rest}`);
      continue;
    }
    if (/^c=IN IP[46] /.test(line)) {
      lines.push(`c=IN ${ip.includes(':') ? 'IP6' : 'IP4'} ${ip}`);
      continue;
    }
    lines.push(line);
  }
  return lines.join('\r\n');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
