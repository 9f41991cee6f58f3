/**
 * `npm run models:pull -- <id> [<id>…] [--quantized] [--force] [--allow-unverified]`
 * `npm run models:list [-- --json]`
 * `tsx src/cli/models.ts verify <id>`
 * `npm run models:attentions -- <id or folder> [--no-check]`
 * `npm run models:merge-decoders -- <folder> [--force]`
 *
 * Environment: MODELS_DIR (default ./data/models), HF_ENDPOINT (default https://huggingface.co), HF_TOKEN.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import { pullModel, type PullProgress } from '../models/downloader.ts';
import { UnknownModelError } from '../models/errors.ts';
import { patchWhisperFolder, UnsupportedGraphError } from '../models/onnx-attentions.ts';
import { mergeDecodersInFolder } from '../models/onnx-merge-decoders.ts';
import { ModelRegistry, type ModelEntry } from '../models/registry.ts';

export const DEFAULT_MODELS_DIR = './data/models';

const USAGE = `Usage:
  npm run models:pull -- <id> [<id>...] [--quantized] [--force] [--allow-unverified]
  npm run models:list [-- --json]
  tsx src/cli/models.ts verify <id>
  npm run models:attentions -- <id or folder> [--no-check]
      add cross_attentions.{i} outputs to a Whisper model's decoders (word timestamps by DTW);
      originals kept as *.orig.onnx
  npm run models:merge-decoders -- <folder> [--force]
      write onnx/decoder_model_merged{,_quantized}.onnx from the split decoders (as Optimum's merge_decoders;
      the layout transformers.js loads); an existing merged file is kept unless --force

Environment: MODELS_DIR (default ${DEFAULT_MODELS_DIR}), HF_ENDPOINT (default https://huggingface.co), HF_TOKEN`;

function mb(n: number): string {
  return (n / 1e6).toFixed(1);
}

/** Plain-text table, columns padded. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatList(entries: ModelEntry[]): string {
  const rows = [['ID', 'KIND', 'INSTALLED', 'SOURCE', 'PATH']];
  for (const e of entries) {
    const kind = e.role ? `${e.kind}/${e.role}` : e.kind;
    const inst = e.installed ? (e.variants && e.variants.length > 0 ? `yes (${e.variants.join('+')})` : 'yes') : 'no';
    rows.push([e.id, kind, inst, e.source, e.path ?? '-']);
  }
  return formatTable(rows);
}

function progressReporter(id: string): { update: (p: PullProgress) => void; stop: () => void } {
  if (!process.stderr.isTTY) {
    // Non-interactive (CI, logs): one line per file.
    return {
      update: (p) => {
        if (p.phase === 'done') {
          process.stderr.write(`${id}: ${p.file} ${mb(p.fileBytes)} MB ok${p.resumed ? ' (resumed)' : ''}\n`);
        }
      },
      stop: () => undefined,
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${id} |{bar}| {percentage}% | {done}/{tot} MB | {file}`,
      hideCursor: true,
      stream: process.stderr,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update: (p) => {
      const total = p.total ?? Math.max(p.bytes, 1);
      const payload = {
        file: `${p.phase === 'verify' ? 'verifying ' : p.phase === 'probe' ? 'checking ' : ''}${p.file} (${p.fileIndex + 1}/${p.fileCount})`,
        done: mb(p.bytes),
        tot: p.total === null ? '?' : mb(p.total),
      };
      if (!started) {
        bar.start(total, p.bytes, payload);
        started = true;
      } else {
        bar.setTotal(total);
        bar.update(p.bytes, payload);
      }
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

async function cmdPull(registry: ModelRegistry, ids: string[], flags: Set<string>): Promise<number> {
  if (ids.length === 0) {
    const ids = Object.keys(registry.manifest.models).join(', ');
    process.stderr.write(`models:pull needs a model id. Known ids: ${ids}\n${USAGE}\n`);
    return 2;
  }
  for (const id of ids) {
    const model = registry.manifestModel(id);
    if (!model) {
      const folder = registry.get(id);
      if (folder) {
        process.stderr.write(`'${id}' is a local model folder in ${registry.modelsDir}, not a manifest model: nothing to pull.\n`);
        continue;
      }
      const ids = Object.keys(registry.manifest.models).join(', ');
      process.stderr.write(`Unknown model '${id}'. Models that can be pulled: ${ids}\n`);
      return 2;
    }
    const reporter = progressReporter(id);
    try {
      const r = await pullModel(id, model, {
        modelsDir: registry.modelsDir,
        variant: flags.has('--quantized') ? 'quantized' : 'fp32',
        force: flags.has('--force'),
        allowUnverified: flags.has('--allow-unverified'),
        onProgress: reporter.update,
      });
      reporter.stop();
      if (r.alreadyInstalled) {
        process.stdout.write(`${id} is already installed in ${r.path}\n`);
      } else {
        const how = [...new Set(Object.values(r.lock.files).map((f) => f.verifiedAgainst))].join(', ');
        const resumed = r.resumedFiles.length > 0 ? `, resumed ${r.resumedFiles.length} file(s)` : '';
        process.stdout.write(`${id} installed in ${r.path} (${mb(r.bytesDownloaded)} MB downloaded${resumed}; verified against: ${how})\n`);
      }
    } catch (e) {
      reporter.stop();
      const err = e as Error;
      process.stderr.write(`\nmodels:pull ${id} failed: ${err.message}\n`);
      if (/ENOTFOUND|ECONNREFUSED|EAI_AGAIN|ETIMEDOUT|ENETUNREACH/.test(err.message)) {
        process.stderr.write(`Cannot reach ${process.env.HF_ENDPOINT || 'https://huggingface.co'}. Check the network, or set HF_ENDPOINT to a reachable mirror.\n`);
      }
      if ((err as { retryable?: boolean }).retryable) {
        process.stderr.write(`Run the same command again to resume: finished files and partial data are kept in ${join(registry.modelsDir, id)}.partial\n`);
      }
      return 1;
    }
  }
  return 0;
}

async function cmdVerify(registry: ModelRegistry, ids: string[]): Promise<number> {
  let rc = 0;
  for (const id of ids) {
    const r = await registry.verify(id);
    if (r.source === 'none') {
      process.stdout.write(`${id}: nothing to verify against (no files.json or ${'.stt-model.json'})\n`);
    } else {
      const patched = r.patched.length ? `; ${r.patched.length} patched by models:attentions, original verified` : '';
      if (r.ok) process.stdout.write(`${id}: ok (${r.checked} files checked against ${r.source}${patched})\n`);
      else {
        rc = 1;
        process.stdout.write(`${id}: ${r.mismatches.length} problem(s) (checked against ${r.source}${patched})\n`);
      }
      for (const p of r.patched) {
        process.stdout.write(`  ${p.path}: patched (original verified: ${p.original}; ${p.layers} cross_attentions outputs)\n`);
      }
      for (const m of r.mismatches) {
        process.stdout.write(`  ${m.path}: ${m.problem} expected ${m.expected} got ${m.actual ?? '(missing)'}${m.detail ? ` (${m.detail})` : ''}\n`);
      }
    }
  }
  return rc;
}

/** onnxruntime check of a patched graph, opened from its temp path so that external data resolves as it will. */
async function ortCheck(tmpPath: string, expected: string[]): Promise<void> {
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(tmpPath, { graphOptimizationLevel: 'disabled' });
  try {
    const missing = expected.filter((n) => !session.outputNames.includes(n));
    if (missing.length) throw new Error(`onnxruntime does not see the outputs ${missing.join(', ')}`);
  } finally {
    await session.release();
  }
}

