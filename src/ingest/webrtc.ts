/**
 * WebRTC ingest on werift (pure TypeScript, in-process): WHIP-style signalling (SDP offer in,
 * complete SDP answer out), the client's Opus audio track decoded with libopus, resampled
 * 48 → 16 kHz with libsamplerate and fed to the same `StreamSession` as /v1/stream. Results go back
 * over the client's data channel as the /v1/stream JSON messages (ready / partial / final /
 * is_final / error) and are published on the bus, so /v1/stream/<id>/captions followers work for
 * WebRTC sessions too.
 *
 *   POST /v1/webrtc (offer)  → session created (model loaded, pipeline ready), answer returned
 *   data channel opens       → {"status":"ready","session_id"}
 *   RTP (Opus)               → partials / finals on the data channel and the bus
 *   {"action":"stop"} on the data channel, or DELETE /v1/webrtc/<id>  → last finals, {"is_final":true}, closed
 *   ICE failure, no audio for idleTimeoutS, maximum duration → {"error"} (when possible), closed
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { RTCPeerConnection, useOPUS, type MediaStreamTrack, type RTCDataChannel, type RtpPacket } from 'werift';
import { LiveRecorder } from './live-recorder.ts';
import { StreamAccess } from './stream-access.ts';
import { StreamResampler } from '../audio/resampler.ts';
import type { AccessControl } from '../auth/index.ts';
import type { TranscriptStore } from '../store/transcripts.ts';
import { sessionSubject, type Bus } from '../bus/index.ts';
import type { SileroVad } from '../engines/vad/silero-vad.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { SpeechModels } from '../pipeline/speech-models.ts';
import { StreamSession, type StreamEvent } from '../pipeline/stream-session.ts';
import type { IngestClient, LiveSessionOptions, WebRtcAnswer, WebRtcIngest } from './ingest.ts';
import { OPUS_SAMPLE_RATE, OpusDecoder, opusAvailability } from './opus-decoder.ts';
import { encodeServerMessage, parseControlMessage, serverMessages as msg, type ServerMessage } from './stream-protocol.ts';
import type { IceServer, WebRtcConfig } from '../../config/webrtc.ts';
import { RtpAudioTimeline } from './webrtc-rtp.ts';
import type { StreamAdmission } from '../pipeline/stream-admission.ts';
import { toServerMessage } from './ws-stream.ts';

export interface WebRtcIngestOptions {
  /**
   * Admission and metering, as for WS /v1/stream: who may stream (API key, tier limits) and
   * 1 credit per started minute of audio. `null` = no access control (tests, private deployments).
   */
  access: AccessControl | null;
  /** Where finished sessions are saved (finals as segments), as for WS /v1/stream. */
  transcripts?: TranscriptStore;
  models: SpeechModels;
  vad: SileroVad;
  bus: Bus;
  logger: Logger;
  metrics: Metrics;
  /** ICE servers, UDP port range, announced IP (webrtcConfigFromEnv). */
  webrtc: WebRtcConfig;
  maxStreams: number;
  idleTimeoutS: number;
  maxDurationS: number;
  /** Load-based admission (503 + Retry-After when live results are late); none = always admit. */
  admission?: StreamAdmission;
  /** Token budget per decode when the client names none (undefined = the engine default). */
  maxNewTokens?: number;
  /** How long the answer waits for ICE candidate gathering (default 3000 ms). */
  gatherTimeoutMs?: number;
  /** A session whose ICE/DTLS never connects is dropped after this long (default 30 s). */
  connectTimeoutMs?: number;
  /** After {"is_final":true} the peer connection stays open this long for the client's DELETE (default 3 s). */
  lingerMs?: number;
  /** Who may follow captions: share it with the WebSocket ingest (which serves the followers). */
  followers?: StreamAccess;
}

type Phase = 'connecting' | 'streaming' | 'stopping' | 'ended' | 'closed';

