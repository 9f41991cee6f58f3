/**
 * A newcomer on a shared address: the anonymous daily limit is used up, so the first live start
 * and upload are refused. The API key field is on the first screen beside Start (not under
 * "Advanced"), the refusal says to paste a key there, and a pasted key survives a reload and
 * opens the stream. Real server (ANON_DAILY_LIMIT=1), real Chromium; screenshot of the hint.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasAudioTools, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { paidKey } from '../helpers/accounts.ts';
import { browserSkipReason, launchChromium, type BrowserSession } from '../helpers/browser.ts';
import { WHISPER_FIXTURE } from '../helpers/paths.ts';
import { screenshot } from '../helpers/screenshots.ts';
import { startTestServer, type TestServer } from './test-server.ts';

// Page-side callbacks see DOM objects; this project's tsconfig has no DOM lib.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type El = any;

const skip = browserSkipReason() ?? (!fs.existsSync(WHISPER_FIXTURE) ? 'needs the whisper-mini-random fixture (MODELS_DIR)' : !(await hasAudioTools()) ? 'needs espeak-ng, sox, ffmpeg' : null);

const HINT = 'Paste your API key in the "API key" field next to Start.';

describe.skipIf(skip !== null)(`API key on the web page, in Chromium${skip ? ` — skipped: ${skip}` : ''}`, () => {
  let srv: TestServer;
  let browser: BrowserSession;
  let speech: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ ANON_DAILY_LIMIT: '1' });
    speech = (await makeSpeechWav('Hello there.', { sampleRate: 48000 })).path;
    browser = await launchChromium({ fakeAudioWav: speech });
    // Someone else at this address (127.0.0.1, as the browser) used today's one anonymous transcription.
    const body = new FormData();
    body.append('file', new Blob([fs.readFileSync(speech)]), 'hello.wav');
    const r = await fetch(`${srv.url}/v1/transcribe`, { method: 'POST', body });
    expect(r.status).toBe(200);
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await srv?.close();
  });

  it('the key field is beside Start on the first screen; the anonymous-limit refusal says to paste a key there; screenshot', async () => {
    const page = await browser.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${srv.url}/`);
    await page.waitForFunction(() => (globalThis as El).document.querySelectorAll('#language option').length > 50);

    // Visible without opening anything, in the live form with Start, inside the first screen (1100x1000).
    expect(await page.isVisible('#api-key')).toBe(true);
    expect(await page.$eval('#api-key', (e: El) => ({ form: e.closest('form')?.id, inDetails: e.closest('details') !== null }))).toEqual({ form: 'live-form', inDetails: false });
    const key = (await page.locator('#api-key').boundingBox())!;
    const start = (await page.locator('#live-start').boundingBox())!;
    expect(key.y + key.height).toBeLessThanOrEqual(1000);
    // Same row as Start on a desktop window.
    expect(Math.abs(key.y + key.height / 2 - (start.y + start.height / 2))).toBeLessThan(start.height);

    await page.check('input[name=transport][value=websocket]');
    await page.click('#live-start');
    await page.waitForSelector('section[data-state="error"] #live-status', { timeout: 30_000 });
    const status = (await page.textContent('#live-status'))!;
    expect(status).toMatch(/^Error: Anonymous limit of 1 transcriptions per day reached/);
    expect(status.endsWith(HINT)).toBe(true);
    expect(await page.getAttribute('#api-key', 'aria-invalid')).toBe('true');
    expect(srv.streams.active).toBe(0);
    await screenshot(page, 'api-key-hint', { docs: true });

    // The upload is refused the same way, with the same hint.
    await page.setInputFiles('#file', speech);
    await page.click('#file-start');
    await page.waitForSelector('section[data-state="error"] #file-status', { timeout: 30_000 });
    const fileStatus = (await page.textContent('#file-status'))!;
    expect(fileStatus).toMatch(/^Error: Anonymous limit of 1 transcriptions per day reached/);
    expect(fileStatus.endsWith(HINT)).toBe(true);

    // Pasting clears the mark; a reload keeps the key (this tab's sessionStorage) and it opens the stream.
    const apiKey = await paidKey(srv.app);
    await page.fill('#api-key', apiKey);
    expect(await page.getAttribute('#api-key', 'aria-invalid')).toBeNull();
    await page.reload();
    await page.waitForFunction(() => (globalThis as El).document.querySelectorAll('#language option').length > 50);
    expect(await page.inputValue('#api-key')).toBe(apiKey);
    await page.check('input[name=transport][value=websocket]');
    await page.click('#live-start');
    await page.waitForSelector('section[data-state="live"]', { timeout: 30_000 });
    expect(srv.streams.active).toBe(1);
    await page.click('#live-stop');
    await page.waitForSelector('section[data-state="ended"]', { timeout: 30_000 });
    await page.close();
  });

  it('with a key in the field, other refusals get no key hint', async () => {
    const page = await browser.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${srv.url}/`);
    await page.waitForFunction(() => (globalThis as El).document.querySelectorAll('#language option').length > 50);
    await page.fill('#api-key', await paidKey(srv.app));
    await page.$eval('#model', (sel: El) => sel.append(new (globalThis as El).Option('no-such-model', 'no-such-model')));
    await page.selectOption('#model', 'no-such-model');
    await page.check('input[name=transport][value=websocket]');
    await page.click('#live-start');
    await page.waitForSelector('section[data-state="error"] #live-status', { timeout: 30_000 });
    const status = (await page.textContent('#live-status'))!;
    expect(status).toMatch(/Unknown asr model 'no-such-model'/);
    expect(status).not.toContain(HINT);
    expect(await page.getAttribute('#api-key', 'aria-invalid')).toBeNull();
    await page.close();
  });

  it('no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
