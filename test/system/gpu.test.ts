/**
 * detectGpu against real programs: temp executables in nvidia-smi's place that print what a driver
 * prints, fail as a broken driver fails, or hang; and a path with nothing there.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { detectGpu, parseNvidiaSmi } from '../../src/system/gpu.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-gpu-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** An executable shell script named nvidia-smi in a folder of its own. */
function script(name: string, body: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  const file = path.join(dir, 'nvidia-smi');
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

describe('detectGpu', () => {
  it('a driver that lists GPUs: available, with the first GPU’s name and memory', async () => {
    // Answers only the query the server asks; anything else fails.
    const smi = script(
      'two-gpus',
      `[ "$1" = "--query-gpu=name,memory.total" ] && [ "$2" = "--format=csv,noheader,nounits" ] || exit 2
echo "NVIDIA H200, 143771"
echo "NVIDIA L4, 23034"`,
    );
    expect(await detectGpu({ nvidiaSmi: smi })).toEqual({ available: true, name: 'NVIDIA H200', memoryMb: 143771, detail: 'nvidia-smi' });
  });

  it('a driver that fails (exit 9): unavailable, with nvidia-smi’s own reason', async () => {
    const smi = script('broken', `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2\nexit 9`);
    expect(await detectGpu({ nvidiaSmi: smi })).toEqual({
      available: false,
      name: null,
      memoryMb: null,
      detail: "nvidia-smi failed (exit 9): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    });
  });

  it('exit 1 with nothing on stderr: unavailable, naming the exit code', async () => {
    const gpu = await detectGpu({ nvidiaSmi: script('exit1', 'exit 1') });
    expect(gpu).toMatchObject({ available: false, name: null, memoryMb: null });
    expect(gpu.detail).toMatch(/^nvidia-smi failed \(exit 1\): /);
  });

  it('no nvidia-smi at that path: unavailable, no driver', async () => {
    expect(await detectGpu({ nvidiaSmi: path.join(tmp, 'missing', 'nvidia-smi') })).toEqual({
      available: false,
      name: null,
      memoryMb: null,
      detail: 'no NVIDIA driver (nvidia-smi not found)',
    });
  });

  it('a driver that answers with no GPU line: unavailable', async () => {
    expect(await detectGpu({ nvidiaSmi: script('empty', 'echo ""') })).toMatchObject({ available: false, detail: 'nvidia-smi listed no GPU' });
  });

  it('a driver that hangs is given up on after timeoutMs', async () => {
    // The script would sleep for 10 min; the result cannot depend on machine load.
    const gpu = await detectGpu({ nvidiaSmi: script('hangs', 'exec sleep 600'), timeoutMs: 500 });
    expect(gpu).toEqual({ available: false, name: null, memoryMb: null, detail: 'nvidia-smi did not answer within 500 ms' });
  });
});

describe('parseNvidiaSmi', () => {
  it('takes the last comma as the separator (GPU names may contain commas) and rejects junk', () => {
    expect(parseNvidiaSmi('Tesla T4, Rev A, 15360\n')).toEqual({ name: 'Tesla T4, Rev A', memoryMb: 15360 });
    expect(parseNvidiaSmi('No devices were found')).toBeNull();
    expect(parseNvidiaSmi('NVIDIA A100, [N/A]')).toBeNull();
  });
});