interface Peer {
  id: string;
  phase: Phase;
  /** Who may end it: the account of its key, or (anonymous) the client address. */
  owner: { account: string | null; ip: string };
  /** Metering (audio received, gaps included) and the saved transcript. */
  recorder: LiveRecorder;
  pc: RTCPeerConnection;
  session: StreamSession;
  resampler: StreamResampler;
  decoder: OpusDecoder;
  timeline: RtpAudioTimeline;
  dc: RTCDataChannel | null;
  /** Messages waiting for the data channel to open. */
  outbox: string[];
  /** Resolves when the session has emitted `end` (or failed / was closed). */
  ended: Promise<void>;
  resolveEnded: () => void;
  timers: Set<NodeJS.Timeout>;
  idle: NodeJS.Timeout | null;
  decodeErrors: number;
}

const MAX_DC_MESSAGE = 64 * 1024;

export class WeriftWebRtcIngest implements WebRtcIngest {
  readonly transport = 'webrtc';
  private readonly peers = new Map<string, Peer>();
  private shuttingDown = false;
  /** Sessions counted against maxStreams while their admission and set-up are still under way. */
  private pending = 0;
  private readonly followAccess: StreamAccess;

  constructor(private readonly o: WebRtcIngestOptions) {
    this.followAccess = o.followers ?? new StreamAccess({ bus: o.bus, access: o.access, logger: o.logger });
  }

  get active(): number {
    let n = 0;
    for (const p of this.peers.values()) if (p.phase !== 'ended' && p.phase !== 'closed') n++;
    return n;
  }

  get iceServers(): ReadonlyArray<IceServer> {
    return this.o.webrtc.iceServers;
  }

  availability(): { ok: true } | { ok: false; reason: string } {
    if (this.shuttingDown) return { ok: false, reason: 'server is shutting down' };
    return opusAvailability();
  }

  async start(): Promise<void> {
    const a = opusAvailability();
    if (!a.ok) this.o.logger.warn(`WebRTC ingest disabled: ${a.reason}. POST /v1/webrtc answers 503 until it is fixed.`);
    else this.o.logger.info({ iceServers: this.o.webrtc.iceServers.length, portRange: this.o.webrtc.portRange ?? null, announcedIp: this.o.webrtc.announcedIp ?? null }, 'WebRTC ingest ready');
  }

  async createSession(offerSdp: string, options: LiveSessionOptions, client: IngestClient): Promise<WebRtcAnswer> {
    if (this.shuttingDown) throw httpError(503, 'Server is shutting down; reconnect to another instance.');
    const avail = opusAvailability();
    if (!avail.ok) throw httpError(503, `WebRTC is unavailable on this server: ${avail.reason}.`);
    if (!/^v=0/m.test(offerSdp) || !/^m=/m.test(offerSdp)) throw httpError(400, 'Request body is not an SDP offer (expected "v=0 … m=audio …" with Content-Type: application/sdp).');
    if (!/^m=audio /m.test(offerSdp)) throw httpError(400, 'The SDP offer has no audio m-line: add a microphone track (sendonly or sendrecv).');
    if (!/^a=rtpmap:\d+ opus\/48000/im.test(offerSdp)) throw httpError(400, 'The SDP offer does not offer Opus audio (opus/48000/2), the only codec this server decodes.');
    if (!/^m=application [^\n]*(DTLS\/SCTP|webrtc-datachannel)/m.test(offerSdp)) {
      throw httpError(400, 'The SDP offer has no data channel: create one (e.g. pc.createDataChannel("captions")) before createOffer(); results are sent over it.');
    }

    // The slot is reserved before anything asynchronous, so that a burst cannot overrun maxStreams.
    if (this.active + this.pending >= this.o.maxStreams) throw httpError(503, `Too many live streams (limit ${this.o.maxStreams}); retry later.`);
    this.pending++;
    try {
      return await this.setUp(offerSdp, options, client);
    } finally {
      this.pending--;
    }
  }

