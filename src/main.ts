/** Entry point of `npm start`: config → App → signals. */
import { ConfigError, loadConfig } from '../config/config.ts';
import { App } from './app.ts';
import { NativeUwsUnavailableError } from './http/uws.ts';
import { DataDirLockedError } from './store/data-dir-lock.ts';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const app = new App(config);
  try {
    await app.start();
  } catch (err) {
    if (err instanceof NativeUwsUnavailableError) {
      app.logger.fatal(err.message);
      process.exit(3);
    }
    if (err instanceof DataDirLockedError) {
      // Another live process owns the embedded database: refuse before opening it (exit status 4).
      app.logger.fatal({ dataDir: err.dataDir, owner: err.owner }, err.message);
      process.exit(4);
    }
    app.logger.fatal({ err }, 'start-up failed');
    process.exit(1);
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      app.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    app.logger.info({ signal }, 'shutting down: no new connections, finishing in-flight work');
    app
      .close()
      .then(() => {
        app.logger.info('shut down cleanly');
        app.logger.flush?.();
        process.exit(0);
      })
      .catch((err) => {
        app.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
