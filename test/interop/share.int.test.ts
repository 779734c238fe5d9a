/**
 * Share links instead of CDs, against a real PACS: an exam in Orthanc is shared by link and access code; the
 * patient opens it in Chromium (the viewer draws the images, fetched from Orthanc on demand), downloads it as a
 * zip whose DICOMDIR DCMTK reads; the link is refused once expired or revoked, never reaches another exam, and
 * openings are rate-limited and audited.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateStudy, type GeneratedStudy } from '../harness/gen-study.js';
import { dcmtk, haveCommand, startOrthanc, type Orthanc } from '../harness/peers.js';
import { startTestNode } from '../harness/node.js';
import { CHROMIUM, imageDrawn, launchChromium } from '../harness/drim-network.js';
import { extractZip } from '../../src/media/safe-zip.js';
import { readMedia } from '../../src/media/media-reader.js';

const skip = haveCommand('Orthanc') ? false : 'Orthanc is not installed';

describe('share links: open, download, expire, revoke', { skip }, () => {
  let orthanc: Orthanc;
  let node: Awaited<ReturnType<typeof startTestNode>>;
  let study: GeneratedStudy;
  let other: GeneratedStudy;
  let work: string;
  const base = () => `http://127.0.0.1:${node.httpPort}`;
  const create = async (body: Record<string, unknown>) => {
    const res = await fetch(`${base()}/api/share-links`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as { id: number; url: string; code?: string; expiresAt: string; error?: string } };
  };

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'share-it-'));
    study = generateStudy({ out: path.join(work, 's'), modality: 'CT', series: 2, slices: 5, rows: 128, cols: 128, patientId: 'P-SHARE', patientName: 'PARTAGE^ALICE' });
    other = generateStudy({ out: path.join(work, 'o'), modality: 'MR', series: 1, slices: 2, rows: 64, cols: 64, patientId: 'P-OTHER', patientName: 'AUTRE^BOB' });
    orthanc = await startOrthanc({ name: 'share-pacs', aet: 'PACS' });
    for (const f of [...study.files, ...other.files]) await orthanc.api('POST', '/instances', readFileSync(f));
    node = await startTestNode({ aeTitle: 'OPENDRIM', peers: [{ aeTitle: 'PACS', host: '127.0.0.1', port: orthanc.dicomPort }], share: { pacs: 'PACS', perMinute: 60 } });
  });
  after(async () => {
    await node?.cleanup();
    await orthanc?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test('a link with an access code opens the exam in the viewer (Chromium), and the zip carries a DICOMDIR DCMTK reads', { skip: haveCommand(CHROMIUM) || CHROMIUM.startsWith('/') ? false : 'no chromium' }, async () => {
    const { status, json } = await create({ studyUid: study.studyUid, hours: 2, code: true });
    assert.equal(status, 201, json.error);
    assert.match(json.url, /\/share\/[A-Za-z0-9_-]{43}$/);
    const url = json.url;
    const browser = await launchChromium();
    try {
      const pg = await (await browser.newContext({ viewport: { width: 1200, height: 800 } })).newPage();
      await pg.goto(url);
      await pg.fill('#access-code', json.code === '000000' ? '111111' : '000000');
      await pg.click('#open-share');
      await pg.locator('#wrong-code').waitFor();
      await pg.fill('#access-code', json.code!);
      await Promise.all([pg.waitForURL(url), pg.click('#open-share')]);
      await pg.waitForFunction(() => Number(document.getElementById('viewer')?.dataset.loaded0 ?? 0) >= 5, undefined, { timeout: 60_000 });
      assert.equal(await imageDrawn(pg, 'layerGroup0'), true, 'pixels drawn');
      assert.equal(await pg.locator('#series-list button').count(), 2);
      await pg.screenshot({ path: path.resolve('docs/screenshots', 'share-link.png') });
      // The same session downloads the exam as a zip.
      const cookies = (await pg.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
      const zipRes = await fetch(`${url}/exam.zip`, { headers: { cookie: cookies } });
      assert.equal(zipRes.status, 200);
      const zipFile = path.join(work, 'exam.zip');
      writeFileSync(zipFile, Buffer.from(await zipRes.arrayBuffer()));
      const out = mkdtempSync(path.join(work, 'unzipped-'));
      await extractZip(zipFile, out, { maxBytes: 1e9, maxFiles: 1000, maxRatio: 1000 });
      const dump = await dcmtk('dcmdump', ['-q', path.join(out, 'DICOMDIR')]);
      assert.equal(dump.code, 0, dump.out);
      assert.equal((dump.out.match(/\(0004,1430\) CS \[IMAGE\s*\]/g) ?? []).length, 10);
      assert.match(dump.out, /PARTAGE\^ALICE/);
      const media = await readMedia(out);
      assert.equal(media.kind, 'dicomdir');
      assert.equal(media.files.length, 10);
      assert.deepEqual(media.problems, []);
      assert.match(readFileSync(path.join(out, 'VIEWER.HTM'), 'utf8'), /visionneuse hors ligne/);
      // The offline viewer, opened from the disk with no server, shows the images of the folder it is given.
      const offline = await (await browser.newContext({ viewport: { width: 1000, height: 700 } })).newPage();
      await offline.goto(`file://${path.join(out, 'VIEWER.HTM')}`);
      await offline.setInputFiles('#files', path.join(out, 'DICOM'));
      await offline.waitForFunction(() => document.querySelectorAll('#series button').length === 2, undefined, { timeout: 30_000 });
      const contrast = await offline.evaluate(() => {
        const c = document.getElementById('view') as HTMLCanvasElement;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let min = 255;
        let max = 0;
        for (let i = 0; i < d.length; i += 4) {
          min = Math.min(min, d[i]!);
          max = Math.max(max, d[i]!);
        }
        return { w: c.width, max, min };
      });
      assert.equal(contrast.w, 128, 'the image is drawn at its size');
      assert.ok(contrast.max - contrast.min > 50, `an image with contrast is drawn (${JSON.stringify(contrast)})`);
      assert.match((await offline.textContent('#info')) ?? '', /PARTAGE\^ALICE/);
      // Another exam's image is not reachable through this link.
      const foreign = await fetch(`${url}/instances/${other.sopUids[0]}`, { headers: { cookie: cookies } });
      assert.equal(foreign.status, 404);
      // Without the code proof, nothing but the code form.
      assert.equal((await fetch(`${url}/manifest.json`)).status, 403);
    } finally {
      await browser.close();
    }
  });

  test('expired and revoked links are refused with their reason; every opening is audited', async () => {
    const short = await create({ studyUid: study.studyUid, hours: 0.0003, code: false });
    assert.equal((await fetch(short.json.url)).status, 200);
    await new Promise((r) => setTimeout(r, 1500));
    const expired = await fetch(short.json.url);
    assert.equal(expired.status, 410);
    assert.match(await expired.text(), /expired/);
    const l = await create({ studyUid: other.studyUid, code: false });
    assert.equal((await fetch(l.json.url)).status, 200);
    assert.equal((await fetch(`${base()}/api/share-links/${l.json.id}`, { method: 'DELETE' })).status, 204);
    const revoked = await fetch(l.json.url);
    assert.equal(revoked.status, 410);
    assert.match(await revoked.text(), /revoked/);
    assert.equal((await create({ studyUid: '1.2.3.4.5.6.7.8.9' })).status, 404);
    await node.audit.flush();
    const opens = await node.audit.search({ action: 'share.open' });
    assert.ok(opens.some((r) => r.outcome === 'success' && r.studyUid === other.studyUid));
    assert.ok(opens.some((r) => r.outcome === 'refused' && /revoked/.test(JSON.stringify(r.detail))));
  });

  test('openings are rate-limited per client address', async () => {
    let limited = 0;
    for (let i = 0; i < 70; i++) if ((await fetch(`${base()}/share/${'A'.repeat(43)}`)).status === 429) limited++;
    assert.ok(limited > 0, 'some requests answered 429');
  });
});
