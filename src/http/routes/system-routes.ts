/** GET /health, /v1/models, /v1/languages, /metrics: no authentication, shapes as in the API reference. */
import type { ConfiguredModelStatus } from '../../models/model-installer.ts';
import type { GpuInfo } from '../../system/gpu.ts';
import { WHISPER_LANGUAGES } from '../../languages.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { HttpServer } from '../http-server.ts';
import { OpenAiError, openAiErrorBody } from '../openai-errors.ts';

/** What these routes need to know about models (implemented by the model registry). */
export interface ModelCatalog {
  list(): Array<{
    id: string;
    name: string;
    kind: string;
    languages: number | null;
    /** Codes where the model has few (English-only: ["en"]). */
    languageCodes?: string[];
    speed: string | null;
    installed: boolean;
  }>;
}

export function registerSystemRoutes(
  server: HttpServer,
  deps: {
    gpu: GpuInfo;
    catalog: ModelCatalog;
    metrics: Metrics;
    /** The models the configuration names and what their first use does (AUTO_PULL); absent in tests that build routes alone. */
    firstUse?: { autoPull: boolean; configured: () => ConfiguredModelStatus[] };
  },
): void {
  server.route('GET', '/health', () => {
    const draining = server.isDraining;
    return {
      status: draining ? 503 : 200,
      body: {
        status: draining ? 'shutting_down' : 'ok',
        gpu_available: deps.gpu.available,
        gpu_name: deps.gpu.name,
        gpu_memory_mb: deps.gpu.memoryMb,
        // Extension: what a first request will find (installed, downloaded on first use, downloading now).
        ...(deps.firstUse ? { auto_pull: deps.firstUse.autoPull, models: deps.firstUse.configured().map(healthModel) } : {}),
      },
    };
  });

  // The reference's `models` (speech models, its fields) plus OpenAI's list (`object`, `data`: every
  // model of the catalog, so that `models.list()` of the SDKs shows what `model` may name).
  // The catalog has no release dates: `created` is when this server started listing them.
  const created = Math.floor(Date.now() / 1000);
  const openAiModel = (m: ReturnType<ModelCatalog['list']>[number]) => ({ id: m.id, object: 'model', created, owned_by: 'open-stt-server', kind: m.kind, installed: m.installed });
  server.route(
    'GET',
    '/v1/models',
    () => {
      const all = deps.catalog.list();
      // `language_codes` (extension): which languages, where a model has few (Moonshine, English-only Whisper)
      const models = all
        .filter((m) => m.kind === 'asr')
        .map((m) => ({ id: m.id, name: m.name, languages: m.languages ?? 99, ...(m.languageCodes ? { language_codes: m.languageCodes } : {}), speed: m.speed ?? 'unknown', installed: m.installed }));
      return { body: { models, object: 'list', data: all.map(openAiModel) } };
    },
    { errorBody: openAiErrorBody },
  );

  server.route(
    'GET',
    '/v1/models/:id',
    (ctx) => {
      const m = deps.catalog.list().find((e) => e.id === ctx.params.id);
      if (!m) throw new OpenAiError(404, `The model '${ctx.params.id}' does not exist: GET /v1/models lists the models of this server.`, { param: 'model', code: 'model_not_found' });
      return { body: openAiModel(m) };
    },
    { errorBody: openAiErrorBody },
  );

  server.route('GET', '/v1/languages', () => ({
    body: { languages: WHISPER_LANGUAGES.map(([code, name]) => ({ code, name })) },
  }));

  server.route('GET', '/metrics', async () => {
    const { contentType, body } = await deps.metrics.render();
    return { headers: { 'content-type': contentType }, body };
  });
}

/** A configured model in /health: `first_use` says what its first request does; `progress` while it downloads. */
function healthModel(m: ConfiguredModelStatus) {
  return {
    role: m.role,
    id: m.id,
    kind: m.kind,
    installed: m.installed,
    first_use: m.firstUse,
    ...(m.progress ? { progress: { bytes: m.progress.bytes, total: m.progress.total, fraction: m.progress.fraction } } : {}),
  };
}
