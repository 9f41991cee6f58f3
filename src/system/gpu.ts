/**
 * What accelerator this server really has: nvidia-smi where the driver is installed, and the
 * onnxruntime execution providers that can actually be used. Detected once at start-up.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface GpuInfo {
  available: boolean;
  name: string | null;
  memoryMb: number | null;
  /** How it was found (or why not), for the start-up log. */
  detail: string;
}

/** Parses `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` output (first GPU). */
export function parseNvidiaSmi(stdout: string): { name: string; memoryMb: number } | null {
  const line = stdout.split('\n').map((l) => l.trim()).find(Boolean);
  if (!line) return null;
  const idx = line.lastIndexOf(',');
  if (idx < 0) return null;
  const name = line.slice(0, idx).trim();
  const memoryMb = Number(line.slice(idx + 1).trim());
  if (!name || !Number.isFinite(memoryMb)) return null;
  return { name, memoryMb };
}

export async function detectGpu(opts: { nvidiaSmi?: string; timeoutMs?: number } = {}): Promise<GpuInfo> {
  const bin = opts.nvidiaSmi ?? 'nvidia-smi';
  try {
    const { stdout } = await run(bin, ['--query-gpu=name,memory.total', '--format=csv,noheader,nounits'], {
      timeout: opts.timeoutMs ?? 5000,
    });
    const parsed = parseNvidiaSmi(stdout);
    if (!parsed) return { available: false, name: null, memoryMb: null, detail: 'nvidia-smi listed no GPU' };
    return { available: true, name: parsed.name, memoryMb: parsed.memoryMb, detail: 'nvidia-smi' };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return {
      available: false,
      name: null,
      memoryMb: null,
      detail: code === 'ENOENT' ? 'no NVIDIA driver (nvidia-smi not found)' : `nvidia-smi failed: ${(err as Error).message.split('\n')[0]}`,
    };
  }
}
