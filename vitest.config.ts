import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Model and server tests share 2 CPU cores in CI: keep parallelism modest, timeouts generous.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // No test reaches the network by accident: a model pull that a test did not point at its stand-in hub is refused at once.
    env: { HF_ENDPOINT: 'http://127.0.0.1:9' },
  },
});
