/**
 * Real Chromium for the end-to-end tests (playwright-core drives the Debian package; no browser
 * download). The microphone is a WAV file (Chromium's fake capture device, looped), permissions
 * are granted without a prompt, and every launch gets a fresh profile.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or null when they can. */
export function browserSkipReason(): string | null {
  if (!fs.existsSync(CHROMIUM_PATH)) return `${CHROMIUM_PATH} is missing (apt-get install -y chromium)`;
  return null;
}

export interface BrowserSession {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Launches headless Chromium with `fakeAudioWav` as the microphone. */
export async function launchChromium(opts: { fakeAudioWav: string }): Promise<BrowserSession> {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stt-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${opts.fakeAudioWav}`,
      '--disable-background-networking',
      '--disable-gpu',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
      // Host candidates as plain addresses (not mDNS names werift would have to resolve).
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--autoplay-policy=no-user-gesture-required',
    ],
    permissions: ['microphone'],
    viewport: { width: 1100, height: 1000 },
    colorScheme: 'light',
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
