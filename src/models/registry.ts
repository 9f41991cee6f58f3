/**
 * Model registry: the models this server can use, from the manifest (installable by id) and from any model
 * folder found in MODELS_DIR (addressable by folder name). Reads the disk on every call, so models pulled while
 * the server runs show up without a restart. No lifecycle: construct, call.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { ModelNotInstalledError, UnknownModelError } from './errors.ts';
import { LOCK_FILE, LockFileSchema, sha256File } from './integrity.ts';
import { checkPatchedDecoder, originalName } from './onnx-attentions.ts';
import { DEFAULT_MANIFEST_PATH, filesForVariant, loadManifest, MODEL_ID_RE, variantsOf, type FileVariant, type Manifest, type ManifestModel } from './manifest.ts';

export type { ModelKind } from './manifest.ts';

/** Kinds reported by `list()`: the manifest kinds, or `unknown` for a folder whose kind could not be told. */
export type ModelEntryKind = 'asr' | 'embedding' | 'llm' | 'diarization' | 'translation' | 'unknown';

export interface ModelEntry {
  id: string;
  name: string;
  kind: ModelEntryKind;
  /** Number of languages (99 for multilingual Whisper), null where it does not apply or is not known. */
  languages: number | null;
  /** The codes, where the model has few (Moonshine: ["en"]). */
  languageCodes?: string[];
  speed: string | null;
  installed: boolean;
  /** Absolute folder path when installed, else null. */
  path: string | null;
  source: 'manifest' | 'folder';
  /** Diarization folders: which half of the pipeline the model is. */
  role?: 'speaker-embedding' | 'segmentation';
  /** Manifest models: variants whose files are all present. */
  variants?: FileVariant[];
}

export interface VerifyMismatch {
  path: string;
  problem: 'missing' | 'size' | 'sha256';
  expected: string | number;
  actual: string | number | null;
  /** Why a changed decoder with a kept `*.orig.onnx` still fails (the original differs too, or the file is not its patch). */
  detail?: string;
}

/** A Whisper decoder patched by `models:attentions`: differs from its entry, but its kept original matches it and the file is exactly that original patched. */
export interface VerifyPatched {
  path: string;
  /** the verified original, e.g. `onnx/decoder_model.orig.onnx` */
  original: string;
  /** `cross_attentions.{i}` outputs of the patched file */
  layers: number;
}

export interface VerifyResult {
  id: string;
  ok: boolean;
  /** Where the expected values came from: the fixture's files.json, the install lock file, or nothing to check. */
  source: 'files.json' | 'lock' | 'none';
  checked: number;
  mismatches: VerifyMismatch[];
  /** Files reported as "patched (original verified)": not mismatches. */
  patched: VerifyPatched[];
}

const SKIP_DIR = /(^\.)|(\.partial$)|(\.old-\d+-\d+$)/;

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function listNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

interface FolderInfo {
  kind: ModelEntryKind;
  languages: number | null;
  languageCodes?: string[];
  role?: ModelEntry['role'];
}

/** Tells what a folder holds; null when it is not a model folder. */
export function detectFolderModel(dir: string): FolderInfo | null {
  const top = listNames(dir);
  const onnxSub = isDir(join(dir, 'onnx')) ? listNames(join(dir, 'onnx')) : [];
  const has = (n: string) => top.includes(n);
  const hasOnnx = top.some((n) => n.endsWith('.onnx')) || onnxSub.some((n) => n.endsWith('.onnx'));
  const hasGguf = top.some((n) => n.endsWith('.gguf'));
  if (!has('config.json') && !hasOnnx && !hasGguf && !has('files.json')) return null;

  if (hasGguf) return { kind: 'llm', languages: null };
  if (has('model.onnx') && has('fbank.json')) return { kind: 'diarization', languages: null, role: 'speaker-embedding' };
  if (has('model.onnx') && has('segmentation.json')) return { kind: 'diarization', languages: null, role: 'segmentation' };

  const config = has('config.json') ? (readJson(join(dir, 'config.json')) as Record<string, unknown> | null) : null;
  const modelType = typeof config?.model_type === 'string' ? config.model_type.toLowerCase() : '';
  const archs = Array.isArray(config?.architectures) ? (config.architectures as unknown[]).map(String) : [];
  if (modelType === 'whisper' || archs.some((a) => a.startsWith('Whisper'))) {
    // English-only Whisper checkpoints have a 51864-token vocabulary; multilingual ones 51865 (51866 for large-v3).
    const vocab = typeof config?.vocab_size === 'number' ? config.vocab_size : null;
    return { kind: 'asr', languages: vocab !== null && vocab < 51865 ? 1 : 99, ...(vocab !== null && vocab < 51865 ? { languageCodes: ['en'] } : {}) };
  }
  // Moonshine (UsefulSensors): the public checkpoints are English
  if (modelType === 'moonshine') return { kind: 'asr', languages: 1, languageCodes: ['en'] };
  // T5-family encoder-decoders (MADLAD-400): text-to-text translation, the target chosen by a <2xx> tag
  if ((modelType === 't5' || modelType === 'mt5') && config?.is_encoder_decoder !== false) return { kind: 'translation', languages: null };
  const sentenceTransformers = has('modules.json') || has('sentence_bert_config.json') || has('1_Pooling');
  const encoderTypes = ['bert', 'roberta', 'xlm-roberta', 'mpnet', 'distilbert', 'nomic_bert', 'modernbert', 'e5', 'gte'];
  if (sentenceTransformers || encoderTypes.includes(modelType)) return { kind: 'embedding', languages: null };
  return { kind: 'unknown', languages: null };
}

