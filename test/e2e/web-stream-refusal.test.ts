/**
 * A refused live stream, as Chromium sees it: the server accepts the upgrade, sends {"error"} and
 * closes (1008/1013), so the page can show the server's reason instead of "cannot open the
 * WebSocket". A server that requires keys (ANON_DAILY_LIMIT=0) refuses the page's anonymous stream;
 * the captions viewer is refused for a session that does not exist.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { hasAudioTools, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { browserSkipReason, launchChromium, type BrowserSession } from '../helpers/browser.ts';
import { REPO_ROOT, WHISPER_FIXTURE } from '../helpers/paths.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const skip = browserSkipReason() ?? (!fs.existsSync(WHISPER_FIXTURE) ? 'needs the whisper-mini-random fixture (MODELS_DIR)' : !(await hasAudioTools()) ? 'needs espeak-ng, sox, ffmpeg' : null);

describe.skipIf(skip !== null)(`refused streams in Chromium${skip ? ` — skipped: ${skip}` : ''}`, () => {
  let srv: TestServer;
  let browser: BrowserSession;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ ANON_DAILY_LIMIT: '0' });
    const mic = await makeSpeechWav('Hello there.', { sampleRate: 48000 });
    browser = await launchChromium({ fakeAudioWav: mic.path });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await srv?.close();
  });

  async function openPage(pathname: string): Promise<Page> {
    const page = await browser.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${srv.url}${pathname}`);
    return page;
  }

  it("the live page shows the server's reason for refusing a WebSocket stream; screenshot", async () => {
    const page = await openPage('/');
    await page.waitForFunction(() => (globalThis as unknown as { document: { querySelectorAll(s: string): { length: number } } }).document.querySelectorAll('#language option').length > 50);
    await page.check('input[name=transport][value=websocket]');
    await page.click('#live-start');
    await page.waitForSelector('section[data-state="error"]', { timeout: 30_000 });
    const status = (await page.textContent('#live-status')) ?? '';
    // The server's own words (an API key is required), not the browser's "cannot open the WebSocket".
    expect(status).toMatch(/^Error: .*API key/i);
    expect(status).not.toMatch(/cannot open the WebSocket/);
    expect(srv.streams.active).toBe(0);
    fs.mkdirSync(path.join(REPO_ROOT, '.tmp'), { recursive: true });
    await page.screenshot({ path: path.join(REPO_ROOT, '.tmp', 'screenshot-stream-refused.png') });
    await page.close();
  });

  it('the captions viewer shows why it cannot follow', async () => {
    const page = await openPage('/captions.html?session=00000000-0000-4000-8000-000000000000');
    await page.waitForSelector('#captions[data-state="closed"]', { timeout: 30_000 });
    // The server's own words: the same message an HTTP client reads with ?refuse=http.
    const { default: WebSocket } = await import('ws');
    const http = await new Promise<string>((resolve, reject) => {
      const ws = new WebSocket(`${srv.url.replace(/^http/, 'ws')}/v1/stream/00000000-0000-4000-8000-000000000000/captions?refuse=http`);
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve((JSON.parse(text) as { error: string }).error));
      });
      ws.once('open', () => reject(new Error('not refused')));
      ws.once('error', reject);
    });
    expect(await page.textContent('#follow-status')).toBe(`Cannot follow this session: ${http}`);
    await page.close();
  });

  it('no page errors', () => {
    expect(pageErrors).toEqual([]);
  });
});