  private async setUp(offerSdp: string, options: LiveSessionOptions, client: IngestClient): Promise<WebRtcAnswer> {
    // Admission first (401/402/429 before any work), then everything that can fail releases the grant.
    const grant = this.o.access ? await this.o.access.admit({ authorization: client.authorization, ip: client.ip, kind: 'stream' }) : null;
    let model;
    let resampler;
    try {
      model = await this.o.models.get(options.model);
      if (options.language !== 'auto' && !model.engine.info.languages.includes(options.language)) {
        throw httpError(400, `language: model '${model.id}' does not support '${options.language}'`);
      }
      const capacity = this.o.admission?.admit(model, 'webrtc') ?? { ok: true as const };
      if (!capacity.ok) {
        throw Object.assign(httpError(503, capacity.message), { headers: { 'retry-after': String(capacity.retryAfterS) }, expected: true });
      }
      resampler = await StreamResampler.create(OPUS_SAMPLE_RATE, 16_000);
    } catch (err) {
      grant?.release();
      throw err;
    }
    const id = randomUUID();
    const w = this.o.webrtc;
    const pc = new RTCPeerConnection({
      iceServers: w.iceServers.map((s) => ({ ...s })),
      icePortRange: w.portRange,
      codecs: { audio: [useOPUS()], video: [] },
      // Answers carry every candidate (no trickle): loopback too, so that same-host clients connect.
      iceAdditionalHostAddresses: ['127.0.0.1'],
    });

    let resolveEnded!: () => void;
    const ended = new Promise<void>((r) => (resolveEnded = r));
    const session = new StreamSession({
      id,
      model,
      vad: this.o.vad,
      language: options.language,
      interimResults: options.interimResults,
      partialIntervalMs: options.partialIntervalMs,
      maxNewTokens: options.maxNewTokens ?? this.o.maxNewTokens,
    });
    const peer: Peer = {
      id,
      phase: 'connecting',
      owner: { account: grant?.account?.id ?? null, ip: client.ip },
      recorder: null as unknown as LiveRecorder,
      pc,
      session,
      resampler,
      decoder: new OpusDecoder(),
      timeline: new RtpAudioTimeline(),
      dc: null,
      outbox: [],
      ended,
      resolveEnded,
      timers: new Set(),
      idle: null,
      decodeErrors: 0,
    };
    peer.recorder = new LiveRecorder({
      sessionId: id,
      grant,
      access: this.o.access,
      transcripts: this.o.transcripts,
      logger: this.o.logger,
      onRefused: (message) => this.fail(peer, message),
    });
    peer.recorder.model = model.id;
    peer.recorder.language = options.language;
    this.peers.set(id, peer);
    this.o.metrics.activeStreams.inc({ transport: 'webrtc' });
    session.events$.subscribe({ next: (e) => this.onEvent(peer, e), complete: () => peer.resolveEnded() });

    try {
      pc.onTrack.subscribe((track: MediaStreamTrack) => {
        if (track.kind !== 'audio') return;
        track.onReceiveRtp.subscribe((rtp: RtpPacket) => this.onRtp(peer, rtp));
      });
      pc.onDataChannel.subscribe((dc: RTCDataChannel) => this.onDataChannel(peer, dc));
      pc.connectionStateChange.subscribe((state) => {
        if (state === 'connected' && peer.phase === 'connecting') {
          peer.phase = 'streaming';
          this.touch(peer);
          this.o.logger.info({ session: id }, 'webrtc connected');
        } else if (state === 'failed' || state === 'closed') {
          if (peer.phase !== 'ended' && peer.phase !== 'closed') this.o.logger.info({ session: id, state }, 'webrtc connection lost');
          this.dispose(peer);
        }
      });
      this.timer(peer, this.o.connectTimeoutMs ?? 30_000, () => {
        if (peer.phase === 'connecting') {
          this.o.logger.info({ session: id }, 'webrtc connection never established');
          this.dispose(peer);
        }
      });
      this.timer(peer, this.o.maxDurationS * 1000, () => this.fail(peer, `stream exceeded the maximum duration of ${Math.round(this.o.maxDurationS / 60)} minutes`));

      try {
        await pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
      } catch (err) {
        throw httpError(400, `The SDP offer was rejected: ${(err as Error).message}`);
      }
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      // Followers need the owner's key or a share token; recorded before the client can learn the id.
      await Promise.all([this.gathered(pc), this.followAccess.open(id, grant?.account?.id ?? null)]);
      const sdp = pc.localDescription?.sdp;
      if (!sdp) throw new Error('no local description after setLocalDescription');
      this.o.logger.info({ session: id, model: model.id, language: options.language }, 'webrtc session created');
      return { sessionId: id, sdp: w.announcedIp ? announceIp(sdp, w.announcedIp) : sdp };
    } catch (err) {
      this.dispose(peer);
      throw err;
    }
  }