export class ModelRegistry {
  readonly modelsDir: string;
  readonly manifest: Manifest;

  constructor(opts: { modelsDir: string; manifest: Manifest }) {
    this.modelsDir = resolvePath(opts.modelsDir);
    this.manifest = opts.manifest;
  }

  /** Loads and validates the manifest (default `models/manifest.json`). */
  static async create(modelsDir: string, manifestPath: string = DEFAULT_MANIFEST_PATH): Promise<ModelRegistry> {
    return new ModelRegistry({ modelsDir, manifest: await loadManifest(manifestPath) });
  }

  /** The manifest spec of an id, or undefined for folder models / unknown ids. */
  manifestModel(id: string): ManifestModel | undefined {
    return Object.hasOwn(this.manifest.models, id) ? this.manifest.models[id] : undefined;
  }

  private installedVariants(id: string, model: ManifestModel): FileVariant[] {
    const dir = join(this.modelsDir, id);
    if (!isDir(dir)) return [];
    // Optional files (e.g. `.onnx_data`) exist only for some exports: they are not required.
    const candidates: FileVariant[] = variantsOf(model).length > 0 ? variantsOf(model) : ['fp32'];
    return candidates.filter((v) => filesForVariant(model, v).every((f) => f.optional === true || isFile(join(dir, f.path))));
  }

  private manifestEntry(id: string, model: ManifestModel): ModelEntry {
    const variants = this.installedVariants(id, model);
    const installed = variants.length > 0;
    return {
      id,
      name: model.name,
      kind: model.kind,
      languages: model.languages,
      ...(model.language_codes ? { languageCodes: model.language_codes } : {}),
      speed: model.speed,
      installed,
      path: installed ? join(this.modelsDir, id) : null,
      source: 'manifest',
      variants,
    };
  }

  private folderEntries(): ModelEntry[] {
    const out: ModelEntry[] = [];
    for (const name of listNames(this.modelsDir).sort()) {
      if (SKIP_DIR.test(name) || !MODEL_ID_RE.test(name) || this.manifestModel(name)) continue;
      const entry = this.folderEntry(name);
      if (entry) out.push(entry);
    }
    return out;
  }

  /** The entry of a model folder of MODELS_DIR (not in the manifest); undefined when it holds no model we know. */
  private folderEntry(name: string): ModelEntry | undefined {
    const dir = join(this.modelsDir, name);
    if (!isDir(dir)) return undefined;
    const info = detectFolderModel(dir);
    if (!info) return undefined;
    return {
      id: name,
      name,
      kind: info.kind,
      languages: info.languages,
      ...(info.languageCodes ? { languageCodes: info.languageCodes } : {}),
      speed: null,
      installed: true,
      path: dir,
      source: 'folder',
      ...(info.role ? { role: info.role } : {}),
    };
  }

  /** Every manifest model (installed or not) followed by every model folder of MODELS_DIR not in the manifest. */
  list(): ModelEntry[] {
    const manifest = Object.entries(this.manifest.models).map(([id, m]) => this.manifestEntry(id, m));
    return [...manifest, ...this.folderEntries()];
  }

  /** The entry of a manifest id or folder name, installed or not; undefined when unknown. */
  get(idOrFolder: string): ModelEntry | undefined {
    if (!MODEL_ID_RE.test(idOrFolder)) return undefined;
    const m = this.manifestModel(idOrFolder);
    if (m) return this.manifestEntry(idOrFolder, m);
    if (SKIP_DIR.test(idOrFolder)) return undefined;
    return this.folderEntry(idOrFolder);
  }

