/**
 * The composition root: builds every component from the config, wires them, and closes them in
 * reverse order. No component reaches for a global; tests build an App exactly as main.ts does.
 */
import fs from 'node:fs/promises';
import type { Config } from '../config/config.ts';
import { HttpServer } from './http/http-server.ts';
import { registerSystemRoutes } from './http/routes/system-routes.ts';
import { UPLOAD_TMP_SUBDIR, registerTranscribeRoutes } from './http/routes/transcribe-routes.ts';
import { SileroVad } from './engines/vad/silero-vad.ts';
import { createDiarizer, type Diarizer } from './engines/diarization/index.ts';
import { FileTranscriber } from './pipeline/file-transcriber.ts';
import { JobRegistry } from './pipeline/job-registry.ts';
import { SpeechModels } from './pipeline/speech-models.ts';
import { TranscriptionService } from './pipeline/transcription-service.ts';
import { LocalSpeechWork, QueuedSpeechWork, speechWorkHandler, type SpeechWork } from './pipeline/speech-work.ts';
import { NatsWorkQueue } from './bus/work-queue.ts';
import path from 'node:path';
import { createBus, type Bus } from './bus/index.ts';
import { WsStreamIngest } from './http/ws-stream.ts';
import { LiveSessions } from './pipeline/live-session.ts';
import { StreamAccess } from './pipeline/stream-access.ts';
import { StreamAdmission } from './pipeline/stream-admission.ts';
import { AccessControl, CreditLedger, createConcurrencySlots } from './auth/index.ts';
import { registerAccountRoutes } from './http/routes/account-routes.ts';
import { Database, createStores, type Stores } from './store/index.ts';
import { serveAdminChannel } from './cli/admin-channel.ts';
import { AiModels } from './ai/ai-models.ts';
import { LlmServices } from './ai/llm-services.ts';
import { registerAiRoutes } from './http/routes/ai-routes.ts';
import { registerTranscriptAiRoutes } from './http/routes/transcript-ai-routes.ts';
import { WeriftWebRtcIngest } from './ingest/webrtc.ts';
import { registerWebRtcRoutes } from './http/routes/webrtc-routes.ts';
import { registerWebUi } from './http/routes/web-ui.ts';
import { loadNativeUws } from './http/uws.ts';
import { pullCommand } from './models/errors.ts';
import { ModelInstaller, type ConfiguredModel } from './models/model-installer.ts';
import { ModelRegistry } from './models/registry.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import { Metrics } from './observability/metrics.ts';
import { detectGpu, type GpuInfo } from './system/gpu.ts';

export interface AppOptions {
  logger?: Logger;
  /** Skip nvidia-smi (tests); detection result to use instead. */
  gpu?: GpuInfo;
  /** Wall clock in ms (default Date.now) of the schedulers' load and of admission (tests make the load forecast exact with one). */
  clock?: () => number;
}

export class App {
  readonly logger: Logger;
  readonly metrics = new Metrics();
  server!: HttpServer;
  registry!: ModelRegistry;
  /** Pulls missing registry models on first use (AUTO_PULL). */
  installer!: ModelInstaller;
  gpu!: GpuInfo;
  vad!: SileroVad;
  diarizer!: Diarizer;
  speechModels!: SpeechModels;
  jobs!: JobRegistry;
  bus!: Bus;
  db!: Database;
  stores!: Stores;
  access!: AccessControl;
  ai!: AiModels;
  live!: LiveSessions;
  /** AiService and the translator on the chat model, shared by every AI route. */
  llmServices!: LlmServices;
  webrtc!: WeriftWebRtcIngest;
  streams!: WsStreamIngest;
  /** The JetStream work queue (WORK_QUEUE=nats), else null. */
  workQueue: NatsWorkQueue | null = null;
  /** Closers in creation order; run in reverse by close(). */
  private readonly closers: Array<{ name: string; close: () => Promise<void> | void }> = [];
  private closed = false;

  constructor(
    readonly config: Config,
    private readonly opts: AppOptions = {},
  ) {
    this.logger = opts.logger ?? createLogger(config.logLevel);
  }