class NoSuchFolderError extends Error {}

/** A folder path (absolute, relative, or containing a slash) or a model id / folder name of MODELS_DIR. */
function resolveModelFolder(registry: ModelRegistry, arg: string): { dir: string; label: string } {
  if (arg.includes('/') || arg.startsWith('.')) {
    const dir = resolve(arg);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new NoSuchFolderError(`No such folder: ${dir}`);
    return { dir, label: dir };
  }
  const entry = registry.resolve(arg, 'asr');
  return { dir: entry.path!, label: arg };
}

async function cmdAttentions(registry: ModelRegistry, args: string[], flags: Set<string>): Promise<number> {
  if (args.length !== 1) {
    process.stderr.write(`models:attentions needs one Whisper model id or folder.\n${USAGE}\n`);
    return 2;
  }
  let target: { dir: string; label: string };
  try {
    target = resolveModelFolder(registry, args[0]);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return e instanceof UnknownModelError || e instanceof NoSuchFolderError ? 2 : 1;
  }
  try {
    const r = await patchWhisperFolder(target.dir, { check: flags.has('--no-check') ? undefined : ortCheck });
    for (const f of r.files) {
      const ext = f.externalData ? ' (external data left as is)' : '';
      if (f.status === 'patched') process.stdout.write(`${f.file}: patched, ${f.layers} cross_attentions outputs${ext}; original kept as ${f.original}\n`);
      else process.stdout.write(`${f.file}: already patched (${f.layers} cross_attentions outputs)\n`);
    }
    const changed = r.files.some((f) => f.status === 'patched');
    process.stdout.write(
      changed
        ? `${target.label}: word timestamps will use cross-attention DTW${r.alignmentHeads ? '' : ' once generation_config.json has alignment_heads (it has none: the engine stays proportional)'}. ` +
            `\`models verify\` reports the patched files as "patched (original verified)": it checks each *.orig.onnx against the install record and that the file is exactly its patch.\n`
        : `${target.label}: already patched, nothing to do.\n`,
    );
    if (!r.alignmentHeads && !changed) process.stdout.write(`note: generation_config.json has no alignment_heads, so the engine cannot use the outputs.\n`);
    return 0;
  } catch (e) {
    const err = e as Error;
    process.stderr.write(`models:attentions ${target.label}: ${err.message}\n`);
    if (err instanceof UnsupportedGraphError) process.stderr.write(`Nothing was changed.\n`);
    return 1;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const flags = new Set(rest.filter((a) => a.startsWith('--')));
  const args = rest.filter((a) => !a.startsWith('--'));
  if (!cmd || cmd === 'help' || cmd === '--help' || flags.has('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return cmd ? 0 : 2;
  }
  const modelsDir = resolve(process.env.MODELS_DIR || DEFAULT_MODELS_DIR);
  let registry: ModelRegistry;
  try {
    registry = await ModelRegistry.create(modelsDir);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
  switch (cmd) {
    case 'list': {
      const entries = registry.list();
      if (flags.has('--json')) process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
      else process.stdout.write(`MODELS_DIR=${modelsDir}\n${formatList(entries)}\n`);
      return 0;
    }
    case 'pull':
      return cmdPull(registry, args, flags);
    case 'attentions':
      return cmdAttentions(registry, args, flags);
    case 'merge-decoders':
      if (args.length !== 1 || !existsSync(args[0])) {
        process.stderr.write(`models:merge-decoders needs one model folder.\n${USAGE}\n`);
        return 2;
      }
      for (const f of mergeDecodersInFolder(resolve(args[0]), { force: flags.has('--force') })) process.stdout.write(`${f.path}: ${f.written ? 'written' : 'exists, kept (--force rewrites it)'}\n`);
      return 0;
    case 'verify':
      try {
        return await cmdVerify(registry, args);
      } catch (e) {
        process.stderr.write(`${(e as Error).message}\n`);
        return e instanceof UnknownModelError ? 2 : 1;
      }
    default:
      process.stderr.write(`Unknown command '${cmd}'.\n${USAGE}\n`);
      return 2;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (rc) => {
      process.exitCode = rc;
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
