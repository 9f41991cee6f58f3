/**
 * A newcomer's first run on the web page (issue #16): the default model is a registry model that is not installed
 * and AUTO_PULL is on. The page says so before anything is started ("downloaded on first use"), the model is
 * selectable, and the first live start shows the download's progress ("Downloading model … %") until the stream
 * is ready. The hub is the project's stand-in holding the largest file half-way, so the "downloading" screen is
 * deterministic. Real server, real Chromium (the microphone is a speech WAV); screenshot of the download.
 */
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadManifest } from '../../src/models/manifest.ts';
import { hasAudioTools, makeSpeechWav } from '../helpers/audio-fixtures.ts';
import { browserSkipReason, launchChromium, type BrowserSession } from '../helpers/browser.ts';
import { MODELS_DIR } from '../helpers/paths.ts';
import { screenshot } from '../helpers/screenshots.ts';
import { startFixtureHub, type HubServer } from '../models/hub-server.ts';
import { startTestServer, type TestServer } from './test-server.ts';

// Page-side callbacks see DOM objects; this project's tsconfig has no DOM lib.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type El = any;

const ID = 'moonshine-tiny';
const HELD = 'onnx/decoder_model_merged.onnx';
const FIXTURE = path.join(MODELS_DIR, 'moonshine-mini-random');
const skip = browserSkipReason() ?? (!fs.existsSync(FIXTURE) ? 'needs the moonshine-mini-random fixture (MODELS_DIR)' : !(await hasAudioTools()) ? 'needs espeak-ng, sox, ffmpeg' : null);

describe.skipIf(skip !== null)(`first run on the web page, in Chromium${skip ? ` — skipped: ${skip}` : ''}`, () => {
  let hub: HubServer;
  let modelsDir: string;
  let srv: TestServer;
  let browser: BrowserSession;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    hub = await startFixtureHub((await loadManifest()).models[ID].files, FIXTURE);
    modelsDir = fs.mkdtempSync(path.join(tmpdir(), 'stt-models-web-'));
    srv = await startTestServer({ AUTO_PULL: 'true', HF_ENDPOINT: hub.endpoint, HF_TOKEN: '', MODELS_DIR: modelsDir, DEFAULT_MODEL: ID });
    const speech = await makeSpeechWav('Hello there. This is the first run.', { sampleRate: 48000, padStartS: 0.5, padEndS: 1 });
    browser = await launchChromium({ fakeAudioWav: speech.path });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await srv?.close();
    await hub?.close();
    for (const d of [modelsDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it('says the default model is downloaded on first use, and shows the download while the first live stream waits for it', async () => {
    const page = await browser.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${srv.url}/`);
    await page.waitForSelector('#model-status span');
    expect(await page.textContent('#model-status')).toBe(`Default model ${ID}: downloaded on first use.`);
    expect(await page.getAttribute('#model-status span', 'data-first-use')).toBe('pull');
    // With AUTO_PULL a model that is not installed can be chosen; the list says what choosing it means.
    const option = await page.$eval(`#model option[value="${ID}"]`, (o: El) => ({ disabled: o.disabled, text: o.textContent }));
    expect(option).toEqual({ disabled: false, text: expect.stringContaining('(downloaded on first use)') });

    hub.holdOnce.set(HELD, 900_000);
    await page.check('input[name=transport][value=websocket]');
    await page.click('#live-start');
    await page.waitForFunction(() => /^Downloading model moonshine-tiny… [1-9]\d* % \(first use\)$/.test((globalThis as El).document.querySelector('#live-status').textContent));
    const status = (await page.textContent('#live-status'))!;
    const pct = Number(/(\d+) %/.exec(status)![1]);
    expect(pct).toBeGreaterThan(0);
    expect(pct).toBeLessThan(100);
    expect(await page.getAttribute('section:has(#live-status)', 'data-state')).toBe('connecting');
    await screenshot(page, 'first-run-download', { docs: true });

    // Another visitor meanwhile sees the download on the settings card.
    const other = await browser.context.newPage();
    await other.goto(`${srv.url}/`);
    await other.waitForSelector('#model-status span[data-first-use="downloading"]');
    expect(await other.textContent('#model-status')).toMatch(new RegExp(`^Default model ${ID}: downloading now \\d+ %\\.$`));
    await other.close();

    hub.releaseHeld();
    await page.waitForSelector('section[data-state="live"]', { timeout: 120_000 });
    await page.click('#live-stop');
    await page.waitForSelector('section[data-state="ended"]', { timeout: 60_000 });
    await page.reload();
    await page.waitForSelector('#model-status span[data-first-use="ready"]');
    expect(await page.textContent('#model-status')).toBe(`Default model ${ID}: installed.`);
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
