/**
 * The model manifest (`models/manifest.json`): which public models this server knows how to install.
 *
 * Each model id maps to a Hugging Face hub repository, a revision and the files to fetch. `size` and `sha256`
 * are `null` where they have not been read from the hub by a maintainer: the downloader then checks each file
 * against the checksum the hub itself reports for that file (see `downloader.ts`) and records what it verified
 * in `<MODELS_DIR>/<id>/.stt-model.json`. A non-null `sha256` here is authoritative: the download must match it.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** Model ids and folder names: no path separators, no leading dot, nothing that could escape MODELS_DIR. */
export const MODEL_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const MODEL_KINDS = ['asr', 'embedding', 'llm', 'diarization', 'translation'] as const;
export type ModelKind = (typeof MODEL_KINDS)[number];

export const MODEL_SPEEDS = ['very_fast', 'fast', 'standard', 'slow'] as const;
export type ModelSpeed = (typeof MODEL_SPEEDS)[number];

/** `fp32`: the default download; `quantized`: fetched with `--quantized` instead. Files without a variant are always fetched. */
export const FILE_VARIANTS = ['fp32', 'quantized'] as const;
export type FileVariant = (typeof FILE_VARIANTS)[number];

const relPath = z
  .string()
  .min(1)
  .refine((p) => !p.startsWith('/') && !p.includes('\\') && p.split('/').every((s) => s !== '' && s !== '.' && s !== '..'), { message: 'must be a relative path without "." or ".." segments' });

export const ManifestFileSchema = z.strictObject({
  path: relPath,
  /** Bytes, or null where not known (the hub's Content-Length / X-Linked-Size is then checked instead). */
  size: z.number().int().nonnegative().nullable(),
  /** Lower-case hex sha256, or null where not known (the hub's own LFS checksum is then checked instead). */
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits')
    .nullable(),
  variant: z.enum(FILE_VARIANTS).optional(),
  /**
   * Optional files are fetched when the hub has them and skipped on 404, e.g. the `.onnx_data` external-weights
   * file that an ONNX export only has when the model is over protobuf's 2 GB limit.
   */
  optional: z.boolean().optional(),
  note: z.string().optional(),
});

export const ManifestModelSchema = z.strictObject({
  name: z.string().min(1),
  kind: z.enum(MODEL_KINDS),
  languages: z.number().int().positive().nullable(),
  /** The language codes when the model has few (English-only models: ["en"]); absent for Whisper's 99. */
  language_codes: z.array(z.string().regex(/^[a-z]{2,3}$/)).optional(),
  speed: z.enum(MODEL_SPEEDS).nullable(),
  /** Hub repository, `owner/name`. */
  repo: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be owner/name'),
  /** Branch, tag or commit. Pin a commit sha for reproducible installs. */
  revision: z
    .string()
    .min(1)
    .regex(/^[^\s/][^\s]*$/, 'no whitespace'),
  description: z.string().optional(),
  license: z.string().optional(),
  files: z.array(ManifestFileSchema).min(1),
});

export const ManifestSchema = z
  .strictObject({
    $comment: z.union([z.string(), z.array(z.string())]).optional(),
    version: z.literal(1),
    models: z.record(z.string().regex(MODEL_ID_RE, 'invalid model id'), ManifestModelSchema),
  })
  .superRefine((m, ctx) => {
    for (const [id, model] of Object.entries(m.models)) {
      const seen = new Set<string>();
      for (const f of model.files) {
        if (seen.has(f.path)) {
          ctx.addIssue({ code: 'custom', path: ['models', id, 'files'], message: `duplicate file '${f.path}'` });
        }
        seen.add(f.path);
      }
      if (!model.files.some((f) => !f.optional)) {
        ctx.addIssue({ code: 'custom', path: ['models', id, 'files'], message: 'needs at least one required file' });
      }
    }
  });

export type ManifestFile = z.infer<typeof ManifestFileSchema>;
export type ManifestModel = z.infer<typeof ManifestModelSchema>;
export type Manifest = z.infer<typeof ManifestSchema>;

/** `models/manifest.json` in this package. */
export const DEFAULT_MANIFEST_PATH = fileURLToPath(new URL('../../models/manifest.json', import.meta.url));

export class ManifestError extends Error {
  override name = 'ManifestError';
}

/** Validates manifest data (already parsed JSON). Throws ManifestError listing every problem. */
export function parseManifest(data: unknown, source = '(inline data)'): Manifest {
  const r = ManifestSchema.safeParse(data);
  if (!r.success) {
    const issues = r.error.issues
      .map((i) => {
        const where = i.path.map((k) => (typeof k === 'string' && /^[\w$]+$/.test(k) ? k : `[${JSON.stringify(k)}]`)).join('.');
        const msg = i.code === 'invalid_key' ? `invalid model id (must match ${MODEL_ID_RE})` : i.message;
        return `  ${where || '(root)'}: ${msg}`;
      })
      .join('\n');
    throw new ManifestError(`Invalid model manifest ${source}:\n${issues}`);
  }
  return r.data;
}

function parseJsonText(text: string, path: string): Manifest {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(`Cannot parse model manifest ${path}: ${(e as Error).message}`);
  }
  return parseManifest(data, path);
}

export async function loadManifest(path: string = DEFAULT_MANIFEST_PATH): Promise<Manifest> {
  return parseJsonText(await readFile(path, 'utf8'), path);
}

export function loadManifestSync(path: string = DEFAULT_MANIFEST_PATH): Manifest {
  return parseJsonText(readFileSync(path, 'utf8'), path);
}

/** Variants that a model's files mention (empty when no file has a variant). */
export function variantsOf(model: ManifestModel): FileVariant[] {
  return FILE_VARIANTS.filter((v) => model.files.some((f) => f.variant === v));
}

/**
 * Files to fetch for a variant: every file without a variant plus the variant's files. A model with no
 * `quantized` files falls back to its `fp32` files (and vice versa), so `--quantized` on a GGUF is harmless.
 */
export function filesForVariant(model: ManifestModel, variant: FileVariant): ManifestFile[] {
  const available = variantsOf(model);
  const chosen = available.length === 0 || available.includes(variant) ? variant : available[0];
  return model.files.filter((f) => f.variant === undefined || f.variant === chosen);
}
