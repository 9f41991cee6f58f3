/** Errors of the model registry and downloader. Those a client can meet are DomainErrors (src/errors.ts). */
import { DomainError } from '../errors.ts';

export function pullCommand(id: string): string {
  return `npm run models:pull -- ${id}`;
}

/** A known model (manifest id) that is not (completely) installed in MODELS_DIR: 'unavailable', logged (the operator must install it). */
export class ModelNotInstalledError extends DomainError {
  override name = 'ModelNotInstalledError';
  readonly code = 'model_not_installed';
  readonly pullCommand: string;
  constructor(
    readonly modelId: string,
    readonly modelsDir?: string,
  ) {
    const cmd = pullCommand(modelId);
    super('unavailable', `Model '${modelId}' is not installed on this server. Install it with: ${cmd}`, { expected: false });
    this.pullCommand = cmd;
  }
}

/** An id that is neither in the manifest nor a model folder in MODELS_DIR (or not of the kind asked for): 'invalid'. */
export class UnknownModelError extends DomainError {
  override name = 'UnknownModelError';
  readonly code = 'unknown_model';
  constructor(
    readonly modelId: string,
    /** Ids a client may use instead (installed ones first). */
    readonly available: string[],
    /** The model kind asked for (asr, llm, …). */
    readonly modelKind?: string,
    detail?: string,
  ) {
    const what = modelKind ? `${modelKind} model` : 'model';
    const list = available.length > 0 ? available.join(', ') : '(none)';
    super('invalid', `${detail ?? `Unknown ${what} '${modelId}'.`} Available ${modelKind ? `${modelKind} ` : ''}models: ${list}`);
  }
}

/** A downloaded file whose sha256 is not the expected one. The file has been deleted. */
export class ChecksumMismatchError extends Error {
  override name = 'ChecksumMismatchError';
  readonly code = 'checksum_mismatch';
  constructor(
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
    /** Where the expected value came from: 'manifest', 'hub' (LFS sha256) or 'hub-git-sha1'. */
    readonly expectedFrom: string,
    readonly algorithm: 'sha256' | 'git-sha1' = 'sha256',
  ) {
    super(`Checksum mismatch for '${file}': expected ${algorithm} ${expected} (from ${expectedFrom}), got ${actual}. ` + `The file was deleted; nothing was installed.`);
  }
}

/** A downloaded file whose size is not the expected one. */
export class SizeMismatchError extends Error {
  override name = 'SizeMismatchError';
  readonly code = 'size_mismatch';
  constructor(
    readonly file: string,
    readonly expected: number,
    readonly actual: number,
    readonly expectedFrom: string,
  ) {
    super(`Size mismatch for '${file}': expected ${expected} bytes (from ${expectedFrom}), got ${actual}. ` + `The file was deleted; nothing was installed.`);
  }
}

/** HTTP / network failure. `retryable` errors keep the partial download for a resume. */
export class DownloadError extends Error {
  override name = 'DownloadError';
  readonly code = 'download_failed';
  constructor(
    message: string,
    readonly url: string,
    readonly httpStatus?: number,
    readonly retryable = false,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Another process is pulling the same model into the same MODELS_DIR. */
export class PullInProgressError extends Error {
  override name = 'PullInProgressError';
  readonly code = 'pull_in_progress';
}
