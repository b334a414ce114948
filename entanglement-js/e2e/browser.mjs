// Helpers shared by the browser scripts: a headless Chromium driven by playwright-core, and pages
// of the demo board served by a command-line node (samples: `entanglement node --http ...`).
import { chromium } from 'playwright-core';

/** The system's Chromium (Debian package `chromium`); browsers are never downloaded. */
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/**
 * Opens the board as its own participant, in its own browser context (its own window: no
 * background-tab throttling), and waits until the client is connected.
 */
export async function openBoard(browser, base, { client, team, name, slow = false, viewport = { width: 1280, height: 720 } }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`[${client}] page error: ${e.message}`));
  const q = new URLSearchParams({ client, team, name });
  if (slow) q.set('slow', '1');
  // The board needs its DOM and module scripts, not every subresource. One navigation in about
  // seven CI runs never finished (30 s); a second attempt is logged so that it stays visible.
  const url = `${base}?${q}`;
  try {
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 20_000 });
  } catch (e) {
    console.error(`[${client}] navigation failed (${e.message.split('\n')[0]}); retrying once`);
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 20_000 });
  }
  await page.waitForFunction(() => window.demo?.client?.state === 'connected', null, { timeout: 10_000 });
  return { page, context, client };
}

/** The viewport position of a point of the board (board coordinates: 1000 x 600). */
export function screenPoint(page, x, y) {
  return page.evaluate(([bx, by]) => {
    const m = document.getElementById('board').getScreenCTM();
    return { x: m.a * bx + m.c * by + m.e, y: m.b * bx + m.d * by + m.f };
  }, [x, y]);
}

/** Moves the mouse to a point of the board. */
export async function moveTo(page, x, y, steps = 1) {
  const p = await screenPoint(page, x, y);
  await page.mouse.move(p.x, p.y, { steps });
}

/**
 * A point of the board where a pointer grabs the shape (shapes may overlap): the first point of a
 * grid over the shape whose topmost element belongs to it, in board coordinates, once drawn.
 */
export async function grabPoint(page, key) {
  const found = await page.waitForFunction((k) => {
    const s = window.demo.shapes.get(k);
    if (!s) return null;
    const m = document.getElementById('board').getScreenCTM();
    for (const fy of [0.5, 0.7, 0.3, 0.85, 0.15]) {
      for (const fx of [0.5, 0.3, 0.7, 0.15, 0.85]) {
        const x = s.x + s.w * fx;
        const y = s.y + s.h * fy;
        const hit = document.elementFromPoint(m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f);
        if (hit?.closest('[data-shape]')?.dataset.shape === k && !hit.closest('.lock')) return { x, y };
      }
    }
    return null;
  }, key, { timeout: 5_000 }).catch(() => null);
  if (!found) throw new Error(`shape ${key} cannot be grabbed: not shown or covered`);
  return found.jsonValue();
}
