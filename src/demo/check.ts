import { existsSync } from 'node:fs';
import { find } from '../dicom/scu.js';
import { CHROMIUM, imageDrawn, launchChromium, pscLogin } from './browser.js';
import { INS_OID_TEST, PATIENTS, type DemoNetwork } from './network.js';

export interface StepResult {
  name: string;
  ok: boolean;
  ms: number;
  detail: string;
}

const until = async <T>(what: string, probe: () => Promise<T | undefined>, ms: number): Promise<T> => {
  const t0 = Date.now();
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 300));
  }
};

/**
 * The demo network driven end to end, headless, as a person would use it: each step a line with PASS/FAIL and
 * its time. A step that fails does not stop the others (later ones may still pass); the result says all.
 */
export async function runCheck(net: DemoNetwork, print: (line: string) => void = console.log): Promise<StepResult[]> {
  const results: StepResult[] = [];
  const c = PATIENTS.camille;
  const pacsB = { aeTitle: 'PACSB', host: '127.0.0.1', port: net.pacsB.dicomPort };
  const inPacsB = async (studyUid: string) => (await find(pacsB, 'DRIMBOXB', 'STUDY', { StudyInstanceUID: studyUid, PatientID: '', NumberOfStudyRelatedInstances: '' }))[0];
  const step = async (name: string, run: () => Promise<string>) => {
    const t0 = Date.now();
    let r: StepResult;
    try {
      r = { name, ok: true, ms: Date.now() - t0, detail: await run() };
      r.ms = Date.now() - t0;
    } catch (e) {
      r = { name, ok: false, ms: Date.now() - t0, detail: (e as Error).message.split('\n')[0]!.slice(0, 300) };
    }
    results.push(r);
    print(`${r.ok ? 'PASS' : 'FAIL'}  ${name.padEnd(58)} ${String(r.ms).padStart(6)} ms  ${r.detail}`);
  };
  if (!existsSync(CHROMIUM)) {
    print(`FAIL  Chromium is not installed (${CHROMIUM}): apt-get install -y chromium`);
    return [{ name: 'chromium', ok: false, ms: 0, detail: 'missing' }];
  }
  const browser = await launchChromium();
  try {
    const pg = await (await browser.newContext({ viewport: { width: 1400, height: 900 }, ignoreHTTPSErrors: true })).newPage();
    await step('login at Cabinet B with Pro Santé Connect (stand-in)', async () => {
      await pg.goto(`${net.bUrl}/app/launch?ins=${c.ins}&oid=${INS_OID_TEST}&birthName=${c.family}&firstGiven=${c.given}&birthDate=1980-06-15&sex=F`);
      await pg.click('#psc-login');
      await pscLogin(pg);
      return (await pg.textContent('#current-user'))?.trim() ?? '';
    });
    await step('contextual launch: strict INS traits shown', async () => {
      const identity = (await pg.textContent('#identity')) ?? '';
      if (!identity.includes(c.ins) || !identity.includes(c.family)) throw new Error(`traits not shown: ${identity.slice(0, 120)}`);
      return `${c.family} ${c.given} ${c.ins}`;
    });
    await step('DMP search: CHU A’s exams of the patient listed', async () => {
      const rows = await pg.$$eval('table.exams tbody tr', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.study));
      for (const uid of [net.studies.thorax2025.studyUid, net.studies.knee2026.studyUid]) if (!rows.includes(uid)) throw new Error(`exam ${uid} not listed`);
      return `${rows.length} exams`;
    });
    await step('open CHU A’s exam in the viewer: pixels drawn', async () => {
      await Promise.all([pg.waitForURL(/\/app\/exams\//), pg.click(`tr[data-study="${net.studies.knee2026.studyUid}"] .open-exam`)]);
      await until('an image drawn', async () => ((await imageDrawn(pg, 'layerGroup0')) ? true : undefined), 60_000);
      return 'MR knee from CHU A, streamed through Cabinet B';
    });
    await step('import into Cabinet B’s PACS: found by C-FIND under B’s patient ID', async () => {
      await Promise.all([pg.waitForURL(/\/app\/imports/), pg.click('#import')]);
      const row = await until('the exam in PACS B', async () => {
        const r = await inPacsB(net.studies.knee2026.studyUid);
        return r && Number(r['00201208']?.Value?.[0]) === net.studies.knee2026.files.length ? r : undefined;
      }, 120_000);
      const pid = String(row['00100020']?.Value?.[0]);
      if (pid !== c.ippB) throw new Error(`filed under ${pid}, not ${c.ippB}`);
      return `${net.studies.knee2026.files.length} instances under ${pid}`;
    });
    await step('prefetch: tomorrow’s appointment has its prior in PACS B', async () => {
      const a = await until('the appointment ready', async () => {
        const list = await net.b.prefetcher!.list({ from: new Date(Date.now() - 86400_000), to: new Date(Date.now() + 3 * 86400_000) });
        const x = list.find((y) => y.appointmentId === net.appointment.appointmentId);
        if (x?.state === 'failed' || x?.state === 'nothing') throw new Error(`appointment ${x.state}: ${x.error ?? ''}`);
        return x?.state === 'ready' ? x : undefined;
      }, 180_000);
      const row = await inPacsB(net.studies.thorax2025.studyUid);
      if (!row) throw new Error('the prior is not in PACS B');
      return `${a.priors.length} prior(s) ready before ${new Date(net.appointment.start).toISOString().slice(0, 16)}`;
    });
    await step('automatic route CHU A → Cabinet B, identity reconciled', async () => {
      const row = await until('the routed exam in PACS B', async () => inPacsB(net.studies.routed.studyUid), 180_000);
      const pid = String(row['00100020']?.Value?.[0]);
      if (pid !== PATIENTS.helene.ippB) throw new Error(`filed under ${pid}, not ${PATIENTS.helene.ippB}`);
      return `chest X-ray of LEVEQUE HELENE (CHU A ${PATIENTS.helene.ippA}) filed under ${pid}`;
    });
    await step('patient share link: code, viewer, pixels drawn', async () => {
      if (!net.share) throw new Error('no share link was created');
      const p2 = await (await browser.newContext({ viewport: { width: 1200, height: 800 }, ignoreHTTPSErrors: true })).newPage();
      await p2.goto(net.share.url);
      if (net.share.code) {
        await p2.fill('#access-code', net.share.code);
        await Promise.all([p2.waitForURL(net.share.url), p2.click('#open-share')]);
      }
      await until('an image drawn', async () => ((await imageDrawn(p2, 'layerGroup0')) ? true : undefined), 60_000);
      return 'CT of PETIT JEAN opened from its link';
    });
  } finally {
    await browser.close();
  }
  return results;
}
