/**
 * Screenshots of the browser tests: every run writes .tmp/screenshots/<name>.png (ignored by git,
 * kept as the build artefact); `UPDATE_SCREENSHOT=1` also refreshes the committed copy under
 * docs/img/ for those the docs show.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { REPO_ROOT } from './paths.ts';

export const SCREENSHOT_DIR = path.join(REPO_ROOT, '.tmp', 'screenshots');

/** Saves the page (or `opts.selector`'s element) as .tmp/screenshots/<name>.png; returns its path. */
export async function screenshot(page: Page, name: string, opts: { fullPage?: boolean; selector?: string; docs?: boolean } = {}): Promise<string> {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  if (opts.selector) await page.locator(opts.selector).screenshot({ path: file });
  else await page.screenshot({ path: file, fullPage: opts.fullPage ?? false });
  if (opts.docs && process.env.UPDATE_SCREENSHOT) fs.copyFileSync(file, path.join(REPO_ROOT, 'docs', 'img', `${name}.png`));
  return file;
}