  /**
   * The installed model for a request. Throws UnknownModelError ('invalid') for an unknown id or one of another kind,
   * ModelNotInstalledError ('unavailable', message with the pull command) for a manifest model that is not installed.
   */
  resolve(idOrFolder: string, kind?: string): ModelEntry {
    const entry = this.get(idOrFolder);
    const available = () => {
      const all = this.list().filter((e) => kind === undefined || e.kind === kind);
      const installed = all.filter((e) => e.installed).map((e) => e.id);
      const pullable = all.filter((e) => !e.installed).map((e) => `${e.id} (not installed)`);
      return [...installed, ...pullable];
    };
    if (!entry) throw new UnknownModelError(idOrFolder, available(), kind);
    if (kind !== undefined && entry.kind !== kind) {
      throw new UnknownModelError(idOrFolder, available(), kind, `Model '${idOrFolder}' is a ${entry.kind} model, not a ${kind} model.`);
    }
    if (!entry.installed) throw new ModelNotInstalledError(entry.id, this.modelsDir);
    return entry;
  }

  /**
   * Checks an installed model's files: against `files.json` (`path -> [size, sha256]`, fixture folders) when
   * present, else against the install lock file `.stt-model.json`. `ok` with `source: 'none'` means there was
   * nothing to check against. Throws like `resolve` for unknown / not installed ids.
   *
   * A Whisper decoder `X.onnx` patched by `models:attentions` differs from its entry; it counts as `patched`
   * (not a mismatch) when `X.orig.onnx` exists and matches the entry and `X.onnx` is exactly that original
   * patched (recomputed, see `checkPatchedDecoder`). Anything else stays a mismatch, with a `detail`.
   */
  async verify(idOrFolder: string): Promise<VerifyResult> {
    const entry = this.resolve(idOrFolder);
    const dir = entry.path!;
    let expected: Record<string, { size: number; sha256: string }> | null = null;
    let source: VerifyResult['source'] = 'none';
    const filesJson = readJson(join(dir, 'files.json'));
    if (filesJson && typeof filesJson === 'object') {
      expected = {};
      for (const [p, v] of Object.entries(filesJson as Record<string, unknown>)) {
        if (Array.isArray(v) && typeof v[0] === 'number' && typeof v[1] === 'string') expected[p] = { size: v[0], sha256: v[1] };
      }
      source = 'files.json';
    } else {
      const lock = LockFileSchema.safeParse(readJson(join(dir, LOCK_FILE)));
      if (lock.success) {
        expected = lock.data.files;
        source = 'lock';
      }
    }
    const mismatches: VerifyMismatch[] = [];
    const patched: VerifyPatched[] = [];
    let checked = 0;
    if (expected) {
      const root = resolvePath(dir);
      for (const [p, e] of Object.entries(expected)) {
        const abs = resolvePath(root, p);
        if (!abs.startsWith(root + '/')) {
          mismatches.push({ path: p, problem: 'missing', expected: e.sha256, actual: null });
          continue;
        }
        checked++;
        if (!existsSync(abs) || !isFile(abs)) {
          mismatches.push({ path: p, problem: 'missing', expected: e.sha256, actual: null });
          continue;
        }
        const size = statSync(abs).size;
        let mismatch: VerifyMismatch | null = null;
        if (size !== e.size) mismatch = { path: p, problem: 'size', expected: e.size, actual: size };
        else {
          const sha = await sha256File(abs);
          if (sha !== e.sha256.toLowerCase()) mismatch = { path: p, problem: 'sha256', expected: e.sha256, actual: sha };
        }
        if (!mismatch) continue;
        // A decoder patched by models:attentions: its original is kept next to it.
        const orig = p.endsWith('.onnx') && !p.endsWith('.orig.onnx') ? originalName(p) : null;
        if (orig && isFile(resolvePath(root, orig))) {
          const origAbs = resolvePath(root, orig);
          if (statSync(origAbs).size !== e.size || (await sha256File(origAbs)) !== e.sha256.toLowerCase()) {
            mismatch.detail = `${orig} does not match this entry either`;
          } else {
            const c = await checkPatchedDecoder(root, p);
            if (c.ok) {
              patched.push({ path: p, original: c.original, layers: c.layers });
              continue;
            }
            mismatch.detail = `${orig} matches this entry, but the file is ${c.reason}`;
          }
        }
        mismatches.push(mismatch);
      }
    }
    return { id: entry.id, ok: mismatches.length === 0, source, checked, mismatches, patched };
  }
}
