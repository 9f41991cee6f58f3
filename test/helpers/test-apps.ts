/**
 * Composed Apps for tests, on the fixture models and a temp DATA_DIR each (embedded database),
 * silent logs and no GPU probe. A TestApps collects what it starts; closeAll() (afterAll) closes
 * them in reverse order and removes their folders.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig } from '../../config/config.ts';
import { App } from '../../src/app.ts';
import { MODELS_DIR } from './paths.ts';

const logger = pino({ level: 'silent' });
const gpu = { available: false, name: null, memoryMb: null, detail: 'test' } as never;

export class TestApps {
  private readonly apps: App[] = [];
  private readonly dirs: string[] = [];

  /** Starts an App on 127.0.0.1:0 with DEFAULT_MODEL whisper-mini-random; `env` overrides any variable. */
  async start(env: Record<string, string> = {}): Promise<App> {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-app-'));
    this.dirs.push(dataDir);
    const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', MODELS_DIR, AUTO_PULL: 'false', DATA_DIR: dataDir, DEFAULT_MODEL: 'whisper-mini-random', LOG_LEVEL: 'silent', ...env });
    const app = await new App(config, { logger, gpu }).start();
    this.apps.push(app);
    return app;
  }

  async closeAll(): Promise<void> {
    for (const app of this.apps.splice(0).reverse()) await app.close().catch(() => {});
    for (const d of this.dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  }
}
