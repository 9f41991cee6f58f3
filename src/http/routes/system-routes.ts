/** GET /health, /v1/models, /v1/languages, /metrics: no authentication, shapes as in the API reference. */
import type { GpuInfo } from '../../system/gpu.ts';
import { WHISPER_LANGUAGES } from '../../languages.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { HttpServer } from '../http-server.ts';

/** What these routes need to know about models (implemented by the model registry). */
export interface ModelCatalog {
  list(): Array<{
    id: string;
    name: string;
    kind: string;
    languages: number | null;
    speed: string | null;
    installed: boolean;
  }>;
}

export function registerSystemRoutes(server: HttpServer, deps: { gpu: GpuInfo; catalog: ModelCatalog; metrics: Metrics }): void {
  server.route('GET', '/health', () => {
    const draining = server.isDraining;
    return {
      status: draining ? 503 : 200,
      body: {
        status: draining ? 'shutting_down' : 'ok',
        gpu_available: deps.gpu.available,
        gpu_name: deps.gpu.name,
        gpu_memory_mb: deps.gpu.memoryMb,
      },
    };
  });

  server.route('GET', '/v1/models', () => {
    const models = deps.catalog
      .list()
      .filter((m) => m.kind === 'asr')
      .map((m) => ({ id: m.id, name: m.name, languages: m.languages ?? 99, speed: m.speed ?? 'unknown', installed: m.installed }));
    return { body: { models } };
  });

  server.route('GET', '/v1/languages', () => ({
    body: { languages: WHISPER_LANGUAGES.map(([code, name]) => ({ code, name })) },
  }));

  server.route('GET', '/metrics', async () => {
    const { contentType, body } = await deps.metrics.render();
    return { headers: { 'content-type': contentType }, body };
  });
}
