/**
 * Plot of a load-test report (loadtest/stream-load.ts): p50/p95 final latency and first-partial
 * latency vs the number of concurrent streams (log2 x axis, log y axis), one line per batch
 * setting. The SVG is built by hand and rasterised with sharp.
 *
 *   npm run loadtest:plot -- [docs/loadtest.json] [--out docs/loadtest-latency.png] [--svg path.svg]
 *   npm run loadtest:plot -- before.json=before after.json=after [--title T] --out cmp.png   (several reports, one line each)
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import type { BatchRun, LoadTestReport, Pcts, RunResult } from './stream-load.ts';

const W = 1200;
const H = 600;
const FONT = 'DejaVu Sans, Arial, Helvetica, sans-serif';
const COLORS = ['#c0392b', '#1f5fa8', '#2e8b57', '#8e44ad', '#d35400'];

interface Panel {
  title: string;
  get: (r: RunResult) => Pcts;
  target?: number;
  x0: number;
  y0: number;
  w: number;
  h: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(Number(v.toPrecision(3)));
    }
  }
  return out;
}

const tickLabel = (v: number) => (v >= 1 ? String(v) : v.toFixed(Math.max(0, -Math.floor(Math.log10(v)))));

export function renderSvg(report: LoadTestReport): string {
  const runs = report.runs.filter((r) => r.results.length);
  const ns = [...new Set(runs.flatMap((r) => r.results.map((x) => x.streams)))].sort((a, b) => a - b);
  const panels: Panel[] = [
    { title: 'Final latency (speech end → final; includes 0.5 s VAD silence)', get: (r) => r.final, target: report.config.targetP95FinalS, x0: 80, y0: 110, w: 480, h: 340 },
    { title: 'First-partial latency (speech start → first partial)', get: (r) => r.firstPartial, x0: 680, y0: 110, w: 480, h: 340 },
  ];
  const all = runs.flatMap((run) => run.results.flatMap((r) => panels.flatMap((p) => [p.get(r).p50, p.get(r).p95]))).filter((v): v is number => v !== null && v > 0);
  const lo = Math.max(0.01, Math.min(0.5, ...all) * 0.8);
  const hi = Math.max(2, ...all) * 1.25;
  const ticks = niceTicks(lo, hi);
  const nMin = Math.min(...ns, 1);
  const nMax = Math.max(...ns, 2);

  const parts: string[] = [];
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  const c = report.config;
  const m = report.machine;
  parts.push(
    `<text x="${W / 2}" y="30" text-anchor="middle" font-size="20" font-weight="bold">Live streaming (WS /v1/stream): latency vs concurrent streams</text>`,
    `<text x="${W / 2}" y="54" text-anchor="middle" font-size="13" fill="#444">${esc(
      `${c.model}, ${c.tokens} tokens/decode (full budget), ${c.audioSeconds.toFixed(1)} s audio/stream (${c.utterancesPerStream} utterances) · ${m.cpus} × ${m.cpuModel} · load avg before ${m.loadavgBefore[0]}`,
    )}</text>`,
  );

  for (const p of panels) {
    const sx = (n: number) => p.x0 + (nMax === nMin ? p.w / 2 : ((Math.log2(n) - Math.log2(nMin)) / (Math.log2(nMax) - Math.log2(nMin))) * p.w);
    const sy = (v: number) => p.y0 + p.h - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * p.h;
    parts.push(`<text x="${p.x0 + p.w / 2}" y="${p.y0 - 12}" text-anchor="middle" font-size="15" font-weight="bold">${esc(p.title)}</text>`);
    parts.push(`<rect x="${p.x0}" y="${p.y0}" width="${p.w}" height="${p.h}" fill="none" stroke="#333"/>`);
    for (const t of ticks) {
      const y = sy(t);
      parts.push(`<line x1="${p.x0}" x2="${p.x0 + p.w}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
      parts.push(`<text x="${p.x0 - 8}" y="${y + 4}" text-anchor="end" font-size="12">${tickLabel(t)}</text>`);
    }
    for (const n of ns) {
      const x = sx(n);
      parts.push(`<line x1="${x}" x2="${x}" y1="${p.y0}" y2="${p.y0 + p.h}" stroke="#eee"/>`);
      parts.push(`<text x="${x}" y="${p.y0 + p.h + 18}" text-anchor="middle" font-size="12">${n}</text>`);
    }
    parts.push(`<text x="${p.x0 + p.w / 2}" y="${p.y0 + p.h + 40}" text-anchor="middle" font-size="13">concurrent streams N (log2)</text>`);
    parts.push(`<text transform="translate(${p.x0 - 48},${p.y0 + p.h / 2}) rotate(-90)" text-anchor="middle" font-size="13">seconds (log scale)</text>`);
    if (p.target !== undefined && p.target > lo && p.target < hi) {
      const y = sy(p.target);
      parts.push(`<line x1="${p.x0}" x2="${p.x0 + p.w}" y1="${y}" y2="${y}" stroke="#777" stroke-width="1.5" stroke-dasharray="2,4"/>`);
      parts.push(`<text x="${p.x0 + p.w - 6}" y="${y + 16}" text-anchor="end" font-size="12" fill="#555">${p.target} s target (p95)</text>`);
    }
    runs.forEach((run, i) => {
      const color = colorOf(run, i);
      for (const q of ['p95', 'p50'] as const) {
        const pts = run.results.map((r) => ({ n: r.streams, v: p.get(r)[q], bad: r.errorCount > 0 || r.missingFinals > 0 }));
        let d = '';
        let pen = false;
        for (const pt of pts) {
          if (pt.v === null || pt.v <= 0) {
            pen = false;
            continue;
          }
          d += `${pen ? 'L' : 'M'}${sx(pt.n).toFixed(1)},${sy(pt.v).toFixed(1)} `;
          pen = true;
        }
        if (d) parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="${q === 'p95' ? 2.5 : 2}" ${q === 'p50' ? 'stroke-dasharray="7,5"' : ''}/>`);
        for (const pt of pts) {
          if (pt.v === null || pt.v <= 0) continue;
          const x = sx(pt.n);
          const y = sy(pt.v);
          const fill = pt.bad ? 'white' : color;
          parts.push(
            q === 'p95'
              ? `<rect x="${x - 4.5}" y="${y - 4.5}" width="9" height="9" fill="${fill}" stroke="${color}" stroke-width="1.5"/>`
              : `<circle cx="${x}" cy="${y}" r="4.5" fill="${fill}" stroke="${color}" stroke-width="1.5"/>`,
          );
        }
      }
    });
  }

  // Legend
  let lx = 80;
  // Entries wrap onto a second row (above the first) when they do not fit in one.
  const widths = runs.flatMap((run) => (['p95', 'p50'] as const).map((q) => 60 + `${q} ${shortLabel(run)}`.length * 7.2));
  const twoRows = widths.reduce((a, b) => a + b, 80) > W - 20;
  let ly = twoRows ? H - 84 : H - 62;
  runs.forEach((run, i) => {
    const color = colorOf(run, i);
    for (const q of ['p95', 'p50'] as const) {
      if (twoRows && lx + 60 + `${q} ${shortLabel(run)}`.length * 7.2 > W - 20 && ly < H - 62) {
        lx = 80;
        ly = H - 62;
      }
      parts.push(`<line x1="${lx}" x2="${lx + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5" ${q === 'p50' ? 'stroke-dasharray="7,5"' : ''}/>`);
      parts.push(q === 'p95' ? `<rect x="${lx + 13.5}" y="${ly - 4.5}" width="9" height="9" fill="${color}"/>` : `<circle cx="${lx + 18}" cy="${ly}" r="4.5" fill="${color}"/>`);
      const label = `${q} ${shortLabel(run)}`;
      parts.push(`<text x="${lx + 44}" y="${ly + 4}" font-size="13">${esc(label)}</text>`);
      lx += 60 + label.length * 7.2;
    }
  });
  parts.push(
    `<text x="80" y="${H - 34}" font-size="12" fill="#555">${esc(
      'Hollow markers: the run had errors or utterances without a final. First-partial percentiles cover the utterances that got a partial.',
    )}</text>`,
  );
  parts.push(`<text x="80" y="${H - 14}" font-size="12" fill="#555">${esc(`${report.command.slice(0, 150)}  —  ${report.createdAt.slice(0, 16).replace('T', ' ')} UTC`)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="${FONT}">\n${parts.join('\n')}\n</svg>\n`;
}

/** Runs of several reports in one plot carry their report's label (and get one color each). */
type LabelledRun = BatchRun & { reportLabel?: string };

