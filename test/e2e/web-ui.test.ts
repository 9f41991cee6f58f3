/**
 * The web page, end to end: static serving (types, traversal, caching) over HTTP, then real
 * Chromium with a speech WAV as the microphone: live captions over WebRTC and over the PCM
 * WebSocket (AudioWorklet, resampled in the page), the captions viewer following a live session,
 * and the file upload with progress bars and the transcript view. The random-weight model writes
 * gibberish, so the tests assert that captions appear and finals arrive, not their words.
 * Each run writes a screenshot of the live page to .tmp/screenshot-live.png (the build artefact);
 * `UPDATE_SCREENSHOT=1 npm test` also refreshes the README's copy in docs/.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { opusAvailability } from '../../src/ingest/opus-decoder.ts';
import { TEXTS, concatWithGaps, hasAudioTools, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { browserSkipReason, launchChromium, type BrowserSession } from '../helpers/browser.ts';
import { REPO_ROOT, WHISPER_FIXTURE } from '../helpers/paths.ts';
import { startTestServer, type TestServer } from './test-server.ts';

// Page-side callbacks see DOM objects; this project's tsconfig has no DOM lib.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type El = any;

const SCREENSHOT = path.join(REPO_ROOT, '.tmp', 'screenshot-live.png');
const README_SCREENSHOT = path.join(REPO_ROOT, 'docs', 'screenshot-live.png');
const hasModel = fs.existsSync(WHISPER_FIXTURE);
const tools = await hasAudioTools();

let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer();
});
afterAll(async () => {
  await srv?.close();
});

describe.skipIf(!hasModel)('web page: static files', () => {
  it('serves / and the page files with their content types and security headers', async () => {
    const index = await fetch(`${srv.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(index.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await index.text()).toMatch(/<main id="main">/);
    for (const [p, type] of [
      ['/index.html', 'text/html; charset=utf-8'],
      ['/captions.html', 'text/html; charset=utf-8'],
      ['/app.js', 'text/javascript; charset=utf-8'],
      ['/pcm-worklet.js', 'text/javascript; charset=utf-8'],
      ['/style.css', 'text/css; charset=utf-8'],
    ]) {
      const r = await fetch(`${srv.url}${p}`);
      expect(r.status, p).toBe(200);
      expect(r.headers.get('content-type'), p).toBe(type);
    }
  });

  it('answers If-None-Match with 304', async () => {
    const r = await fetch(`${srv.url}/app.js`);
    const etag = r.headers.get('etag')!;
    expect(etag).toMatch(/^"/);
    const again = await fetch(`${srv.url}/app.js`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
  });

  it('never serves anything outside web/ (traversal, encoded dots, dotfiles, unknown files)', async () => {
    const net = await import('node:net');
    // Raw requests: fetch would normalise the dots away.
    const raw = (target: string) =>
      new Promise<string>((resolve, reject) => {
        const s = net.connect(srv.port, '127.0.0.1', () => s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        let out = '';
        s.on('data', (d) => (out += d.toString()));
        s.on('end', () => resolve(out));
        s.on('error', reject);
      });
    for (const target of ['/../package.json', '/..%2fpackage.json', '/%2e%2e/package.json', '/web/../package.json', '/.env', '/app.js/../../package.json', '/nope.js', '//etc/passwd']) {
      const res = await raw(target);
      expect(res.split('\r\n')[0], target).toMatch(/^HTTP\/1\.1 40[45]/);
      expect(res, target).not.toMatch(/"dependencies"/);
    }
    // The API is not shadowed by the page.
    expect((await fetch(`${srv.url}/health`)).status).toBe(200);
  });
});

const skipBrowser =
  browserSkipReason() ??
  (!hasModel ? 'needs the whisper-mini-random fixture (MODELS_DIR)' : !tools ? 'needs espeak-ng, sox, ffmpeg' : !opusAvailability().ok ? 'needs the native Opus decoder (@discordjs/opus)' : null);

describe.skipIf(skipBrowser !== null)(`web page in Chromium${skipBrowser ? ` — skipped: ${skipBrowser}` : ''}`, () => {
  let browser: BrowserSession;
  let uploadWav: string;
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    // 48 kHz speech with pauses between utterances (Chromium loops the file as the microphone).
    const a = await makeSpeechWav(TEXTS.hello, { sampleRate: 48000 });
    const b = await makeSpeechWav(TEXTS.second, { sampleRate: 48000 });
    const mic = await concatWithGaps([a.path, b.path], 1.5, { padStartS: 0.5, padEndS: 1.5 });
    const a16 = await makeSpeechWav(TEXTS.hello);
    const b16 = await makeSpeechWav(TEXTS.second);
    uploadWav = (await concatWithGaps([a16.path, b16.path], 1, { padStartS: 0.3, padEndS: 0.5 })).path;
    browser = await launchChromium({ fakeAudioWav: mic.path });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
  });

  async function openPage(pathname = '/'): Promise<Page> {
    const page = await browser.context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${pathname}: ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`${pathname}: ${e.message}`));
    await page.goto(`${srv.url}${pathname}`);
    return page;
  }

  async function configure(page: Page): Promise<void> {
    // Options load from /v1/models and /v1/languages.
    await page.waitForFunction(() => (globalThis as El).document.querySelectorAll('#language option').length > 50);
    await page.selectOption('#model', 'whisper-mini-random');
    await page.selectOption('#language', 'en');
    await page.click('summary');
    await page.fill('#max-tokens', '6');
  }

  /** Waits until the element's data-<key> counter reaches n (function form: the page's CSP forbids eval). */
  const atLeast = (page: Page, sel: string, key: string, n: number, timeout: number) =>
    page.waitForFunction(([s, k, min]) => Number((globalThis as El).document.querySelector(s)?.dataset[k] ?? 0) >= min, [sel, key, n] as const, { timeout });
  const dataCount = (page: Page, sel: string, key: string) => page.$eval(sel, (e: El, k: string) => Number(e.dataset[k] ?? 0), key);

  it('live captions over WebRTC, followed by the captions viewer; screenshot', async () => {
    const page = await openPage();
    await configure(page);
    await page.check('input[name=transport][value=webrtc]');
    await page.click('#live-start');
    await page.waitForSelector('section[data-state="live"]', { timeout: 30_000 });
    const sessionId = (await page.textContent('#session-id'))!.trim();
    expect(sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(srv.webrtc.active).toBe(1);
    expect(srv.streams.active).toBe(0);

    // A second tab follows the same session from its start, through the page's link (it carries a share token).
    await page.waitForSelector('#viewer-link[href*="share_token="]', { timeout: 30_000 });
    const link = (await page.getAttribute('#viewer-link', 'href'))!;
    expect(link).toContain(`session=${sessionId}`);
    const viewer = await openPage(`/${link}`);

    await atLeast(page, '#live-captions', 'finals', 2, 90_000);
    await atLeast(viewer, '#captions', 'finals', 2, 30_000);
    expect(await dataCount(page, '#live-captions', 'partials')).toBeGreaterThan(0);
    const texts = await page.$$eval('#live-captions .final .text', (els) => els.map((e) => e.textContent ?? ''));
    expect(texts.every((t) => t.length > 0)).toBe(true);
    // Partials are grey italic, finals are not.
    const style = await page.$eval('#live-captions .partial', (e: El) => (globalThis as El).getComputedStyle(e).fontStyle);
    expect(style).toBe('italic');
    expect(await page.$eval('#live-captions .final', (e: El) => (globalThis as El).getComputedStyle(e).fontStyle)).toBe('normal');

    // Screenshot with a partial on screen if one comes along within a few seconds.
    await page.waitForSelector('#live-captions .partial:not([hidden])', { timeout: 8000 }).catch(() => {});
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: false });
    if (process.env.UPDATE_SCREENSHOT) fs.copyFileSync(SCREENSHOT, README_SCREENSHOT);

    await page.click('#live-stop');
    await page.waitForSelector('section[data-state="ended"]', { timeout: 30_000 });
    await viewer.waitForSelector('#captions[data-state="ended"]', { timeout: 10_000 });
    for (let i = 0; i < 50 && srv.webrtc.sessions().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(srv.webrtc.sessions()).toEqual([]);
    await viewer.close();
    await page.close();
  });

  it('live captions over the PCM WebSocket (AudioWorklet, 16 kHz resampled in the page)', async () => {
    const page = await openPage();
    await configure(page);
    await page.check('input[name=transport][value=websocket]');
    await page.click('#live-start');
    await page.waitForSelector('section[data-state="live"]', { timeout: 30_000 });
    expect(srv.streams.active).toBe(1);
    await atLeast(page, '#live-captions', 'finals', 2, 90_000);
    // Every final has its start time (the worklet's resampling itself is unit-tested in pcm-worklet.test.ts).
    const starts = await page.$$eval('#live-captions .final .time', (els) => els.map((e) => e.textContent));
    expect(starts.length).toBeGreaterThanOrEqual(2);
    await page.click('#live-stop');
    await page.waitForSelector('section[data-state="ended"]', { timeout: 30_000 });
    expect(await page.textContent('#live-status')).toMatch(/Stopped\. \d+ caption/);
    for (let i = 0; i < 50 && srv.streams.active > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(srv.streams.active).toBe(0);
    await page.close();
  });

  it('file upload: progress bars reach 100 %, transcript and exports appear', async () => {
    const page = await openPage();
    await configure(page);
    await page.setInputFiles('#file', uploadWav);
    await page.click('#file-start');
    await page.waitForSelector('#transcript:not([hidden])', { timeout: 90_000 });
    expect(await page.$eval('#upload-bar', (e: El) => e.value as number)).toBe(100);
    expect(await page.$eval('#job-bar', (e: El) => e.value as number)).toBe(100);
    expect(await page.textContent('#upload-pct')).toBe('100 %');
    expect(await page.textContent('#file-status')).toMatch(/^Done/);
    const segments = await page.$$eval('#transcript .segments li', (els) => els.length);
    expect(segments).toBeGreaterThanOrEqual(1);
    const exports = await page.$$eval('#transcript .exports a', (els: El[]) => els.map((a) => ({ href: a.href as string, download: a.download as string })));
    expect(exports.map((e) => e.download)).toEqual(
      expect.arrayContaining([expect.stringMatching(/\.txt$/), expect.stringMatching(/\.srt$/), expect.stringMatching(/\.vtt$/), expect.stringMatching(/\.json$/)]),
    );
    const srt = await page.evaluate(async (href) => (await fetch(href)).text(), exports.find((e) => e.download.endsWith('.srt'))!.href);
    expect(srt).toMatch(/^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n/);
    const vtt = await page.evaluate(async (href) => (await fetch(href)).text(), exports.find((e) => e.download.endsWith('.vtt'))!.href);
    expect(vtt).toMatch(/^WEBVTT\n\n\d\d:\d\d:\d\d\.\d{3} --> /);
    const json = JSON.parse(await page.evaluate(async (href) => (await fetch(href)).text(), exports.find((e) => e.download.endsWith('.json'))!.href));
    expect(json.segments.length).toBe(segments);
    await page.close();
  });

  it('the captions viewer without a session asks for one', async () => {
    const page = await openPage('/captions.html');
    expect(await page.textContent('#follow-status')).toMatch(/Enter the id/);
    expect(await page.getAttribute('#session', 'required')).not.toBeNull();
    await page.close();
  });

  it('no console errors on the pages', () => {
    expect(consoleErrors).toEqual([]);
  });
});