  /** Starts every component; on failure closes what was started and rethrows. */
  async start(): Promise<this> {
    try {
      const uws = loadNativeUws();
      await fs.mkdir(this.config.paths.dataDir, { recursive: true });
      // First, before anything in DATA_DIR is touched: an embedded database takes DATA_DIR's single-owner
      // lock (DataDirLockedError when another live process has it) and answers the admin CLI on it.
      this.db = new Database({
        ...this.config.database,
        owner: { dir: this.config.paths.dataDir, role: 'server' },
        log: (msg: string) => this.logger.info({ component: 'db' }, msg),
      });
      await this.db.start();
      this.closers.push({ name: 'database', close: () => this.db.close() });
      this.stores = createStores(this.db);
      if (this.db.lock) {
        const channel = serveAdminChannel(this.db.lock, this.stores);
        this.closers.push({ name: 'admin-channel', close: () => channel.close() });
      }
      this.gpu = this.opts.gpu ?? (await detectGpu());
      this.logger.info({ gpu: this.gpu, executionProvider: this.config.inference.executionProvider }, 'accelerator');
      if (this.config.inference.executionProvider === 'cuda' && !this.gpu.available) {
        this.logger.warn(`EXECUTION_PROVIDER=cuda but no GPU was found (${this.gpu.detail}); model loads will fail`);
      }

      this.registry = await ModelRegistry.create(this.config.paths.modelsDir);
      for (const m of this.registry.list()) {
        this.metrics.modelInstalled.set({ model: m.id, kind: m.kind }, m.installed ? 1 : 0);
      }
      const mc = this.config.models;
      this.installer = new ModelInstaller({
        registry: this.registry,
        autoPull: mc.autoPull,
        endpoint: mc.hubEndpoint ?? undefined,
        token: mc.hubToken ?? undefined,
        // The files the configured precision loads ('measure' times what is installed: fp32 is pulled).
        variantFor: (kind) => ((kind === 'asr' && this.config.inference.whisperPrecision === 'int8') || (kind === 'embedding' && this.config.ai.embedding.quantized) ? 'quantized' : 'fp32'),
        logger: this.logger.child({ component: 'models' }),
      });
      this.logModelStatus();

      // Uploads left behind by a crash are useless now: start with an empty temp folder.
      const tmpDir = path.join(this.config.paths.dataDir, UPLOAD_TMP_SUBDIR);
      await fs.rm(tmpDir, { recursive: true, force: true });
      await fs.mkdir(tmpDir, { recursive: true });

      const authLogger = this.logger.child({ component: 'auth' });
      // Concurrency slots: leases in the shared database on PostgreSQL (several servers), in-process on PGlite.
      const slots = createConcurrencySlots(this.db, { leaseTtlS: this.config.auth.concurrencyLeaseTtlS, logger: authLogger });
      // Credit reservations: refunded when their server dies (lease expiry); with the embedded
      // database this process is the only user, so what a previous run left is refunded at start.
      const ledger = new CreditLedger(this.stores.usage.reservations, { ttlS: this.config.auth.concurrencyLeaseTtlS, soleServer: this.db.kind === 'pglite', logger: authLogger });
      this.access = new AccessControl({ accounts: this.stores.accounts, usage: this.stores.usage, config: this.config.auth, logger: authLogger, slots, ledger });
      // Pending refunds settle and leases are freed before the database closes (closers run in reverse).
      this.closers.push({ name: 'access', close: () => this.access.close() });
      await this.access.start();

      this.bus = createBus({ natsUrl: this.config.bus.natsUrl, logger: this.logger.child({ component: 'bus' }) });
      await this.bus.start();
      this.closers.push({ name: 'bus', close: () => this.bus.close() });

      this.vad = await SileroVad.load();
      this.closers.push({ name: 'vad', close: () => this.vad.close() });
      this.speechModels = new SpeechModels({
        registry: this.registry,
        installer: this.installer,
        logger: this.logger.child({ component: 'models' }),
        metrics: this.metrics,
        maxBatch: this.config.inference.maxBatchSize,
        batchWindowMs: this.config.inference.batchWindowMs,
        clock: this.opts.clock,
        inference: {
          executionProvider: this.config.inference.executionProvider,
          intraOpThreads: this.config.inference.intraOpThreads || undefined,
          interOpThreads: this.config.inference.interOpThreads || undefined,
          allowSpinning: this.config.inference.allowSpinning,
          graphCacheDir: this.config.inference.graphCacheDir ?? undefined,
          precision: this.config.inference.whisperPrecision,
          decoderLayout: this.config.inference.whisperDecoderLayout,
          padQuantumS: this.config.live.moonshinePartialPadMs / 1000,
        },
      });
      this.closers.push({ name: 'speech-models', close: () => this.speechModels.close() });
      const work = await this.startWork();
      const dm = this.config.models;
      this.diarizer = await createDiarizer({
        embeddingModelDir: dm.diarizationModel === 'baseline' ? null : this.registry.resolve(dm.diarizationModel, 'diarization').path,
        segmentationModelDir: dm.diarizationSegmentationModel ? this.registry.resolve(dm.diarizationSegmentationModel, 'diarization').path : null,
        intraOpThreads: 1,
      });
      this.closers.push({ name: 'diarizer', close: () => this.diarizer.close() });
      this.logger.info({ method: this.diarizer.method }, 'diarization');
      // AI models load on first use; closed after the HTTP server.
      this.ai = new AiModels({
        registry: this.registry,
        installer: this.installer,
        config: this.config.ai,
        logger: this.logger.child({ component: 'ai' }),
        executionProvider: this.config.inference.executionProvider,
        intraOpThreads: this.config.inference.intraOpThreads,
        metrics: this.metrics,
      });
      this.closers.push({ name: 'ai', close: () => this.ai.close() });
      this.llmServices = new LlmServices({ llm: () => this.ai.llm(), maxTokens: this.config.ai.llm.maxTokens, seq2seqTranslator: (model) => this.ai.translator(model) });
      this.jobs = new JobRegistry();
      this.closers.push({ name: 'jobs', close: () => this.jobs.close() });
      const transcription = new TranscriptionService({
        models: this.speechModels,
        transcriber: new FileTranscriber({ vad: this.vad, diarizer: this.diarizer, work }),
        jobs: this.jobs,
        transcripts: this.stores.transcripts,
      });

      this.server = new HttpServer({
        uws,
        host: this.config.server.host,
        port: this.config.server.port,
        logger: this.logger.child({ component: 'http' }),
        metrics: this.metrics,
        trustProxy: this.config.server.trustProxy,
        maxJsonBodyBytes: this.config.limits.maxJsonBodyBytes,
        shutdownTimeoutMs: this.config.server.shutdownTimeoutMs,
      });
      registerSystemRoutes(this.server, {
        gpu: this.gpu,
        catalog: this.registry,
        metrics: this.metrics,
        firstUse: { autoPull: this.installer.autoPull, configured: () => this.installer.status(this.configuredModels()) },
      });
      registerTranscribeRoutes(this.server, {
        service: transcription,
        access: this.access,
        jobs: this.jobs,
        tmpDir,
        maxUploadBytes: this.config.limits.maxUploadBytes,
        defaultModel: this.config.models.defaultModel,
      });
      registerAccountRoutes(this.server, {
        access: this.access,
        accounts: this.stores.accounts,
        usage: this.stores.usage,
        transcripts: this.stores.transcripts,
        signupEnabled: this.config.auth.signupEnabled,
      });
      registerTranscriptAiRoutes(this.server, { access: this.access, transcripts: this.stores.transcripts, chat: this.stores.transcriptChat, ai: this.ai, services: this.llmServices });
      // One admission decision for both ingests (slow start counts streams of either kind).
      const admission = new StreamAdmission(
        { maxFinalWaitMs: this.config.limits.streamMaxFinalWaitMs, rampIntervalMs: this.config.limits.streamRampIntervalMs, maxLoad: this.config.limits.streamMaxLoad },
        { metrics: this.metrics, logger: this.logger.child({ component: 'admission' }) },
      );
      // One set of live sessions for every transport: one limit, one admission, one lifecycle.
      this.live = new LiveSessions({
        access: this.access,
        transcripts: this.stores.transcripts,
        models: this.speechModels,
        vad: this.vad,
        bus: this.bus,
        followers: new StreamAccess({ bus: this.bus, access: this.access, logger: this.logger.child({ component: 'followers' }) }),
        logger: this.logger.child({ component: 'live' }),
        metrics: this.metrics,
        admission,
        clock: this.opts.clock,
        maxStreams: this.config.limits.maxStreams,
        idleTimeoutS: this.config.limits.streamIdleTimeoutS,
        maxDurationS: this.config.limits.streamMaxDurationS,
        partialMaxNewTokens: this.config.live.partialMaxNewTokens,
        finalEncoder: this.config.live.finalEncoder,
      });
      this.streams = new WsStreamIngest({
        app: this.server.app,
        live: this.live,
        bus: this.bus,
        logger: this.logger.child({ component: 'stream' }),
        defaultModel: this.config.models.defaultModel,
        maxFrameBytes: this.config.limits.streamMaxFrameBytes,
        idleTimeoutS: this.config.limits.streamIdleTimeoutS,
        draining: () => this.server.isDraining,
      });
      await this.streams.start();
      this.webrtc = new WeriftWebRtcIngest({ live: this.live, logger: this.logger.child({ component: 'webrtc' }), webrtc: this.config.webrtc });
      await this.webrtc.start();
      registerWebRtcRoutes(this.server, { ingest: this.webrtc, defaultModel: this.config.models.defaultModel });
      registerAiRoutes(this.server, {
        models: this.ai,
        services: this.llmServices,
        access: this.access,
        maxTextChars: this.config.ai.maxTextChars,
        maxTokens: this.config.ai.llm.maxTokens,
        maxTexts: this.config.ai.embedding.maxTexts,
        maxUploadBytes: this.config.limits.maxUploadBytes,
        maxTtsChars: this.config.ai.tts.maxChars,
        tmpDir,
      });
      registerWebUi(this.server);
      await this.server.start();
      this.closers.push({ name: 'http', close: () => this.server.close() });
      // Before the HTTP server drains: requests waiting for a download get a 503 (the partial files stay for a resume).
      this.closers.push({ name: 'model-installer', close: () => this.installer.close() });
      // Runs first at shutdown: no new connections, every live session flushed (last finals, then
      // {"is_final":true}), the transports closed; then the HTTP server drains its requests.
      this.closers.push({
        name: 'live-sessions',
        close: async () => {
          this.server.stopAccepting();
          await this.live.close();
          await Promise.all([this.streams.close(), this.webrtc.close()]);
        },
      });
      return this;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /**
   * WORK_QUEUE=nats: file chunks go through the JetStream work queue; with WORKER=true this server
   * also serves it, for every ASR model installed here (loaded on its first chunk). Closed before
   * the speech models, so chunks in progress finish (or go back to the queue) first.
   */
  private async startWork(): Promise<SpeechWork | undefined> {
    const w = this.config.work;
    if (w.queue !== 'nats') return undefined;
    const queue = new NatsWorkQueue({ url: this.config.bus.natsUrl!, logger: this.logger.child({ component: 'work' }), ackWaitMs: w.ackWaitMs, timeoutMs: w.timeoutMs });
    await queue.start();
    this.workQueue = queue;
    this.metrics.watchWorkQueue(queue);
    this.closers.push({ name: 'work-queue', close: () => queue.close() });
    if (w.worker) {
      const handler = speechWorkHandler(this.speechModels);
      const models = this.registry
        .list()
        .filter((m) => m.kind === 'asr' && m.installed)
        .map((m) => m.id);
      for (const id of models) await queue.serve(id, handler, { concurrency: 2 * this.config.inference.maxBatchSize });
      if (!models.length) this.logger.warn('WORKER=true but no speech model is installed here: this server takes no work');
    }
    return new QueuedSpeechWork(queue, w.worker ? new LocalSpeechWork() : null);
  }

  /** The models the configuration names: what a newcomer's first requests will need. */
  configuredModels(): ConfiguredModel[] {
    const c = this.config;
    const out: ConfiguredModel[] = [{ role: 'speech (DEFAULT_MODEL)', id: c.models.defaultModel, kind: 'asr' }];
    out.push({ role: 'embeddings (EMBED_MODEL)', id: c.ai.embedding.model, kind: 'embedding' });
    if (!c.ai.llm.baseUrl) out.push({ role: 'chat and AI endpoints (LLM_MODEL)', id: c.ai.llm.model, kind: 'llm' });
    if (c.ai.translation.model) out.push({ role: 'translation (TRANSLATE_MODEL)', id: c.ai.translation.model, kind: 'translation' });
    return out;
  }

  /** One line per configured model at start-up: installed, pulled on first use, or what to run. */
  private logModelStatus(): void {
    const log = this.logger.child({ component: 'models' });
    const where = this.config.models.hubEndpoint ?? 'https://huggingface.co';
    for (const m of this.installer.status(this.configuredModels())) {
      const fields = { model: m.id, role: m.role, firstUse: m.firstUse };
      if (m.firstUse === 'ready') log.info(fields, `model ${m.id} (${m.role}): installed`);
      else if (m.firstUse === 'pull') log.info(fields, `model ${m.id} (${m.role}): not installed yet; it is downloaded from ${where} on first use (AUTO_PULL)`);
      else if (m.firstUse === 'manual') log.warn(fields, `model ${m.id} (${m.role}): not installed and AUTO_PULL is off; install it with: ${pullCommand(m.id)}`);
      else log.warn(fields, `model ${m.id} (${m.role}): unknown (neither a registry id nor a folder of MODELS_DIR ${this.config.paths.modelsDir}); requests that use it get 400`);
    }
  }

  get port(): number {
    return this.server.port;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const { name, close } of this.closers.reverse()) {
      try {
        await close();
      } catch (err) {
        this.logger.error({ err, component: name }, 'close failed');
      }
    }
  }
}
