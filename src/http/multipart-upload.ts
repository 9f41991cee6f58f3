/**
 * multipart/form-data → a temp file on disk (never the whole upload in memory) + the text fields.
 * Size limits end the upload with 413 as soon as they are passed; the temp file is removed on any
 * failure, and by the caller's cleanup() otherwise.
 */
import busboy from 'busboy';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ApiError } from './api-error.ts';
import { formatBytes } from '../formats/bytes.ts';
import type { HttpContext } from './http-context.ts';

export interface UploadedFile {
  path: string;
  filename: string;
  mimeType: string;
  size: number;
}

export interface Upload {
  file: UploadedFile | null;
  /** Text fields; a name sent more than once (`timestamp_granularities[]`) becomes an array. */
  fields: Record<string, string | string[]>;
  cleanup(): Promise<void>;
}

export interface UploadOptions {
  tmpDir: string;
  maxFileBytes: number;
  fileField?: string;
  maxFields?: number;
  maxFieldBytes?: number;
}

export async function receiveMultipart(ctx: HttpContext, opts: UploadOptions): Promise<Upload> {
  const fileField = opts.fileField ?? 'file';
  const contentType = ctx.headers['content-type'] ?? '';
  if (!/^multipart\/form-data/i.test(contentType)) {
    throw new ApiError(400, `Send the request as multipart/form-data with the audio in a '${fileField}' field (got Content-Type: ${contentType || 'none'}).`);
  }
  await fsp.mkdir(opts.tmpDir, { recursive: true });
  // Throws at once when the body already failed (client gone during admission, over the limit);
  // piping a destroyed stream into busboy would otherwise wait forever for its end.
  const body = ctx.bodyStream();
  if (body.destroyed) throw ctx.bodyError ?? new ApiError(400, 'The request body was already consumed or closed.');
  const fields: Record<string, string | string[]> = {};
  let file: UploadedFile | null = null;
  let tmpPath: string | null = null;
  const cleanup = async () => {
    if (tmpPath) await fsp.rm(tmpPath, { force: true });
  };

  let bb: busboy.Busboy;
  try {
    bb = busboy({
      headers: { 'content-type': contentType },
      limits: { fileSize: opts.maxFileBytes, files: 1, fields: opts.maxFields ?? 50, fieldSize: opts.maxFieldBytes ?? 64 * 1024 },
    });
  } catch (err) {
    throw new ApiError(400, `Malformed multipart request: ${(err as Error).message}`);
  }

  const writes: Promise<void>[] = [];
  const done = new Promise<void>((resolve, reject) => {
    const fail = (err: unknown) => {
      body.unpipe(bb);
      bb.removeAllListeners('file');
      reject(err);
    };
    bb.on('field', (name, value, info) => {
      if (info.valueTruncated) return fail(new ApiError(413, `Field '${name}' is longer than ${formatBytes(opts.maxFieldBytes ?? 64 * 1024)}.`));
      const prev = fields[name];
      fields[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    });
    bb.on('file', (name, stream, info) => {
      if (name !== fileField || file) {
        stream.resume();
        if (name !== fileField) return fail(new ApiError(400, `Unexpected file field '${name}': send the audio in the '${fileField}' field.`));
        return;
      }
      tmpPath = path.join(opts.tmpDir, `upload-${randomUUID()}${safeExt(info.filename)}`);
      const entry: UploadedFile = { path: tmpPath, filename: info.filename || 'upload', mimeType: info.mimeType, size: 0 };
      file = entry;
      stream.on('data', (c: Buffer) => (entry.size += c.length));
      stream.on('limit', () => fail(new ApiError(413, `File is larger than the limit of ${formatBytes(opts.maxFileBytes)}.`)));
      writes.push(pipeline(stream, fs.createWriteStream(tmpPath)).catch((err) => fail(err)));
    });
    bb.on('filesLimit', () => {});
    bb.on('fieldsLimit', () => fail(new ApiError(413, `Too many form fields (limit ${opts.maxFields ?? 50}).`)));
    bb.on('error', (err) => fail(new ApiError(400, `Malformed multipart request: ${(err as Error).message}`)));
    bb.on('close', () => resolve());
    body.on('error', (err) => fail(err));
    body.pipe(bb);
  });

  try {
    await done;
    await Promise.all(writes);
    const f = file as UploadedFile | null;
    if (f && f.size === 0) throw new ApiError(400, `The uploaded file '${f.filename}' is empty.`);
    return { file: f, fields, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Keeps a short, safe extension (ffmpeg probes content anyway; the extension helps some demuxers). */
function safeExt(filename: string | undefined): string {
  const ext = path.extname(filename ?? '').toLowerCase();
  return /^\.[a-z0-9]{1,5}$/.test(ext) ? ext : '';
}
