/**
 * Test helper around the ONNX cross-attention patcher, which lives in src/models/onnx-attentions.ts (re-exported
 * here): `patchedWhisperFolder` builds a patched temp copy of a fixture folder.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { patchDecoder, patchMergedDecoder } from '../../src/models/onnx-attentions.ts';

export * from '../../src/models/onnx-attentions.ts';

/**
 * A patched copy of a Whisper model folder in a new temp dir: `onnx/decoder_model.onnx` and (if present)
 * `onnx/decoder_model_merged.onnx` get `cross_attentions.{i}` outputs; every other file is symlinked.
 * Returns the folder (caller removes it).
 */
export function patchedWhisperFolder(src: string, opts: { heads: number; merged?: boolean }): string {
  const dir = mkdtempSync(join(tmpdir(), 'whisper-xattn-'));
  const link = (from: string, to: string) => {
    try {
      symlinkSync(from, to);
    } catch {
      copyFileSync(from, to);
    }
  };
  for (const name of readdirSync(src)) {
    if (name === 'onnx' && statSync(join(src, name)).isDirectory()) continue;
    link(join(src, name), join(dir, name));
  }
  const onnxSrc = join(src, 'onnx');
  const onnxDst = join(dir, 'onnx');
  mkdirSync(onnxDst);
  for (const name of readdirSync(onnxSrc)) {
    const from = join(onnxSrc, name);
    if (name === 'decoder_model.onnx') writeFileSync(join(onnxDst, name), patchDecoder(readFileSync(from), opts.heads));
    else if (name === 'decoder_model_merged.onnx' && opts.merged !== false) writeFileSync(join(onnxDst, name), patchMergedDecoder(readFileSync(from), opts.heads));
    else link(from, join(onnxDst, name));
  }
  return dir;
}