function colorOf(run: LabelledRun, i: number): string {
  if (run.reportLabel !== undefined) return COLORS[i % COLORS.length];
  if (run.batch === 1) return COLORS[0];
  if (run.batch !== null && run.batch > 1) return COLORS[1];
  return COLORS[2 + (i % 3)];
}

function shortLabel(run: LabelledRun): string {
  if (run.reportLabel !== undefined) return run.reportLabel;
  if (run.batch === null) return 'external server';
  return run.batch === 1 ? 'per-stream (batch 1)' : `batched (batch ${run.batch})`;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: { out: { type: 'string' }, svg: { type: 'string' }, title: { type: 'string' } },
    allowPositionals: true,
  });
  const out = path.resolve(values.out ?? 'docs/loadtest-latency.png');
  const inputs = (positionals.length ? positionals : ['docs/loadtest.json']).map((arg) => {
    const [file, label] = arg.split('=');
    const input = path.resolve(file);
    const r = JSON.parse(readFileSync(input, 'utf8')) as LoadTestReport;
    if (r.schema !== 'stt-loadtest/1') throw new Error(`${input}: not a load-test report (schema ${String(r.schema)})`);
    return { r, label: label ?? path.basename(file, '.json') };
  });
  // One report: its batch settings. Several: the first report's frame, every report's runs labelled.
  const report: LoadTestReport =
    inputs.length === 1
      ? inputs[0].r
      : {
          ...inputs[0].r,
          command: values.title ?? inputs.map((x) => x.label).join(' vs '),
          runs: inputs.flatMap((x) => x.r.runs.map((run) => ({ ...run, reportLabel: x.label }))),
        };
  const svg = renderSvg(report);
  if (values.svg) writeFileSync(path.resolve(values.svg), svg);
  await sharp(Buffer.from(svg), { density: 144 }).png().toFile(out);
  console.log(`wrote ${path.relative(process.cwd(), out)}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
