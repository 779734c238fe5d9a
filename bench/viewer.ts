/**
 * npm run bench:viewer — time to the first image and to the whole series in OpenDRIM's viewer (Debian Chromium)
 * for a 300-slice 512x512 CT held by a source DRIMbox on the same machine (its PACS: Orthanc), cold (the
 * images go Orthanc -> CHU A -> Cabinet B -> browser) and warm (second opening, from B's cache), beside the
 * time Orthanc itself takes to deliver the same series over its own WADO-RS (the raw transfer, no viewer).
 * Prints figures; asserts nothing (performance is not a test).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateStudy } from '../test/harness/gen-study.js';
import { imageDrawn, launchChromium, pscLogin, startDrimNetwork } from '../test/harness/drim-network.js';

const INS = '280067512345690';
const slices = Number(process.env.BENCH_SLICES ?? 300);
const gen = mkdtempSync(path.join(tmpdir(), 'bench-viewer-'));
const study = generateStudy({ out: gen, modality: 'CT', series: 1, slices, rows: 512, cols: 512, patientId: INS, patientName: 'PAT-ECHANGE^CAMILLE', accession: 'ACC-BENCH' });
console.log(`study: ${slices} slices 512x512, ${(study.bytes / 1e6).toFixed(0)} MB`);
const net = await startDrimNetwork({ loadIntoPacsA: study.files });
rmSync(gen, { recursive: true, force: true });
const browser = await launchChromium();
try {
  await net.publish({ ins: INS, ipp: 'IPP-A-7', family: 'PAT-ECHANGE', given: 'CAMILLE', birthDate: '19800615', sex: 'F', studyUid: study.studyUid, accessionNumber: 'ACC-BENCH', setId: 'B1C2D3E4-0000-4000-8000-0000000000BB', version: 1 });
  const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 }, ignoreHTTPSErrors: true })).newPage();
  await page.goto(`${net.bUrl}/app/launch?ins=${INS}&oid=1.2.250.1.213.1.4.10&birthName=PAT-ECHANGE&firstGiven=CAMILLE&birthDate=1980-06-15&sex=F`);
  await page.click('#psc-login');
  await pscLogin(page);

  const open = async () => {
    await page.goto(`${net.bUrl}/app/patient?ins=${INS}&oid=1.2.250.1.213.1.4.10`);
    const t0 = Date.now();
    await Promise.all([page.waitForURL(/\/app\/exams\//), page.click(`tr[data-study="${study.studyUid}"] .open-exam`)]);
    let first = 0;
    while (!first) {
      if (await imageDrawn(page, 'layerGroup0')) first = Date.now() - t0;
      else await page.waitForTimeout(20);
      if (Date.now() - t0 > 120_000) throw new Error('no image after 2 minutes');
    }
    await page.waitForFunction(() => (document.getElementById('viewer') as HTMLElement).dataset.complete0 === 'true', undefined, { timeout: 300_000, polling: 50 });
    return { first, all: Date.now() - t0 };
  };
  const cold = await open();
  const warm = await open();

  const seriesUid = study.seriesUids[0]!;
  const t0 = Date.now();
  const res = await fetch(`${net.orthanc.url}/dicom-web/studies/${study.studyUid}/series/${seriesUid}`, { headers: { accept: 'multipart/related; type="application/dicom"' } });
  const bytes = (await res.arrayBuffer()).byteLength;
  const orthancMs = Date.now() - t0;

  const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  console.log('\n| measure | first image | whole series in the viewer |');
  console.log('| --- | --- | --- |');
  console.log(`| cold: Orthanc -> CHU A (C-GET) -> Cabinet B (WADO-RS, mTLS) -> viewer | ${s(cold.first)} | ${s(cold.all)} |`);
  console.log(`| warm: second opening, from Cabinet B's cache | ${s(warm.first)} | ${s(warm.all)} |`);
  console.log(`| reference: Orthanc's own WADO-RS, same series, raw download (${(bytes / 1e6).toFixed(0)} MB) | | ${s(orthancMs)} |`);
  console.log(`\nwhole series cold / Orthanc raw download: ${(cold.all / orthancMs).toFixed(2)}x`);
} finally {
  await browser.close();
  await net.stop();
}
