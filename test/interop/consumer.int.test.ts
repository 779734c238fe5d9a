/**
 * The consumer function in a real browser (Debian chromium driven by playwright-core): a practitioner at
 * "Cabinet B" logs in through the Pro Santé Connect stand-in, arrives by contextual launch on a patient, sees
 * the exams CHU A published to the DMP stand-in, reads a report, and opens an exam whose images come from CHU A
 * (Orthanc as its PACS) into the viewer, then compares it with the prior. Screenshots go to docs/screenshots.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { generateStudy, type GeneratedStudy } from '../harness/gen-study.js';
import { haveCommand, type Orthanc } from '../harness/peers.js';
import { CHROMIUM, imageDrawn, launchChromium, pscLogin, startDrimNetwork, type DrimNetwork } from '../harness/drim-network.js';
import { find } from '../../src/dicom/scu.js';

async function orthancFirstInstanceTags(o: Orthanc, studyUid: string): Promise<Record<string, unknown>> {
  const [id] = await o.api('POST', '/tools/find', { Level: 'Instance', Query: { StudyInstanceUID: studyUid }, Limit: 1 });
  return o.api('GET', `/instances/${id}/simplified-tags`);
}

const skip = !haveCommand('Orthanc') ? 'Orthanc is not installed' : !existsSync(CHROMIUM) ? 'Debian chromium is not installed (apt-get install chromium)' : false;
const SHOTS = path.resolve('docs/screenshots');

const INS = '280067512345690';

describe('DRIMbox consumer in the browser: PSC login, contextual launch, DMP list, report, viewer', { skip }, () => {
  let net: DrimNetwork;
  let a: DrimNetwork['a'];
  let b: DrimNetwork['b'];
  let pacsB: Orthanc;
  let browser: Browser;
  let pg: Page;
  let current: GeneratedStudy;
  let prior: GeneratedStudy;
  let bUrl: string;

  const exchangeRetrievesAtA = async () => {
    await a.audit.flush();
    return (await a.audit.search({ action: 'exchange.retrieve', limit: 1000 })).filter((r) => r.outcome === 'success').length;
  };
  const drawn = (group: string) => imageDrawn(pg, group);
  const pixelSum = (group: string) =>
    pg.evaluate((id) => {
      let sum = 0;
      for (const c of document.querySelectorAll<HTMLCanvasElement>(`#${id} canvas`)) {
        if (!c.width || !c.height) continue;
        const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4 * 5) sum += d[i]!;
      }
      return sum;
    }, group);

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    const gen = path.join(process.env.TMPDIR ?? '/tmp', `consumer-it-${process.pid}`);
    current = generateStudy({ out: path.join(gen, 'current'), modality: 'CT', series: 2, slices: 40, rows: 256, cols: 256, patientId: INS, patientName: 'PAT-ECHANGE^CAMILLE', accession: 'ACC-CUR', studyDate: '20261120', description: 'TDM thorax' });
    prior = generateStudy({ out: path.join(gen, 'prior'), modality: 'CT', series: 1, slices: 20, rows: 256, cols: 256, patientId: INS, patientName: 'PAT-ECHANGE^CAMILLE', accession: 'ACC-PRI', studyDate: '20250310', description: 'TDM thorax' });
    // PSC access tokens of 65 s: B renews them (refresh token grant) whenever less than a minute is left.
    net = await startDrimNetwork({ loadIntoPacsA: [...current.files, ...prior.files], pscAccessTokenTtlSeconds: 65 });
    rmSync(gen, { recursive: true, force: true });
    ({ a, b, pacsB, bUrl } = net);
    const base = { ins: INS, ipp: 'IPP-A-7', family: 'PAT-ECHANGE', given: 'CAMILLE', birthDate: '19800615', sex: 'F' as const, examCode: { code: 'ZBQK002', display: 'Scanographie du thorax' } };
    await net.publish({ ...base, studyUid: prior.studyUid, accessionNumber: 'ACC-PRI', setId: 'B1C2D3E4-0000-4000-8000-000000000010', version: 1, effectiveTime: '20250310113000+0100', text: 'Examen antérieur : pas de nodule.' });
    await net.publish({ ...base, studyUid: current.studyUid, accessionNumber: 'ACC-CUR', setId: 'B1C2D3E4-0000-4000-8000-000000000011', version: 1, effectiveTime: '20261120103000+0100', text: 'Nodule de 4 mm du lobe supérieur droit.' });
    browser = await launchChromium();
    pg = await (await browser.newContext({ viewport: { width: 1440, height: 900 }, ignoreHTTPSErrors: true })).newPage();
  });
  after(async () => {
    await browser?.close();
    await net?.stop();
  });

  test('contextual launch asks for a PSC login first, then shows the strict INS traits and the DMP exams', async () => {
    const launch = `${bUrl}/app/launch?ins=${INS}&oid=1.2.250.1.213.1.4.10&birthName=PAT-ECHANGE&firstGiven=CAMILLE&givenNames=CAMILLE%20MARIE&birthDate=1980-06-15&sex=F&birthPlace=75056&usedName=DURAND&plannedModality=CT&plannedRegion=thorax`;
    await pg.goto(launch);
    await pg.screenshot({ path: path.join(SHOTS, 'login.png') });
    await pg.click('#psc-login');
    await pscLogin(pg);
    assert.match(pg.url(), /\/app\/patient/);
    assert.match(await pg.textContent('#current-user') ?? '', /Jeanne RADIO/);
    const identity = (await pg.textContent('#identity')) ?? '';
    for (const trait of ['PAT-ECHANGE', 'CAMILLE', '15/06/1980', 'Féminin', '75056', INS]) assert.ok(identity.includes(trait), `${trait} shown`);
    const rows = await pg.$$eval('table.exams tbody tr', (trs) => trs.map((tr) => tr.textContent ?? ''));
    assert.ok(rows.length >= 2, 'both exams listed');
    assert.match(await pg.textContent('#similar') ?? '', /Scanographie du thorax/, 'the redundancy check names the prior CT of the thorax');
    await pg.screenshot({ path: path.join(SHOTS, 'patient-exams.png'), fullPage: true });

    const cookies = await pg.context().cookies(bUrl);
    const session = cookies.find((c) => c.name === 'opendrim_session')!;
    assert.ok(session.httpOnly && session.secure && session.sameSite === 'Lax', 'session cookie is httpOnly, Secure, SameSite=Lax');

    // The PSC tokens are renewed when they near expiry, and the session goes on.
    // The stored session data is sealed with the cookie's token: the table alone shows no PSC token.
    const stored = (await b.database.db.selectFrom('web_sessions').select('data').where('kind', '=', 'user').executeTakeFirstOrThrow()).data;
    assert.ok(!/accessToken|refreshToken|eyJ/.test(stored), 'no PSC token readable in the database');
    const tokensNow = async () => (await b.sessions!.get<{ tokens: { accessToken: string; expiresAt: number } }>(session.value, 'user'))!.data.tokens;
    const before = await tokensNow();
    await new Promise((r) => setTimeout(r, 6000));
    await pg.reload();
    assert.match(await pg.textContent('#current-user') ?? '', /Jeanne RADIO/, 'still logged in');
    const renewed = await tokensNow();
    assert.notEqual(renewed.accessToken, before.accessToken, 'a new access token from the refresh grant');
    assert.ok(renewed.expiresAt > before.expiresAt);
  });

  test('the report is readable inline; a document of another patient cannot be opened', async () => {
    await Promise.all([pg.waitForURL(/\/app\/reports\//), pg.click('table.exams tbody tr:first-child .report-link')]);
    assert.match(await pg.textContent('#report-title') ?? '', /./);
    const body = await pg.evaluate(async () => {
      const r = await fetch((document.getElementById('report-body') as HTMLIFrameElement).src);
      return { type: r.headers.get('content-type'), start: (await r.text()).slice(0, 200) };
    });
    assert.equal(body.type, 'application/pdf', body.start);
    assert.ok(body.start.startsWith('%PDF-'));
    await pg.screenshot({ path: path.join(SHOTS, 'report.png') });
    const status = await pg.evaluate(async () => (await fetch('/app/reports/1.2.3/9.9.9.9/body')).status);
    assert.equal(status, 403);
    await pg.goBack();
  });

  test('opening the current exam streams it from CHU A into the viewer; pixels drawn; the prior side by side; a second opening comes from the cache', async () => {
    const retrievesBefore = await exchangeRetrievesAtA();
    const started = Date.now();
    await Promise.all([pg.waitForURL(/\/app\/exams\//), pg.click(`tr[data-study="${current.studyUid}"] .open-exam`)]);
    await pg.waitForFunction(() => Number((document.getElementById('viewer') as HTMLElement).dataset.loaded0 ?? 0) > 0, undefined, { timeout: 30_000 });
    await pg.waitForFunction(() => [...document.querySelectorAll('#layerGroup0 canvas')].some((c) => (c as HTMLCanvasElement).width > 0), undefined, { timeout: 30_000 });
    let firstImageMs = 0;
    for (let i = 0; i < 100 && !(await drawn('layerGroup0')); i++) await pg.waitForTimeout(100);
    firstImageMs = Date.now() - started;
    assert.ok(await drawn('layerGroup0'), 'the first series is drawn');
    console.log(`# first image on screen ${firstImageMs} ms after the click (40-slice 256x256 CT series from the source box)`);
    await pg.waitForFunction(() => (document.getElementById('viewer') as HTMLElement).dataset.complete0 === 'true', undefined, { timeout: 60_000 });
    const loaded = await pg.evaluate(() => {
      const app = (window as any).opendrimViewer.apps[0];
      return app.getDataIds().map((id: string) => ({ id, slices: app.getData(id)?.image?.getGeometry().getSize().get(2) }));
    });
    assert.deepEqual(loaded.map((d: { slices: number }) => d.slices), [40], 'the whole series is one volume of 40 slices in the viewer');
    const shown = await pg.$eval('#series-list button.active', (b) => (b as HTMLElement).dataset.series!);
    assert.ok(current.seriesUids.includes(shown));
    assert.equal((await b.index.listInstances({ studyUid: current.studyUid, seriesUid: shown })).length, 40, 'the series is in B\'s cache');

    // Window/level: a drag on the image changes the pixels drawn.
    await pg.click('#toolbar [data-tool="WindowLevel"]');
    const before = await pixelSum('layerGroup0');
    const box = (await pg.$('#layerGroup0'))!.boundingBox();
    const { x, y, width, height } = (await box)!;
    await pg.mouse.move(x + width / 2, y + height / 2);
    await pg.mouse.down();
    await pg.mouse.move(x + width / 2 + 120, y + height / 2 + 80, { steps: 8 });
    await pg.mouse.up();
    await pg.waitForTimeout(200);
    assert.notEqual(await pixelSum('layerGroup0'), before, 'window/level changed the rendering');
    // Zoom (mouse wheel) and a ruler measurement change what is drawn.
    await pg.click('#toolbar [data-tool="ZoomAndPan"]');
    const beforeZoom = await pixelSum('layerGroup0');
    await pg.mouse.move(x + width / 2, y + height / 2);
    await pg.mouse.wheel(0, -400);
    await pg.waitForTimeout(300);
    assert.notEqual(await pixelSum('layerGroup0'), beforeZoom, 'zoomed');
    await pg.click('#toolbar [data-tool="Draw"]');
    const beforeRuler = await pixelSum('layerGroup0');
    await pg.mouse.move(x + width * 0.3, y + height * 0.4);
    await pg.mouse.down();
    await pg.mouse.move(x + width * 0.6, y + height * 0.6, { steps: 10 });
    await pg.mouse.up();
    await pg.waitForTimeout(300);
    assert.notEqual(await pixelSum('layerGroup0'), beforeRuler, 'a ruler is drawn');
    await pg.screenshot({ path: path.join(SHOTS, 'viewer.png') });

    // Current vs prior.
    const priorOption = await pg.$$eval('#compare option', (os) => os.map((o) => (o as HTMLOptionElement).value).find((v) => v));
    await pg.selectOption('#compare', priorOption!);
    await pg.waitForFunction(() => (document.getElementById('viewer') as HTMLElement).dataset.complete1 === 'true', undefined, { timeout: 60_000 });
    for (let i = 0; i < 50 && !(await drawn('layerGroup1')); i++) await pg.waitForTimeout(100);
    assert.ok(await drawn('layerGroup1'), 'the prior is drawn beside');
    await pg.screenshot({ path: path.join(SHOTS, 'viewer-compare.png') });

    const retrievesAfterFirst = await exchangeRetrievesAtA();
    assert.ok(retrievesAfterFirst > retrievesBefore, 'the images came from CHU A');
    await pg.reload();
    await pg.waitForFunction(() => (document.getElementById('viewer') as HTMLElement).dataset.complete0 === 'true', undefined, { timeout: 60_000 });
    assert.ok(await drawn('layerGroup0'));
    assert.equal(await exchangeRetrievesAtA(), retrievesAfterFirst, 'a second opening asks CHU A for nothing');
  });

  test('import into B\'s PACS: with no local identity the job waits for a decision, then lands under the local IPP (checked by C-FIND)', async () => {
    await Promise.all([pg.waitForURL(/\/app\/imports/), pg.click('#import')]);
    const row = () => pg.$eval('#imports tbody tr:first-child', (tr) => (tr as HTMLElement).dataset.status);
    for (let i = 0; i < 50 && (await row()) !== 'waiting-identity'; i++) await pg.reload();
    assert.equal(await row(), 'waiting-identity', 'no patient in PACS B carries this INS: nothing is sent');
    assert.equal((await find({ aeTitle: 'PACSB', host: '127.0.0.1', port: pacsB.dicomPort }, 'DRIMBOXB', 'STUDY', { StudyInstanceUID: current.studyUid })).length, 0);
    await pg.screenshot({ path: path.join(SHOTS, 'imports-identity.png') });
    await pg.fill('#imports tbody tr:first-child input[name="localId"]', 'IPP-B-55');
    await Promise.all([pg.waitForURL(/\/app\/imports/), pg.click('#imports tbody tr:first-child button[type="submit"]')]);
    for (let i = 0; i < 100 && (await row()) !== 'done'; i++) {
      await pg.waitForTimeout(300);
      await pg.reload();
    }
    assert.equal(await row(), 'done', await pg.textContent('#imports tbody tr:first-child') ?? '');
    await pg.screenshot({ path: path.join(SHOTS, 'imports.png') });
    const pacs = { aeTitle: 'PACSB', host: '127.0.0.1', port: pacsB.dicomPort };
    const studies = await find(pacs, 'DRIMBOXB', 'STUDY', { StudyInstanceUID: current.studyUid, PatientID: '', IssuerOfPatientID: '', NumberOfStudyRelatedInstances: '' });
    assert.equal(studies.length, 1);
    assert.equal(studies[0]!['00100020']?.Value?.[0], 'IPP-B-55');
    assert.equal(Number(studies[0]!['00201208']?.Value?.[0]), 80);
    const inst = await orthancFirstInstanceTags(pacsB, current.studyUid);
    assert.equal(inst.IssuerOfPatientID, 'CABINET-B');
    assert.match(JSON.stringify(inst.OtherPatientIDsSequence), new RegExp(INS), 'the INS stays in Other Patient IDs');
    const identity = await b.database.db.selectFrom('patient_identities').selectAll().where('ins', '=', INS).executeTakeFirst();
    assert.equal(identity?.local_id, 'IPP-B-55', 'the decision is remembered for this INS');
  });

  test('logout ends the session; its cookie no longer opens anything; posts without the CSRF token are refused', async () => {
    const cookie = (await pg.context().cookies(bUrl)).find((c) => c.name === 'opendrim_session')!;
    const http = pg.context().request;
    const withCookie = { cookie: `opendrim_session=${cookie.value}` };
    const noCsrf = await http.post(`${bUrl}/auth/logout`, { headers: withCookie, form: { csrf: 'forged' }, maxRedirects: 0 });
    assert.equal(noCsrf.status(), 403);
    await Promise.all([pg.waitForURL(/\/auth\/login/), pg.click('#logout')]);
    const after = await http.get(`${bUrl}/app/patient?ins=${INS}&oid=1.2.250.1.213.1.4.10`, { headers: { ...withCookie, accept: 'text/html' }, maxRedirects: 0 });
    assert.equal(after.status(), 302);
    assert.match(after.headers().location ?? '', /^\/auth\/login/);
    const api = await http.get(`${bUrl}/app/dicom-web/studies/${current.studyUid}/series/${current.seriesUids[0]}`, { headers: withCookie, maxRedirects: 0 });
    assert.equal(api.status(), 401);
    // A return target outside the application is ignored (no open redirect).
    const open = await http.get(`${bUrl}/auth/login?go=1&returnTo=//evil.example/x`, { maxRedirects: 0 });
    assert.equal(open.status(), 302);
    assert.match(open.headers()['set-cookie'] ?? '', /opendrim_login=.*HttpOnly/i);
    const b2 = await b.audit.search({ action: 'auth.login', limit: 10 });
    assert.ok(b2.some((r) => r.outcome === 'success' && r.actorId === '8899700218896'));
  });
});
