/**
 * Writes the live-stream load-test section of docs/benchmarks.md (between
 * `<!-- loadtest:start -->` and `<!-- loadtest:end -->`; the rest of the file is left alone, and the
 * section is appended if the markers are missing) from a report of loadtest/stream-load.ts.
 *
 *   npx tsx loadtest/docs-section.ts [docs/loadtest.json] [--doc docs/benchmarks.md] [--notes extra.md]
 *
 * --notes: a markdown file whose text is added under "Notes on this run" (observations that only a
 * person can make, e.g. what else ran on the machine).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { drainTimeoutFor, markdownTable, type LoadTestReport, type RunResult } from './stream-load.ts';

const START = '<!-- loadtest:start -->';
const END = '<!-- loadtest:end -->';

const s2 = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : x.toFixed(2));

export function renderSection(report: LoadTestReport, extraNotes = ''): string {
  const c = report.config;
  const m = report.machine;
  const drainS = c.drainTimeoutS ?? drainTimeoutFor(c.audioSeconds) / 1000;
  const per = report.runs.find((r) => r.batch === 1);
  const bat = report.runs.find((r) => r.batch !== null && r.batch > 1);
  const lens = c.spans.map(([a, b]) => b - a);
  const gaps = c.spans.slice(1).map(([a], i) => a - c.spans[i][1]);
  const uttDesc =
    `${c.utterancesPerStream} utterance${c.utterancesPerStream > 1 ? 's' : ''} of ${Math.min(...lens).toFixed(1)}–${Math.max(...lens).toFixed(1)} s` +
    (gaps.length ? `, ${Math.min(...gaps).toFixed(1)} s of silence between them` : '');
  const lines: string[] = [];
  lines.push('## Live streaming under load (issue 5)', '');
  lines.push('```sh');
  lines.push(report.command.replace(/^npm run loadtest -- /, 'MODELS_DIR=../shared/models npm run loadtest -- '));
  lines.push('npm run loadtest:plot -- docs/loadtest.json --out docs/loadtest-latency.png');
  lines.push('npx tsx loadtest/docs-section.ts docs/loadtest.json      # rewrites this section');
  lines.push('```', '');
  const busy = m.loadavgBefore[0] > m.cpus * 0.5;
  lines.push(
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memGB} GB, ${m.platform}, node ${m.node}. Load average before the run ${m.loadavgBefore.join(' / ')}, after ${m.loadavgAfter.join(' / ')} (1/5/15 min)` +
      (busy ? ` — **other jobs were running on these ${m.cpus} cores during the run (load average above ${m.cpus / 2}), so the absolute numbers are pessimistic and noisy**` : '') +
      `. The load generator runs on the same machine (loopback).`,
    '',
  );
  lines.push(
    `Scenario: model folder \`${c.modelsDir ? path.join(c.modelsDir, c.model) : c.model}\` (random weights), **${c.tokens} tokens per decode** (random weights never emit end-of-text, so every partial and final decode spends the whole budget). ` +
      `Each stream sends the same ${c.audioSeconds.toFixed(1)} s espeak-ng conversation (${uttDesc}) as PCM16 16 kHz in ${c.frameMs} ms frames at real-time pace, ` +
      `with \`partial_interval_ms: ${c.partialIntervalMs}\`, then \`{"action":"stop"}\`. N streams start together, staggered by ${c.staggerMs}. ` +
      `One fresh server per batch setting (\`MAX_BATCH_SIZE\` 1 = every decode alone, "per-stream"; 8 = batched across streams; \`BATCH_WINDOW_MS\` ${c.batchWindowMs}), warmed up with one stream first.`,
    '',
  );
  lines.push(
    '- **first partial**: from sending the frame that holds an utterance\'s speech start to the first `{"partial"}` of it (needs ≥ 0.25 s of utterance audio and one decode).',
    '- **final**: from sending the frame that holds the speech end to its final. This **includes the 500 ms of silence** the VAD needs to end an utterance; "final − 0.5 s" is the processing and queueing part.',
    `- Finals that did not arrive within ${drainS} s of \`{"action":"stop"}\` count as missing: they rank above every measured latency, and a percentile that falls among them is shown as \`>${drainS}\`.`,
    '- **RTF**: server CPU seconds (utime + stime from /proc) ÷ seconds of audio streamed by all N streams. It includes VAD and partial decodes, whose rate adapts to load (a stream waits 1.5 × its last partial decode time before the next), so RTF can *fall* as N grows.',
    '- CPU % is of one core (200 % = both cores), sampled every 500 ms; mean batch = Δ`stt_batch_size_sum` ÷ Δ`stt_batch_size_count` (partials and finals).',
    '',
  );
  for (const run of report.runs) {
    lines.push(`### ${run.label}`, '');
    lines.push(markdownTable(run, drainS), '');
    lines.push(`Largest N with p95 final latency ≤ ${c.targetP95FinalS} s (and no errors): **${run.largestNWithinTarget ?? 'none'}**.`);
    if (run.serverExit && run.serverExit !== 'code 0') lines.push(`Server exit: ${run.serverExit}.`);
    if (run.serverErrors.length) lines.push(`Server logged ${run.serverErrors.length} error line(s); first: \`${run.serverErrors[0].slice(0, 300)}\``);
    lines.push('');
  }
  lines.push('![Latency vs concurrent streams, per-stream vs batched](loadtest-latency.png)', '');

  if (per && bat) {
    lines.push(`### Batched vs per-stream`, '');
    lines.push('| N | p95 final per-stream | p95 final batched | ratio (per-stream ÷ batched) | RTF per-stream | RTF batched | mean batch (batched) |');
    lines.push('| --- | --- | --- | --- | --- | --- | --- |');
    for (const p of per.results) {
      const b = bat.results.find((x) => x.streams === p.streams);
      if (!b) continue;
      lines.push(
        `| ${p.streams} | ${fmtCensored(p, drainS)} | ${fmtCensored(b, drainS)} | ${ratio(p, b, drainS)} | ${p.rtf?.toFixed(3) ?? 'n/a'} | ${b.rtf?.toFixed(3) ?? 'n/a'} | ${s2(b.meanBatchSize)} |`,
      );
    }
    lines.push('');
    lines.push(
      `Largest N within ${c.targetP95FinalS} s p95: per-stream **${per.largestNWithinTarget ?? 'none'}**, batched **${bat.largestNWithinTarget ?? 'none'}**` +
        (per.largestNWithinTarget && bat.largestNWithinTarget ? ` (× ${(bat.largestNWithinTarget / per.largestNWithinTarget).toFixed(1)})` : '') +
        '.',
      '',
    );
  }

  lines.push('### Notes', '');
  lines.push(
    c.model.includes('random')
      ? `- ${c.model} is a tiny random-weight fixture: a real model costs many times more per decode, so real capacity is far lower than these N. The numbers compare configurations and show how latency degrades under overload; they are not a capacity promise.`
      : `- Decodes of ${c.model} spend at most ${c.tokens} tokens here; real speech usually ends earlier (end-of-text), long utterances may need more.`,
    '- Partials are best effort: under load the scheduler drops stale partials (`dropped partials`) and streams slow their partial rate, so first-partial percentiles cover only the utterances that got a partial ("utterances without a partial" is in docs/loadtest.json). Finals are never dropped; when the CPU cannot keep up they queue, which is what the final-latency tail shows. The runner turns the admission control of the server off (`STREAM_MAX_FINAL_WAIT_MS=0` unless set) to measure past the knee; in production new streams are refused (close 1013) once finals wait over 3 s instead of letting the finals of every stream fall further behind.',
    "- A final also waits for the stream's VAD, which runs on the same CPU: when VAD falls behind real time, the end of an utterance is detected late.",
    `- RSS is the server's resident memory over the run; compare "RSS MB max" across N for growth.`,
  );
  if (extraNotes.trim()) lines.push('', '#### Notes on this run', '', extraNotes.trim());
  lines.push('', `Raw results: [loadtest.json](loadtest.json) (${report.createdAt}).`);
  return `${START}\n${lines.join('\n')}\n${END}`;
}

function fmtCensored(r: RunResult, drainS: number): string {
  return r.final.p95 === null ? `>${drainS}` : r.final.p95.toFixed(2);
}

function ratio(p: RunResult, b: RunResult, drainS: number): string {
  if (b.final.p95 === null) return 'n/a';
  if (p.final.p95 === null) return `> ${(drainS / b.final.p95).toFixed(1)}`;
  return (p.final.p95 / b.final.p95).toFixed(2);
}

/** Replaces the marked section of `doc` (or appends it). */
export function spliceSection(doc: string, section: string): string {
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a >= 0 && b > a) return doc.slice(0, a) + section + doc.slice(b + END.length);
  return `${doc.replace(/\s*$/, '')}${doc.trim() ? '\n\n' : '# Benchmarks\n\n'}${section}\n`;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ options: { doc: { type: 'string' }, notes: { type: 'string' } }, allowPositionals: true });
  const input = path.resolve(positionals[0] ?? 'docs/loadtest.json');
  const docPath = path.resolve(values.doc ?? 'docs/benchmarks.md');
  const report = JSON.parse(readFileSync(input, 'utf8')) as LoadTestReport;
  const notes = values.notes ? readFileSync(path.resolve(values.notes), 'utf8') : '';
  // Read the document just before writing: others edit their own sections of it.
  const doc = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '';
  const tmp = `${docPath}.${process.pid}.tmp`;
  writeFileSync(tmp, spliceSection(doc, renderSection(report, notes)));
  renameSync(tmp, docPath);
  console.log(`wrote the loadtest section of ${path.relative(process.cwd(), docPath)}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
