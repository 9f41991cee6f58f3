import mammoth from 'mammoth';
import { pdfText } from '../helpers/documents.ts';
import { describe, expect, it } from 'vitest';
import { toCsv, toDocx, toPdf, type TranscriptDocument } from '../../src/formats/documents.ts';

const DOC: TranscriptDocument = {
  filename: 'board meeting.mp3',
  model: 'whisper-mini-random',
  language: 'en',
  duration: 3725.4,
  createdAt: new Date('2025-03-04T05:06:07Z'),
  segments: [
    { start: 0, end: 2.4, text: ' Hello, welcome to the meeting.', speaker: 'Speaker 1', confidence: 0.95, words: [] },
    { start: 3, end: 5.5, text: ' =SUM(A1) "quoted", fine.', speaker: 'Speaker 2', confidence: 0.8, words: [] },
    { start: 3661, end: 3662.5, text: ' -1 and\nmore', speaker: null, confidence: 0.5, words: [] },
  ],
};

describe('document exports (src/formats/documents.ts)', () => {
  it('CSV: RFC 4180 quoting, CRLF rows, formula-like cells defused, no speaker = empty cell', () => {
    expect(toCsv(DOC)).toBe(
      'start,end,speaker,text,confidence\r\n' +
        '0,2.4,Speaker 1,"Hello, welcome to the meeting.",0.95\r\n' +
        '3,5.5,Speaker 2,"\'=SUM(A1) ""quoted"", fine.",0.8\r\n' +
        '3661,3662.5,,"\'-1 and\nmore",0.5\r\n',
    );
    expect(toCsv({ ...DOC, segments: [] })).toBe('start,end,speaker,text,confidence\r\n');
  });

  it('DOCX: title, metadata line and one paragraph per segment (read back with mammoth)', async () => {
    const buf = await toDocx(DOC);
    const { value } = await mammoth.extractRawText({ buffer: buf });
    const lines = value.split('\n').filter((l) => l.trim() !== '');
    expect(lines[0]).toBe('Transcript: board meeting.mp3');
    expect(lines[1]).toBe('Language: en · Duration: 01:02:05 · Model: whisper-mini-random · Created: 2025-03-04 05:06 UTC');
    expect(lines.slice(2)).toEqual(['[00:00:00] Speaker 1: Hello, welcome to the meeting.', '[00:00:03] Speaker 2: =SUM(A1) "quoted", fine.', '[01:01:01] -1 and', 'more']);
    const untitled = await mammoth.extractRawText({ buffer: await toDocx({ ...DOC, filename: null }) });
    expect(untitled.value.split('\n')[0]).toBe('Transcript');
  });

  it('PDF: a PDF whose text (read back with pdf.js) has the title, metadata and segments', async () => {
    const buf = await toPdf(DOC);
    expect(buf.subarray(0, 5).toString()).toBe('%PDF-');
    const text = (await pdfText(buf)).replace(/\s+/g, ' ');
    expect(text).toContain('Transcript: board meeting.mp3');
    expect(text).toContain('Model: whisper-mini-random');
    expect(text).toMatch(/\[00:00:00\] ?Speaker 1: ?Hello, welcome to the meeting\./);
    expect(text).toMatch(/\[01:01:01\] ?-1 and more/);
  });
});
