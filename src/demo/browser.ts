/**
 * Chromium from Debian driven by playwright-core (no browser is downloaded): the demo's self-check and the
 * browser tests share these helpers. playwright-core is loaded on demand, so the product never needs it.
 */
import type { Browser, Page } from 'playwright-core';
import { TEST_PIN } from '../simulators/psc/accounts.js';

export const CHROMIUM = '/usr/bin/chromium';

/** Chromium from Debian, headless, with the flags this closed network needs. */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
}

/** Logs in at the PSC stand-in's e-CPS page (the browser is on it after clicking "Se connecter"). */
export async function pscLogin(page: Page, account = 'Dr Jeanne RADIO, radiologue'): Promise<void> {
  await page.waitForSelector('#account');
  await page.selectOption('#account', { label: account });
  await page.fill('#pin', TEST_PIN);
  await Promise.all([page.waitForURL(/\/app\//), page.click('#connect')]);
}

/** True when a canvas of the layer group holds an image that is not uniform. */
export function imageDrawn(page: Page, group: string): Promise<boolean> {
  return page.evaluate((id) => {
    for (const c of document.querySelectorAll<HTMLCanvasElement>(`#${id} canvas`)) {
      if (!c.width || !c.height) continue;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let min = 255;
      let max = 0;
      for (let i = 0; i < d.length; i += 4 * 7) {
        min = Math.min(min, d[i]!);
        max = Math.max(max, d[i]!);
      }
      if (max - min > 20) return true;
    }
    return false;
  }, group);
}
