// Screenshots of the browser demo for the documentation, against a running command-line node
// started with `--policy teams` (ideally fresh, `--store mem`):
//
//   node e2e/screenshots.mjs http://127.0.0.1:PORT/ ../docs/images
//
// Opens red, blue and staff pages, moves their cursors, locks a shape, starts a drag of another
// page's shape and, while it is in flight, saves demo-red.png, demo-blue.png and demo-staff.png.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launch, openBoard, moveTo, grabPoint } from './browser.mjs';

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node e2e/screenshots.mjs http://HOST:PORT/ OUTDIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const WAIT = { timeout: 10_000 };

const browser = await launch();
try {
  const ann = await openBoard(browser, base, { client: 'ann', team: 'red', name: 'Ann' });
  const ben = await openBoard(browser, base, { client: 'ben', team: 'red', name: 'Ben', slow: true });
  const cyd = await openBoard(browser, base, { client: 'cyd', team: 'blue', name: 'Cyd' });
  const sam = await openBoard(browser, base, { client: 'sam', team: 'staff', name: 'Sam' });
  const everyone = ['ann-1', 'ben-1', 'cyd-1', 'sam-1'];
  await sam.page.waitForFunction((keys) => keys.every((k) => window.demo.shapes.has(k)), everyone, WAIT);

  await moveTo(cyd.page, 620, 470, 8);
  await moveTo(sam.page, 850, 530, 8);
  await moveTo(ben.page, 160, 520, 8);
  // Ann locks one of her shapes; Ben and Sam see the closed padlock.
  await ann.page.locator('[data-shape="ann-2"] .lock').click();
  await ben.page.waitForFunction(() => window.demo.shapes.get('ann-2')?.locked === true, null, WAIT);

  // Ann drags Ben's shape and holds it: everyone in red and staff sees the dashed tentative position.
  const from = await grabPoint(ann.page, 'ben-1');
  await moveTo(ann.page, from.x, from.y);
  await ann.page.mouse.down();
  await moveTo(ann.page, from.x + 140, from.y + 90, 12);
  for (const p of [ann.page, ben.page, sam.page]) {
    await p.waitForFunction(() => document.querySelector('[data-tentative="ben-1"]'), null, WAIT);
  }
  // The status panels have polled /api/stats since all four tabs joined.
  for (const p of [ben.page, cyd.page, sam.page]) {
    await p.waitForFunction(() => document.querySelectorAll('#peers tbody tr').length >= 4, null, WAIT);
  }
  await moveTo(ann.page, from.x + 150, from.y + 95, 3); // keeps the transition alive (5 s TTL)
  await ben.page.waitForFunction(() => [...(window.demo.tentatives.get('ben-1')?.values() ?? [])].length > 0, null, WAIT);

  for (const [page, file] of [[ben.page, 'demo-red.png'], [cyd.page, 'demo-blue.png'], [sam.page, 'demo-staff.png']]) {
    await page.screenshot({ path: join(outDir, file) });
    console.log(`saved ${join(outDir, file)}`);
  }
  await ann.page.mouse.up();
} finally {
  await browser.close();
}
