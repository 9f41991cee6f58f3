import { chromium } from 'playwright-core';
import { startTestServer } from './test-server.ts';
const srv = await startTestServer();
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
const p = await b.newPage({ viewport: { width: 375, height: 812 } });
await p.goto(srv.url + '/');
await p.waitForTimeout(1000);
console.log(await p.evaluate(`[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth).map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join('\\n')`));
await b.close(); await srv.close(); process.exit(0);