  /**
   * Ends a session (DELETE /v1/webrtc/<id>). With `client`, only its owner may: the same account's
   * key, or for an anonymous session the same client address; anyone else is told it does not exist
   * (false). A bad key throws 401.
   */
  async endSession(sessionId: string, client?: IngestClient): Promise<boolean> {
    const peer = this.peers.get(sessionId);
    if (client && this.o.access) {
      const account = await this.o.access.authenticate(client.authorization);
      if (!peer) return false;
      const mine = peer.owner.account !== null ? account?.id === peer.owner.account : !account && client.ip === peer.owner.ip;
      if (!mine) return false;
    }
    if (!peer) return false;
    await this.stop(peer);
    await this.drain(peer);
    this.dispose(peer);
    return true;
  }

  /** Shutdown: every live session is flushed (last finals, {"is_final":true}) and closed. */
  async close(): Promise<void> {
    this.shuttingDown = true;
    await Promise.all([...this.peers.values()].map(async (p) => {
      await this.stop(p);
      await this.drain(p);
      this.dispose(p);
    }));
  }

  /** Ids of the sessions (tests, admin). */
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
      this.sendRaw(peer, encodeServerMessage(msg.ready(peer.id)), true);
      for (const m of peer.outbox.splice(0)) this.sendRaw(peer, m);
    };
    dc.stateChanged.subscribe((s) => {
      if (s === 'open') opened();
    });
    if (dc.readyState === 'open') opened();
    dc.onMessage.subscribe((data) => {
      const text = typeof data === 'string' ? data : data.length <= MAX_DC_MESSAGE ? data.toString('utf8') : '';
      const ctl = parseControlMessage(text);
      if (!ctl.ok) return this.sendMessage(peer, msg.error(`${ctl.error}; audio goes in the RTP track, control messages are {"action":"stop"}`));
      if (ctl.value === 'ping') return this.sendMessage(peer, msg.pong());
      if (ctl.value === 'share') {
        this.followAccess
          .share(peer.id)
          .then((token) => this.sendMessage(peer, msg.share(token)))
          .catch((err) => {
            this.o.logger.error({ err, session: peer.id }, 'could not create a share token');
            this.sendMessage(peer, msg.error('could not create a share token; try again'));
          });
        return;
      }
      void this.stop(peer);
    });
  }

  private onRtp(peer: Peer, rtp: RtpPacket): void {
    if (peer.phase !== 'streaming' && peer.phase !== 'connecting') return;
    const step = peer.timeline.push({ sequenceNumber: rtp.header.sequenceNumber, timestamp: rtp.header.timestamp, payload: rtp.payload });
    if (step.kind === 'drop') return;
    let pcm: Float32Array;
    try {
      pcm = peer.decoder.decode(step.payload);
    } catch (err) {
      // A corrupt packet costs 20 ms of audio, not the session (unless every packet is bad).
      if (++peer.decodeErrors === 50) this.fail(peer, `cannot decode the audio track as Opus (${(err as Error).message})`);
      return;
    }
    peer.timeline.played(pcm.length);
    this.touch(peer);
    const audio = step.gapSamples > 0 ? concat(new Float32Array(step.gapSamples), pcm) : pcm;
    const out = peer.resampler.process(audio);
    if (out.length) peer.session.push(out);
    // Metered as it goes: a session whose account runs dry is ended.
    peer.recorder.addAudio(audio.length / OPUS_SAMPLE_RATE);
  }

  private onEvent(peer: Peer, e: StreamEvent): void {
    peer.recorder.record(e);
    this.o.bus.publish(sessionSubject(peer.id), e).catch((err) => this.o.logger.warn({ err, session: peer.id }, 'bus publish failed'));
    this.sendMessage(peer, toServerMessage(e));
    if (e.type === 'end' || e.type === 'error') {
      if (e.type === 'error') this.o.logger.warn({ session: peer.id, error: e.message }, 'webrtc session failed');
      peer.phase = 'ended';
      peer.resolveEnded();
      if (peer.idle) clearTimeout(peer.idle);
      // Let the last message leave, and the client DELETE the resource, before closing.
      this.timer(peer, this.o.lingerMs ?? 3000, () => this.dispose(peer));
    }
  }

  /** Flushes: last finals, then `end` → {"is_final":true}. Idempotent; resolves when the session has ended. */
  private async stop(peer: Peer): Promise<void> {
    if (peer.phase === 'connecting' || peer.phase === 'streaming') {
      peer.phase = 'stopping';
      if (peer.idle) clearTimeout(peer.idle);
      void peer.session.stop();
    }
    if (peer.phase === 'closed') return;
    await peer.ended;
  }

  private fail(peer: Peer, error: string): void {
    if (peer.phase === 'ended' || peer.phase === 'closed') return;
    this.sendMessage(peer, msg.error(error));
    this.o.logger.info({ session: peer.id, error }, 'webrtc session ended with an error');
    peer.phase = 'ended';
    peer.session.close();
    peer.resolveEnded();
    this.timer(peer, 500, () => this.dispose(peer));
  }

  private touch(peer: Peer): void {
    if (peer.idle) clearTimeout(peer.idle);
    if (peer.phase !== 'streaming' && peer.phase !== 'connecting') return;
    peer.idle = setTimeout(() => this.fail(peer, `no audio for ${this.o.idleTimeoutS} s; closing the stream`), this.o.idleTimeoutS * 1000);
  }

  private sendMessage(peer: Peer, m: ServerMessage): void {
    this.sendRaw(peer, encodeServerMessage(m));
  }

  private sendRaw(peer: Peer, text: string, front = false): void {
    if (peer.phase === 'closed') return;
    const dc = peer.dc;
    if (!dc || dc.readyState !== 'open') {
      if (front) peer.outbox.unshift(text);
      else peer.outbox.push(text);
      return;
    }
    try {
      dc.send(text);
    } catch (err) {
      this.o.logger.debug({ err, session: peer.id }, 'data channel send failed');
    }
  }

  /** Lets the last data-channel messages leave before the connection is closed (SCTP has no flush). */
  private async drain(peer: Peer, maxMs = 2000): Promise<void> {
    const dc = peer.dc;
    if (!dc || dc.readyState !== 'open' || peer.phase === 'closed') return;
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

  /** Frees everything of a session at once (no flush). */
  private dispose(peer: Peer): void {
    if (peer.phase === 'closed') return;
    const wasLive = peer.phase !== 'ended';
    peer.phase = 'closed';
    for (const t of peer.timers) clearTimeout(t);
    peer.timers.clear();
    if (peer.idle) clearTimeout(peer.idle);
    peer.session.close();
    peer.resampler.close();
    peer.resolveEnded();
    peer.outbox.length = 0;
    peer.recorder.finish();
    this.followAccess.close(peer.id);
    this.peers.delete(peer.id);
    this.o.metrics.activeStreams.dec({ transport: 'webrtc' });
    peer.pc.close().catch((err) => this.o.logger.debug({ err, session: peer.id }, 'peer connection close failed'));
    this.o.logger.info({ session: peer.id, audioS: Math.round(peer.recorder.receivedS * 10) / 10, rtp: peer.timeline.stats, flushed: !wasLive }, 'webrtc session closed');
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

function httpError(status: number, message: string): Error & { status: number } {
  return Object.assign(new Error(message), { status });
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
