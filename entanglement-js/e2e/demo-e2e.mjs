// End-to-end test of the browser demo, in headless Chromium, against a running command-line node
// started with `--policy teams`:
//
//   node e2e/demo-e2e.mjs http://127.0.0.1:PORT/
//
// Prints "ok <step>" per step and "PASS" at the end (exit 0), or "not ok <step>: <why>" (exit 1).
// The JUnit test samples/.../DemoBrowserTest.java starts the node and runs this script.
import { launch, openBoard, moveTo, grabPoint } from './browser.mjs';

const base = process.argv[2];
if (!base) {
  console.error('usage: node e2e/demo-e2e.mjs http://HOST:PORT/');
  process.exit(2);
}
const WAIT = { timeout: 10_000 };

async function step(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok ${name}${detail ? ` (${detail})` : ''}`);
  } catch (e) {
    console.log(`not ok ${name}: ${e.message.split('\n')[0]}`);
    throw e;
  }
}

/** What a page received over its WebSocket, per team, for objects of the given type. */
const receivedTeams = (page) => page.evaluate(() => {
  const teams = {};
  for (const r of window.__received) if (r.type === 'SYNC' && !r.deleted) teams[r.team] = (teams[r.team] ?? 0) + 1;
  return teams;
});

const browser = await launch();
let failed = false;
try {
  const a = await openBoard(browser, base, { client: 'e2e-a', team: 'red', name: 'Ann' });
  const b = await openBoard(browser, base, { client: 'e2e-b', team: 'red', name: 'Bob' });
  const c = await openBoard(browser, base, { client: 'e2e-c', team: 'blue', name: 'Cyd' });
  const s = await openBoard(browser, base, { client: 'e2e-s', team: 'staff', name: 'Sam' });
  const d = await openBoard(browser, base, { client: 'e2e-d', team: 'red', name: 'Dee', slow: true });

  await step('a cursor moved in page A appears in page B', async () => {
    await moveTo(a.page, 300, 200, 5);
    await b.page.waitForFunction(() => {
      const c = window.demo.cursors.get('e2e-a')?.value;
      return c && c.x === 300 && c.y === 200 && document.querySelector('[data-cursor="e2e-a"]');
    }, null, WAIT);
    await s.page.waitForFunction(() => window.demo.cursors.get('e2e-a')?.value.x === 300, null, WAIT);
  });

  await step('red pages never receive blue objects, blue pages never red ones, staff both', async () => {
    await moveTo(c.page, 500, 300, 3); // a blue cursor too
    // Staff sees every team's shapes and cursors: then everything has been sent.
    await s.page.waitForFunction(() => ['e2e-a-1', 'e2e-b-1', 'e2e-c-1', 'e2e-d-1'].every((k) => window.demo.shapes.has(k))
      && window.demo.cursors.get('e2e-c')?.value.x === 500, null, WAIT);
    await b.page.waitForFunction(() => window.demo.shapes.has('e2e-a-1') && window.demo.shapes.has('e2e-d-1'), null, WAIT);
    await c.page.waitForFunction(() => window.demo.shapes.has('e2e-s-1'), null, WAIT);
    const red = await receivedTeams(b.page);
    const blue = await receivedTeams(c.page);
    const staff = await receivedTeams(s.page);
    if (red.blue) throw new Error(`red page B received ${red.blue} blue states`);
    if (blue.red) throw new Error(`blue page C received ${blue.red} red states`);
    if (!red.red || !red.staff) throw new Error(`red page B lacks red or staff states: ${JSON.stringify(red)}`);
    if (!blue.staff) throw new Error(`blue page C lacks staff states: ${JSON.stringify(blue)}`);
    if (!staff.red || !staff.blue) throw new Error(`staff page lacks a team: ${JSON.stringify(staff)}`);
    const domRed = await b.page.locator('[data-team="blue"]').count();
    const domBlue = await c.page.locator('[data-team="red"]').count();
    if (domRed || domBlue) throw new Error(`drawn across teams: red page ${domRed} blue, blue page ${domBlue} red`);
    return `received by red ${JSON.stringify(red)}, blue ${JSON.stringify(blue)}, staff ${JSON.stringify(staff)}`;
  });

  await step('closing the dragging page mid-drag expires the tentative state everywhere', async () => {
    const e = await openBoard(browser, base, { client: 'e2e-e', team: 'red', name: 'Eve' });
    const key = 'e2e-a-3';
    await e.page.waitForFunction((k) => window.demo.shapes.has(k), key, WAIT);
    const from = await grabPoint(e.page, key);
    await moveTo(e.page, from.x, from.y);
    await e.page.mouse.down();
    await moveTo(e.page, from.x + 60, from.y + 60, 5);
    for (const p of [a.page, b.page]) {
      await p.waitForFunction((k) => document.querySelector(`[data-tentative="${k}"]`), key, WAIT);
    }
    const closedAt = Date.now();
    await e.context.close();
    const states = [];
    for (const p of [a.page, b.page]) {
      await p.waitForFunction((k) => window.__transitionEnds.some((t) => t.key === k)
        && !document.querySelector(`[data-tentative="${k}"]`), key, { timeout: 15_000 });
      states.push(await p.evaluate((k) => window.__transitionEnds.filter((t) => t.key === k).map((t) => t.state).join(','), key));
    }
    if (!states.every((st) => st === 'EXPIRED')) throw new Error(`ended as ${states.join(' / ')}, not EXPIRED`);
    return `EXPIRED in pages A and B ${Date.now() - closedAt} ms after the page closed`;
  });
  await step('a drag shows as tentative in the other page, then commits', async () => {
    const key = 'e2e-a-1';
    const from = await grabPoint(b.page, key);
    await moveTo(b.page, from.x, from.y);
    await b.page.mouse.down();
    await moveTo(b.page, from.x + 150, from.y + 80, 10);
    await a.page.waitForFunction((k) => document.querySelector(`[data-tentative="${k}"]`), key, WAIT);
    const target = await b.page.evaluate((k) => [...window.demo.tentatives.get(k).values()].at(-1), key);
    await a.page.waitForFunction(([k, x]) => [...(window.demo.tentatives.get(k)?.values() ?? [])].some((v) => v.x === x),
      [key, target.x], WAIT);
    await b.page.mouse.up();
    await b.page.waitForFunction((k) => window.demo.lastOutcome?.key === k, key, WAIT);
    const outcome = await b.page.evaluate(() => window.demo.lastOutcome);
    if (!outcome.committed) throw new Error(`not committed: ${outcome.code} ${outcome.message}`);
    for (const p of [a.page, b.page, s.page]) {
      await p.waitForFunction(([k, x, y]) => {
        const v = window.demo.shapes.get(k);
        return v.x === x && v.y === y && !window.demo.tentatives.has(k) && !document.querySelector(`[data-tentative="${k}"]`);
      }, [key, target.x, target.y], WAIT);
    }
    return `moved to ${target.x},${target.y}`;
  });

  await step('a drag of a locked shape is rejected by its owner and snaps back', async () => {
    const key = 'e2e-a-2';
    await a.page.locator(`[data-shape="${key}"] .lock`).click();
    await b.page.waitForFunction((k) => window.demo.shapes.get(k)?.locked === true, key, WAIT);
    const before = await b.page.evaluate((k) => window.demo.shapes.get(k), key);
    const from = await grabPoint(b.page, key);
    await moveTo(b.page, from.x, from.y);
    await b.page.mouse.down();
    await moveTo(b.page, from.x - 120, from.y + 60, 8);
    await a.page.waitForFunction((k) => document.querySelector(`[data-tentative="${k}"]`), key, WAIT);
    await b.page.mouse.up();
    await b.page.waitForFunction((k) => window.demo.lastOutcome?.key === k, key, WAIT);
    const outcome = await b.page.evaluate(() => window.demo.lastOutcome);
    if (outcome.committed) throw new Error('a locked shape was moved');
    for (const p of [a.page, b.page]) {
      await p.waitForFunction(([k, x, y]) => {
        const v = window.demo.shapes.get(k);
        return v.x === x && v.y === y && !document.querySelector(`[data-tentative="${k}"]`);
      }, [key, before.x, before.y], WAIT);
    }
    const ends = await a.page.evaluate((k) => window.__transitionEnds.filter((e) => e.key === k).map((e) => e.state), key);
    return `${outcome.code}: ${outcome.message}; owner saw ${ends.join(',')}`;
  });

  await step('a page under a bandwidth limit converges to the final cursor position after a burst', async () => {
    const receivedBefore = await d.page.evaluate(() => window.__received.filter((r) => r.key === 'e2e-a').length);
    const published = await a.page.evaluate(() => window.demo.counts.cursorPublishes);
    for (let i = 0; i <= 120; i++) {
      await moveTo(a.page, 100 + ((i * 7) % 800), 80 + ((i * 13) % 440));
    }
    await moveTo(a.page, 777, 444);
    const burst = (await a.page.evaluate(() => window.demo.counts.cursorPublishes)) - published;
    const started = Date.now();
    await b.page.waitForFunction(() => window.demo.cursors.get('e2e-a')?.value.x === 777, null, WAIT);
    await d.page.waitForFunction(() => {
      const c = window.demo.cursors.get('e2e-a')?.value;
      return c && c.x === 777 && c.y === 444;
    }, null, WAIT);
    const received = (await d.page.evaluate(() => window.__received.filter((r) => r.key === 'e2e-a').length)) - receivedBefore;
    if (received >= burst) throw new Error(`the slow page received ${received} of ${burst} cursor states: nothing coalesced`);
    return `${burst} cursor updates published, the slow page received ${received} and converged ${Date.now() - started} ms after the burst`;
  });

  console.log('PASS');
} catch (e) {
  failed = true;
  console.log(`FAIL ${e.message.split('\n')[0]}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
