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
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .find(Boolean);
  if (!line) return null;
  const idx = line.lastIndexOf(',');
  if (idx < 0) return null;
  const name = line.slice(0, idx).trim();
  const memoryMb = Number(line.slice(idx + 1).trim());
  if (!name || !Number.isFinite(memoryMb)) return null;
  return { name, memoryMb };
}

export interface DetectGpuOptions {
  /** The nvidia-smi to run (default `nvidia-smi` on PATH): tests point it at a script. */
  nvidiaSmi?: string;
  /** A driver that hangs must not hold up start-up (default 5 s). */
  timeoutMs?: number;
}

export async function detectGpu(opts: DetectGpuOptions = {}): Promise<GpuInfo> {
  const bin = opts.nvidiaSmi ?? 'nvidia-smi';
  const timeoutMs = opts.timeoutMs ?? 5000;
  const unavailable = (detail: string): GpuInfo => ({ available: false, name: null, memoryMb: null, detail });
  try {
    const { stdout } = await run(bin, ['--query-gpu=name,memory.total', '--format=csv,noheader,nounits'], { timeout: timeoutMs });
    const parsed = parseNvidiaSmi(stdout);
    if (!parsed) return unavailable('nvidia-smi listed no GPU');
    return { available: true, name: parsed.name, memoryMb: parsed.memoryMb, detail: 'nvidia-smi' };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { killed?: boolean; stderr?: string; code?: string | number };
    if (e.code === 'ENOENT') return unavailable('no NVIDIA driver (nvidia-smi not found)');
    if (e.killed) return unavailable(`nvidia-smi did not answer within ${timeoutMs} ms`);
    // nvidia-smi says why on stderr (e.g. "couldn't communicate with the NVIDIA driver").
    const why =
      String(e.stderr ?? '')
        .split('\n')
        .map((l) => l.trim())
        .find(Boolean) ?? e.message.split('\n')[0];
    return unavailable(`nvidia-smi failed${typeof e.code === 'number' ? ` (exit ${e.code})` : ''}: ${why}`);
  }
}
