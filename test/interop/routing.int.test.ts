/**
 * Routing between institutions end to end: a study stored into CHU A's PACS (Orthanc) becomes stable, matches a
 * rule (its referring physician works at Cabinet B), and A's outbox pushes it over mutual TLS to B's exchange
 * port (STOW-RS, gzip); B reconciles the patient with its own identity domain (fed by ADT) and stores the study
 * into its PACS (a second Orthanc) under B's local patient ID, the original IDs kept in Other Patient IDs.
 * A patient B cannot match safely waits in B's reconciliation queue and is resolved in Chromium.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { mtlsFetch } from '../../src/common/mtls-fetch.js';
import path from 'node:path';
import { generateStudy, type GeneratedStudy } from '../harness/gen-study.js';
import { haveCommand } from '../harness/peers.js';
import { CHROMIUM, launchChromium, pscLogin, startDrimNetwork, type DrimNetwork } from '../harness/drim-network.js';
import { sendMllp } from '../../src/hl7/mllp.js';
import { parseMessage } from '../../src/hl7/message.js';
import { find } from '../../src/dicom/scu.js';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dcmtk } from '../harness/peers.js';
import { sendMedia } from '../../src/media/send-media.js';
import yazl from 'yazl';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';

const skip = haveCommand('Orthanc') ? false : 'Orthanc is not installed';

describe('routing: A → B automatically, identities reconciled on arrival', { skip }, () => {
  let net: DrimNetwork;
  let gen: string;
  let matched: GeneratedStudy;
  let unsure: GeneratedStudy;
  let elsewhere: GeneratedStudy;
  const waitFor = async <T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> => {
    const t0 = Date.now();
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  /** A practitioner logs in at B, sends a CD (folder) or an archive from the media page, and waits for the report. */
  const uploadMedia = async (browser: Awaited<ReturnType<typeof launchChromium>>, input: '#media-zip' | '#media-folder', file: string) => {
    const pg = await (await browser.newContext({ viewport: { width: 1200, height: 800 }, ignoreHTTPSErrors: true })).newPage();
    await pg.goto(`${net.bUrl}/app/media`);
    await pg.click('#psc-login');
    await pscLogin(pg);
    if (!pg.url().includes('/app/media')) await pg.goto(`${net.bUrl}/app/media`);
    await pg.setInputFiles(input, file);
    await pg.click('#media-send');
    const item = pg.locator('#media-studies li');
    await item.waitFor({ timeout: 60_000 });
    return { pg, item };
  };
  const inPacsB = (studyUid: string) => find({ aeTitle: 'PACSB', host: '127.0.0.1', port: net.pacsB.dicomPort }, 'DRIMBOXB', 'STUDY', { StudyInstanceUID: studyUid, PatientID: '', IssuerOfPatientID: '', OtherPatientIDs: '', NumberOfStudyRelatedInstances: '' });
  const adtToB = async (segments: string[]) => {
    const ack = parseMessage(await sendMllp('127.0.0.1', net.b.hl7Port!, segments.join('\r')));
    assert.equal(ack.segment('MSA')!.get(1), 'AA', ack.segment('ERR')?.get(8));
  };
  // A's HTTP port is HTTPS with the test authority's certificate.
  const transfers = async () => (await (await mtlsFetch({ cert: readFileSync(net.pki.serverCert), key: readFileSync(net.pki.serverKey), ca: readFileSync(net.pki.ca) })(`https://127.0.0.1:${net.a.httpPort}/api/routing/transfers`)).json()) as { transfers: Array<{ id: number; studyUid: string; status: string; sent: number; total: number; destination: string; error?: string }> };

  before(async () => {
    gen = path.join(process.env.TMPDIR ?? '/tmp', `routing-it-${process.pid}`);
    const today = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    const common = { rows: 64, cols: 64, studyDate: today, issuer: 'CHU-A' };
    // At A the patient's name lost its accents and the married name is used; B knows the birth name (ADT).
    matched = generateStudy({ out: path.join(gen, 'm'), modality: 'CT', series: 2, slices: 6, patientId: 'A-1001', patientName: 'LEFEVRE^HELENE', birthDate: '19620315', sex: 'F', referring: 'DURAND^Sophie', accession: 'R-1', ...common });
    unsure = generateStudy({ out: path.join(gen, 'u'), modality: 'MR', series: 1, slices: 4, patientId: 'A-1002', patientName: 'GARNIER^LEA', birthDate: '20150704', sex: 'F', referring: 'DURAND^Sophie', accession: 'R-2', ...common });
    elsewhere = generateStudy({ out: path.join(gen, 'e'), modality: 'CR', series: 1, slices: 1, patientId: 'A-1003', patientName: 'PETIT^JEAN', birthDate: '19500101', sex: 'M', referring: 'HOUSE^Gregory', accession: 'R-3', ...common });
    net = await startDrimNetwork({
      loadIntoPacsA: [],
      aConfig: ({ bExchangeUrl, pacsAPort, pacsBPort }) => ({
        peers: [
          { aeTitle: 'PACS', host: '127.0.0.1', port: pacsAPort },
          { aeTitle: 'PACSB', host: '127.0.0.1', port: pacsBPort },
        ],
        routing: {
          stableSeconds: 2,
          pacs: 'PACS',
          watch: { everySeconds: 1, lookbackDays: 1 },
          destinations: [
            { name: 'cabinet-b', type: 'opendrim', url: bExchangeUrl, gzip: true, parallel: 2, batch: 4 },
            { name: 'pacs-b-direct', type: 'dicom', peer: 'PACSB' },
          ],
          rules: [
            { name: 'medecins-cabinet-b', when: { referringPhysicianName: ['DURAND^SOPHIE', 'MOREAU^*'] }, destinations: ['cabinet-b'] },
            { name: 'demandes-cabinet-b', trigger: 'hl7', when: { destinationFacility: ['CABINET-B'] }, destinations: ['cabinet-b'] },
            { name: 'archives-clinique', when: { institutionName: ['CLINIQUE ARCHIVE'] }, destinations: ['pacs-b-direct'] },
          ],
        },
      }),
      bConfig: { incoming: { stableSeconds: 2, acceptFromBoxes: ['drimbox.chu-a.test'], pacs: 'PACSB', issuer: 'CABINET-B', newIdPrefix: 'B-NEW-' } },
    });
    const msh = (type: string, id: string) => `MSH|^~\\&|DPI|CABINET-B|OPENDRIM|CABINET-B|20261203100000||${type}|${id}|P|2.5`;
    await adtToB([msh('ADT^A28^ADT_A05', 'ADT-1'), 'PID|||B-4242^^^CABINET-B&1.2.250.1.999.2&ISO^PI||LEFÈVRE^HÉLÈNE^MARIE^^^^L~MOREL^HÉLÈNE^^^^^D||19620315|F']);
    // Twins at B: LÉA and LÉNA GARNIER, born the same day. An incoming LEA must not be filed automatically.
    await adtToB([msh('ADT^A28^ADT_A05', 'ADT-2'), 'PID|||B-5001^^^CABINET-B&1.2.250.1.999.2&ISO^PI||GARNIER^LÉA^^^^^L||20150704|F']);
    await adtToB([msh('ADT^A28^ADT_A05', 'ADT-3'), 'PID|||B-5002^^^CABINET-B&1.2.250.1.999.2&ISO^PI||GARNIER^LÉNA^^^^^L||20150704|F']);
    await adtToB([msh('ADT^A28^ADT_A05', 'ADT-4'), 'PID|||B-6001^^^CABINET-B&1.2.250.1.999.2&ISO^PI||ROUSSEAU^PIERRE^^^^^L||19701010|M']);
  });
  after(async () => {
    await net?.stop();
    rmSync(gen, { recursive: true, force: true });
  });

  test('a stable study whose referring physician works at B lands in B’s PACS under B’s patient ID', async () => {
    for (const f of [...matched.files, ...elsewhere.files]) await net.orthanc.api('POST', '/instances', readFileSync(f));
    const rows = await waitFor('the study in PACS B', async () => {
      const r = await inPacsB(matched.studyUid);
      return r.length && Number((r[0]!['00201208']?.Value ?? [])[0]) === matched.files.length ? r : undefined;
    });
    assert.equal(rows[0]!['00100020']?.Value?.[0], 'B-4242', 'filed under B’s local patient ID');
    assert.equal(rows[0]!['00100021']?.Value?.[0], 'CABINET-B');
    const t = (await transfers()).transfers.find((x) => x.studyUid === matched.studyUid);
    assert.equal(t?.status, 'done');
    assert.equal(t?.sent, matched.files.length);
    assert.equal(t?.total, matched.files.length);
    // The original identifiers stay in the instances (Other Patient IDs Sequence), read back through Orthanc.
    const inst = await net.pacsB.api<string[]>('GET', '/instances');
    const tags = await net.pacsB.api<Record<string, { Value: unknown }>>('GET', `/instances/${inst[0]}/tags`);
    assert.match(JSON.stringify(tags['0010,1002']), /A-1001/);
    // The other study's referring physician is not at B: nothing queued, nothing in B's PACS.
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal((await transfers()).transfers.some((x) => x.studyUid === elsewhere.studyUid), false);
    assert.equal((await inPacsB(elsewhere.studyUid)).length, 0);
    // A's audit shows the send; B's the push by A's box and the automatic reconciliation.
    await Promise.all([net.a.audit.flush(), net.b.audit.flush()]);
    assert.ok((await net.a.audit.search({ action: 'routing.send', studyUid: matched.studyUid })).some((r) => r.outcome === 'success'));
    assert.ok((await net.b.audit.search({ action: 'exchange.store', studyUid: matched.studyUid })).some((r) => r.actorId === 'drimbox.chu-a.test'));
    assert.ok((await net.b.audit.search({ action: 'identity.reconcile', studyUid: matched.studyUid })).some((r) => (r.detail as { decision?: string }).decision === 'automatic'));
  });

  test('a patient B cannot match safely waits in the queue, and is filed once a person chooses (Chromium)', { skip: haveCommand(CHROMIUM) || CHROMIUM.startsWith('/') ? false : 'chromium missing' }, async () => {
    for (const f of unsure.files) await net.orthanc.api('POST', '/instances', readFileSync(f));
    const c = await waitFor('a reconciliation case at B', async () => (await net.b.reconciliation!.list('open')).find((x) => x.studyUid === unsure.studyUid));
    assert.deepEqual(c.candidates.map((k) => k.localId).sort(), ['B-5001', 'B-5002']);
    assert.equal((await inPacsB(unsure.studyUid)).length, 0, 'nothing reaches the PACS before the decision');
    const browser = await launchChromium();
    try {
      const pg = await (await browser.newContext({ viewport: { width: 1400, height: 800 }, ignoreHTTPSErrors: true })).newPage();
      await pg.goto(`${net.bUrl}/app/reconciliation`);
      await pg.click('#psc-login');
      await pscLogin(pg);
      if (!pg.url().includes('/app/reconciliation')) await pg.goto(`${net.bUrl}/app/reconciliation`);
      const card = pg.locator(`section.case[data-study="${unsure.studyUid}"]`);
      await card.waitFor();
      assert.match(await card.locator('tr.incoming').innerText(), /GARNIER/);
      assert.equal(await card.locator('tr.candidate').count(), 2);
      await pg.screenshot({ path: path.resolve('docs/screenshots', 'reconciliation.png'), fullPage: true });
      await Promise.all([pg.waitForURL(/done=B-5001/), card.locator('tr.candidate[data-local-id="B-5001"] button.accept').click()]);
      assert.match(await pg.locator('#decided').innerText(), /B-5001/);
    } finally {
      await browser.close();
    }
    const rows = await inPacsB(unsure.studyUid);
    assert.equal(rows[0]?.['00100020']?.Value?.[0], 'B-5001');
    assert.equal(Number(rows[0]?.['00201208']?.Value?.[0]), unsure.files.length);
    // The decision is remembered: the same patient from A is matched by identifier next time.
    assert.deepEqual(await net.b.incoming!['deps'].reconciler.reconcile({ identifiers: [{ id: 'A-1002', issuer: 'CHU-A' }], demographics: { birthName: 'GARNIER', givenNames: ['LEA'], birthDate: '20150704', sex: 'F' } }), { kind: 'automatic', localId: 'B-5001', method: 'identifier' });
  });

  test('a patient’s CD (DICOMDIR built by DCMTK dcmmkdir) is imported through the CLI path into B’s PACS; corrupt and non-DICOM files reported', { skip: haveCommand('dcmmkdir') ? false : 'DCMTK missing' }, async () => {
    const cd = path.join(gen, 'cd');
    const study = generateStudy({ out: path.join(gen, 'cd-src'), modality: 'CT', series: 2, slices: 3, rows: 64, cols: 64, patientId: 'CLX-77', issuer: 'CLINIQUE-X', patientName: 'ROUSSEAU^PIERRE', birthDate: '19701010', sex: 'M', accession: 'CD-1' });
    // The CD's layout: ISO 9660 names (8 upper-case characters, no extension) under DICOM/.
    study.files.forEach((f, i) => {
      const dir = path.join(cd, 'DICOM', `SE${String(Math.floor(i / 3) + 1).padStart(6, '0')}`);
      mkdirSync(dir, { recursive: true });
      copyFileSync(f, path.join(dir, `IM${String(i + 1).padStart(6, '0')}`));
    });
    const mk = await dcmtk('dcmmkdir', ['+r', '-Pgp', '+I', '+id', cd, '+D', path.join(cd, 'DICOMDIR'), 'DICOM']);
    assert.equal(mk.code, 0, mk.out);
    // After the DICOMDIR was written, one referenced image is damaged; the CD also carries a viewer's files.
    writeFileSync(path.join(cd, 'DICOM', 'SE000002', 'IM000006'), Buffer.from('not an image any more'));
    writeFileSync(path.join(cd, 'AUTORUN.INF'), '[autorun]\nopen=viewer.exe\n');
    const report = await sendMedia(net.b.config, cd, `https://127.0.0.1:${net.b.httpPort}`);
    assert.equal(report.kind, 'dicomdir');
    assert.equal(report.instances, 5);
    assert.deepEqual(report.problems.map((p) => p.file), ['DICOM/SE000002/IM000006']);
    assert.equal(report.studies.length, 1);
    assert.deepEqual({ ...report.studies[0]!.outcome, sent: undefined }, { state: 'done', localId: 'B-6001', sent: undefined, method: 'demographics' });
    const rows = await inPacsB(study.studyUid);
    assert.equal(rows[0]?.['00100020']?.Value?.[0], 'B-6001');
    assert.equal(Number(rows[0]?.['00201208']?.Value?.[0]), 5);
  });

  test('an IHE XDM archive uploaded in the web page (progress, report) waits for reconciliation when the patient is unknown', async () => {
    const study = generateStudy({ out: path.join(gen, 'xdm-src'), modality: 'MR', series: 1, slices: 2, rows: 64, cols: 64, patientId: 'Z-9', issuer: 'AILLEURS', patientName: 'INCONNU^PAUL', birthDate: '19991231', sex: 'M', accession: 'XDM-1' });
    const zipFile = path.join(gen, 'xdm.zip');
    const zip = new yazl.ZipFile();
    zip.addBuffer(Buffer.from('<html>INDEX</html>'), 'INDEX.HTM');
    zip.addBuffer(Buffer.from(`<?xml version="1.0"?><lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"><rim:RegistryObjectList><rim:ExtrinsicObject id="Doc1" mimeType="application/dicom"><rim:Slot name="URI"><rim:ValueList><rim:Value>IM000001</rim:Value></rim:ValueList></rim:Slot></rim:ExtrinsicObject></rim:RegistryObjectList></lcm:SubmitObjectsRequest>`), 'IHE_XDM/SUBSET01/METADATA.XML');
    study.files.forEach((f, i) => zip.addFile(f, `IHE_XDM/SUBSET01/IM00000${i + 1}`));
    zip.end();
    await pipeline(zip.outputStream, createWriteStream(zipFile));
    const browser = await launchChromium();
    try {
      const { pg, item } = await uploadMedia(browser, '#media-zip', zipFile);
      assert.equal(await item.getAttribute('data-state'), 'waiting-identity');
      assert.match(await pg.locator('#media-status').innerText(), /2 instance/);
      await pg.screenshot({ path: path.resolve('docs/screenshots', 'media-import.png'), fullPage: true });
    } finally {
      await browser.close();
    }
    const c = (await net.b.reconciliation!.list('open')).find((x) => x.studyUid === study.studyUid);
    assert.ok(c, 'a reconciliation case is open');
    assert.equal(c.incoming.demographics.birthName, 'INCONNU');
    assert.equal((await inPacsB(study.studyUid)).length, 0);
  });

  test('a CD uploaded as a folder from the web page (DICOMDIR made by dcmmkdir, nested folders, repeated file names) is imported whole', { skip: haveCommand('dcmmkdir') ? false : 'DCMTK is not installed' }, async () => {
    await adtToB(['MSH|^~\\&|DPI|CABINET-B|OPENDRIM|CABINET-B|20261203100000||ADT^A28^ADT_A05|ADT-CD|P|2.5', 'PID|||B-8001^^^CABINET-B&1.2.250.1.999.2&ISO^PI||DISQUE^CLARA^^^^^L||19700707|F']);
    const study = generateStudy({ out: path.join(gen, 'cd-src'), modality: 'CT', series: 2, slices: 6, rows: 64, cols: 64, patientId: 'CD-1', issuer: 'AILLEURS', patientName: 'DISQUE^CLARA', birthDate: '19700707', sex: 'F', accession: 'CD-1' });
    // The layout of a CD: DICOM/<series>/IM00000n, the same names in each series folder, and a DICOMDIR at the root.
    const cd = path.join(gen, 'cd');
    const perSeries = new Map<string, number>();
    for (const f of study.files) {
      const series = study.seriesUids.findIndex((s) => readFileSync(f).includes(Buffer.from(s)));
      const n = (perSeries.get(String(series)) ?? 0) + 1;
      perSeries.set(String(series), n);
      const dir = path.join(cd, 'DICOM', `SE00000${series + 1}`);
      mkdirSync(dir, { recursive: true });
      copyFileSync(f, path.join(dir, `IM00000${n}`));
    }
    const mk = await dcmtk('dcmmkdir', ['--recurse', '--output-file', path.join(cd, 'DICOMDIR'), '--input-directory', cd, 'DICOM']);
    assert.equal(mk.code, 0, mk.out);
    const browser = await launchChromium();
    try {
      const { pg } = await uploadMedia(browser, '#media-folder', cd);
      assert.match(await pg.locator('#media-status').innerText(), new RegExp(`${study.files.length} instance`));
      assert.doesNotMatch(await pg.locator('#media-report').innerText(), /EEXIST|\/tmp\//, 'no server error or path shown');
    } finally {
      await browser.close();
    }
    const rows = await waitFor('the CD study in PACS B', async () => {
      const r = await inPacsB(study.studyUid);
      return r.length && Number(r[0]?.['00201208']?.Value?.[0]) === study.files.length ? r : undefined;
    });
    assert.equal(rows[0]?.['00100020']?.Value?.[0], 'B-8001', 'reconciled to the local patient');
  });

  test('an HL7 order whose destination facility is B routes the exam there (trigger: hl7)', async () => {
    await adtToB(['MSH|^~\\&|DPI|CABINET-B|OPENDRIM|CABINET-B|20261203100000||ADT^A28^ADT_A05|ADT-5|P|2.5', 'PID|||B-7001^^^CABINET-B&1.2.250.1.999.2&ISO^PI||PETIT^JEAN^^^^^L||19500101|M']);
    const orm = ['MSH|^~\\&|RIS|CHU-A|OPENDRIM|CABINET-B|20261203110000||ORM^O01^ORM_O01|ORM-9|P|2.5', 'PID|||A-1003^^^CHU-A||PETIT^JEAN||19500101|M', 'ORC|XO|PL-3||||||||||123456^HOUSE^GREGORY', 'OBR|1|PL-3||RX^Radio thorax||||||||||||123456^HOUSE^GREGORY||R-3'].join('\r');
    const ack = parseMessage(await sendMllp('127.0.0.1', net.a.hl7Port!, orm));
    assert.equal(ack.segment('MSA')!.get(1), 'AA', ack.segment('ERR')?.get(8));
    const rows = await waitFor('the HL7-routed study in PACS B', async () => {
      const r = await inPacsB(elsewhere.studyUid);
      return r.length ? r : undefined;
    });
    assert.equal(rows[0]!['00100020']?.Value?.[0], 'B-7001');
    const t = (await transfers()).transfers.find((x) => x.studyUid === elsewhere.studyUid);
    assert.equal(t?.status, 'done');
  });

  test('a DICOM AE as destination (C-STORE), and a local identity found in B’s PACS by C-FIND', async () => {
    // Anne FAURE is not in B's ADT feed, but B's PACS holds an exam of hers under B's ID.
    const known = generateStudy({ out: path.join(gen, 'faure-b'), modality: 'CR', series: 1, slices: 1, rows: 64, cols: 64, patientId: 'B-PACS-77', issuer: 'CABINET-B', patientName: 'FAURE^ANNE', birthDate: '19750505', sex: 'F', accession: 'B-OLD' });
    for (const f of known.files) await net.pacsB.api('POST', '/instances', readFileSync(f));
    const today = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    const fromA = generateStudy({ out: path.join(gen, 'faure-a'), modality: 'CT', series: 1, slices: 3, rows: 64, cols: 64, patientId: 'A-1004', issuer: 'CHU-A', patientName: 'FAURE^ANNE', birthDate: '19750505', sex: 'F', referring: 'DURAND^SOPHIE', accession: 'R-4', studyDate: today });
    const archive = generateStudy({ out: path.join(gen, 'archive'), modality: 'MR', series: 1, slices: 2, rows: 64, cols: 64, patientId: 'A-1005', issuer: 'CHU-A', patientName: 'ROBIN^LUC', birthDate: '19880808', sex: 'M', referring: 'NOBODY^X', institution: 'CLINIQUE ARCHIVE', accession: 'R-5', studyDate: today });
    for (const f of [...fromA.files, ...archive.files]) await net.orthanc.api('POST', '/instances', readFileSync(f));
    const viaBox = await waitFor('the exam under the ID B’s PACS knows', async () => {
      const r = await inPacsB(fromA.studyUid);
      return r.length ? r : undefined;
    });
    assert.equal(viaBox[0]!['00100020']?.Value?.[0], 'B-PACS-77');
    const direct = await waitFor('the exam C-STOREd straight into PACS B', async () => {
      const r = await inPacsB(archive.studyUid);
      return r.length && Number(r[0]!['00201208']?.Value?.[0]) === archive.files.length ? r : undefined;
    });
    assert.equal(direct[0]!['00100020']?.Value?.[0], 'A-1005', 'a plain DICOM destination receives the study as it is');
    const t = (await transfers()).transfers.find((x) => x.studyUid === archive.studyUid);
    assert.deepEqual([t?.destination, t?.status, t?.sent], ['pacs-b-direct', 'done', archive.files.length]);
  });
});
