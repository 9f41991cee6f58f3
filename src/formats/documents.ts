/**
 * Transcript exports as documents: CSV (one row per segment), DOCX and PDF (title, metadata line,
 * one paragraph per segment with its start time and speaker). Pure builders: a transcript in, the
 * bytes out; the account routes pick one by the export format and send it.
 */
import { Document, HeadingLevel, Packer, Paragraph, TextRun } from 'docx';
import PDFDocument from 'pdfkit';
import type { Transcript } from './transcript.ts';

/** What a document shows: the transcript and the facts of its metadata line. */
export interface TranscriptDocument extends Pick<Transcript, 'language' | 'duration' | 'segments'> {
  /** The uploaded file's name (title "Transcript: name"), or null for a stream. */
  filename: string | null;
  model: string;
  createdAt: Date;
}

function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

/** RFC 4180 field; cells that a spreadsheet would run as a formula get a leading apostrophe. */
function csvField(v: string | number | null | undefined): string {
  let s = v === null || v === undefined ? '' : String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(t: TranscriptDocument): string {
  const rows = [['start', 'end', 'speaker', 'text', 'confidence'].join(',')];
  for (const s of t.segments) rows.push([csvField(s.start), csvField(s.end), csvField(s.speaker ?? ''), csvField(s.text.trim()), csvField(s.confidence)].join(','));
  return rows.join('\r\n') + '\r\n';
}

function titleOf(t: TranscriptDocument): string {
  return t.filename ? `Transcript: ${t.filename}` : 'Transcript';
}

function metaLine(t: TranscriptDocument): string {
  return `Language: ${t.language} · Duration: ${clock(t.duration)} · Model: ${t.model} · Created: ${t.createdAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export async function toDocx(t: TranscriptDocument): Promise<Buffer> {
  const doc = new Document({
    title: titleOf(t),
    creator: 'open-stt-server',
    sections: [
      {
        children: [
          new Paragraph({ text: titleOf(t), heading: HeadingLevel.HEADING_1 }),
          new Paragraph({ children: [new TextRun({ text: metaLine(t), italics: true })] }),
          ...t.segments.map(
            (s) =>
              new Paragraph({
                children: [new TextRun({ text: `[${clock(s.start)}] `, color: '666666' }), ...(s.speaker ? [new TextRun({ text: `${s.speaker}: `, bold: true })] : []), new TextRun(s.text.trim())],
              }),
          ),
        ],
      },
    ],
  });
  return Packer.toBuffer(doc);
}

/**
 * PDF with pdfkit's built-in Helvetica (no font files to ship). Its encoding covers Latin-1/WinAnsi;
 * text in other scripts needs an embedded Unicode font (see docs/accounts.md).
 */
export function toPdf(t: TranscriptDocument): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const doc = new PDFDocument({ size: 'A4', margin: 56, info: { Title: titleOf(t), Creator: 'open-stt-server' } });
    const chunks: Buffer[] = [];
    doc.on('data', (c: Buffer) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
    doc.font('Helvetica-Bold').fontSize(18).text(titleOf(t));
    doc.moveDown(0.3).font('Helvetica-Oblique').fontSize(9).fillColor('#555555').text(metaLine(t));
    doc.moveDown();
    for (const s of t.segments) {
      doc
        .font('Helvetica')
        .fontSize(9)
        .fillColor('#666666')
        .text(`[${clock(s.start)}] `, { continued: true });
      if (s.speaker) doc.font('Helvetica-Bold').fillColor('#000000').fontSize(11).text(`${s.speaker}: `, { continued: true });
      doc.font('Helvetica').fillColor('#000000').fontSize(11).text(s.text.trim());
      doc.moveDown(0.4);
    }
    doc.end();
  });
}
