/**
 * How the page reports results and errors, in real Chromium against the real server: long
 * unbroken strings wrap inside their boxes on a 375 px phone, a failed upload's progress bars say
 * it failed, file and live errors look the same, and counts read "1 speaker" / "2 speakers".
 * Each case saves a screenshot under .tmp/screenshots/ (UPDATE_SCREENSHOT=1 refreshes docs/img/).
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { TEXTS, concatWithGaps, hasAudioTools, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { browserSkipReason, launchChromium, type BrowserSession } from '../helpers/browser.ts';
import { WHISPER_FIXTURE } from '../helpers/paths.ts';
import { screenshot } from '../helpers/screenshots.ts';
import { startTestServer, type TestServer } from './test-server.ts';

// Page-side callbacks see DOM objects; this project's tsconfig has no DOM lib.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type El = any;

const skip = browserSkipReason() ?? (!fs.existsSync(WHISPER_FIXTURE) ? 'needs the whisper-mini-random fixture (MODELS_DIR)' : !(await hasAudioTools()) ? 'needs espeak-ng, sox, ffmpeg' : null);

/** One unbroken 300-character word, as a server message may echo it (a model name, an id). */
const LONG_WORD = 'x'.repeat(300);

describe.skipIf(skip !== null)(`web page feedback in Chromium${skip ? ` — skipped: ${skip}` : ''}`, () => {
  let srv: TestServer;
  let browser: BrowserSession;
  let uploadWav: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    srv = await startTestServer();
    const a = await makeSpeechWav(TEXTS.hello);
    const b = await makeSpeechWav(TEXTS.second);
    // One voice: the baseline diarizer labels one speaker.
    uploadWav = (await concatWithGaps([a.path, b.path], 1, { padStartS: 0.3, padEndS: 0.5 })).path;
    const mic = await makeSpeechWav('Hello there.', { sampleRate: 48000 });
    browser = await launchChromium({ fakeAudioWav: mic.path });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await srv?.close();
  });

  async function openPage(viewport?: { width: number; height: number }): Promise<Page> {
    const page = await browser.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    if (viewport) await page.setViewportSize(viewport);
    await page.goto(`${srv.url}/`);
    // Options load from /v1/models and /v1/languages.
    await page.waitForFunction(() => (globalThis as El).document.querySelectorAll('#language option').length > 50);
    return page;
  }

  /** Adds `value` to a list (#model, #language) and picks it: one the server does not know, so it refuses. */
  async function pickUnknown(page: Page, select: string, value: string): Promise<void> {
    await page.$eval(select, (sel: El, v: string) => sel.append(new (globalThis as El).Option(v, v)), value);
    await page.selectOption(select, value);
  }

  async function upload(page: Page, state: 'done' | 'error'): Promise<void> {
    await page.setInputFiles('#file', uploadWav);
    await page.click('#file-start');
    await page.waitForSelector(`section[data-state="${state}"] #file-status`, { timeout: 90_000 });
  }

  async function liveError(page: Page): Promise<void> {
    await page.click('#live-start');
    await page.waitForSelector('section[data-state="error"] #live-status', { timeout: 30_000 });
  }

  /** Page width beyond the viewport (0: no horizontal scroll). */
  const overflowX = (page: Page) => page.evaluate(() => (globalThis as El).document.scrollingElement.scrollWidth - (globalThis as El).innerWidth);

  it('no horizontal scroll at 375 px, even with a 300-character word in errors, captions and the transcript; screenshot', async () => {
    const page = await openPage({ width: 375, height: 812 });
    expect(await overflowX(page)).toBeLessThanOrEqual(0);

    await pickUnknown(page, '#language', LONG_WORD);
    await liveError(page);
    await upload(page, 'error');
    // The server echoes the code in both errors.
    expect(await page.textContent('#live-status')).toContain(LONG_WORD);
    expect(await page.textContent('#file-status')).toContain(LONG_WORD);
    expect(await overflowX(page)).toBeLessThanOrEqual(0);
    for (const sel of ['#live-status', '#file-status']) {
      const box = await page.$eval(sel, (e: El) => ({ scroll: e.scrollWidth as number, client: e.clientWidth as number }));
      expect(box.scroll, sel).toBeLessThanOrEqual(box.client);
    }
    await screenshot(page, 'phone-long-word-errors', { fullPage: true, docs: true });

    // A transcript and a live caption holding the word: the real upload's segment text, and a
    // final rendered by the page's own CaptionView.
    await page.selectOption('#language', 'en');
    await upload(page, 'done');
    await page.$eval('#transcript .segments .text, #transcript .segments li', (e: El, w: string) => (e.textContent = w), LONG_WORD);
    await page.evaluate(`import('/common.js').then(({ CaptionView }) => new CaptionView(document.querySelector('#live-captions')).handle({ text: '${LONG_WORD}', start: 1, speaker: 'Speaker 1' }))`);
    expect(await page.textContent('#live-captions .finals')).toContain(LONG_WORD);
    expect(await overflowX(page)).toBeLessThanOrEqual(0);
    for (const sel of ['#live-captions', '#transcript']) {
      const box = await page.$eval(sel, (e: El) => ({ scroll: e.scrollWidth as number, client: e.clientWidth as number }));
      expect(box.scroll, sel).toBeLessThanOrEqual(box.client);
    }
    await screenshot(page, 'phone-long-word-transcript', { fullPage: true });
    await page.close();
  });

  it('after a failed upload both progress bars say so, never "waiting for the upload"; screenshot', async () => {
    const page = await openPage();
    await pickUnknown(page, '#model', 'no-such-model');
    await upload(page, 'error');
    expect(await page.textContent('#file-status')).toMatch(/^Error: Unknown asr model 'no-such-model'/);
    const job = await page.textContent('#job-pct');
    const up = await page.textContent('#upload-pct');
    expect(job).toBe('failed');
    // The body may or may not have been sent whole before the refusal.
    expect(['100 %', 'failed']).toContain(up);
    expect(`${up} ${job}`).not.toMatch(/waiting/);
    // In the error colour, as the message below it.
    expect(await page.$eval('#job-pct', (e: El) => (globalThis as El).getComputedStyle(e).color)).toBe('rgb(179, 38, 30)');
    await screenshot(page, 'failed-upload', { selector: '#file-h >> xpath=..' });
    await page.close();
  });

  it('file and live errors share one error style (red, marked), unlike plain status text; screenshot', async () => {
    const page = await openPage();
    const muted = await page.$eval('#live-status', (e: El) => (globalThis as El).getComputedStyle(e).color);
    await pickUnknown(page, '#model', 'no-such-model');
    await liveError(page);
    await upload(page, 'error');
    const look = (sel: string) =>
      page.$eval(sel, (e: El) => {
        const s = (globalThis as El).getComputedStyle(e);
        return { color: s.color, weight: s.fontWeight, border: `${s.borderLeftWidth} ${s.borderLeftStyle} ${s.borderLeftColor}` };
      });
    const live = await look('#live-status');
    const file = await look('#file-status');
    expect(file).toEqual(live);
    // The theme's --error colour (#b3261e in the light scheme), not the grey of plain status text.
    expect(live.color).toBe('rgb(179, 38, 30)');
    expect(live.color).not.toBe(muted);
    expect(live.border).toBe('4px solid rgb(179, 38, 30)');
    // Refusals a key would not lift get no "paste your key" hint (web-api-key.test.ts has those that do).
    expect(await page.textContent('#live-status')).not.toMatch(/Paste your API key/);
    expect(await page.textContent('#file-status')).not.toMatch(/Paste your API key/);
    await screenshot(page, 'errors', { fullPage: true });
    await page.close();
  });

  it('counts agree with their number: "1 speaker", "2 speakers"; screenshot', async () => {
    const page = await openPage();
    await page.selectOption('#model', 'whisper-mini-random');
    await upload(page, 'done');
    const meta = (await page.textContent('#transcript .meta'))!;
    const json = JSON.parse(await page.evaluate(async (href: string) => (await fetch(href)).text(), (await page.getAttribute('#transcript .exports a[data-format=json]', 'href'))!));
    // One voice in the file: the server labels one speaker, and the page says so in the singular.
    expect(json.speakers).toHaveLength(1);
    expect(meta).toMatch(/ · 1 speaker$/);
    expect(meta).toMatch(new RegExp(`^${json.segments.length} segments? `));
    // The page's own wording for other counts (the random-weight model gives one speaker only).
    const words = await page.evaluate(`import('/common.js').then(({ plural }) => [plural(0, 'speaker'), plural(1, 'speaker'), plural(2, 'speaker'), plural(1, 'caption')])`);
    expect(words).toEqual(['0 speakers', '1 speaker', '2 speakers', '1 caption']);
    await screenshot(page, 'speaker-count', { selector: '#transcript' });
    await page.close();
  });

  it('no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
