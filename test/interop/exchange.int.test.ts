/**
 * DRIMbox-to-DRIMbox image exchange on one machine: Orthanc as the source's PACS, OpenDRIM "CHU A" (source
 * function + exchange port), the DMP stand-in, and other OpenDRIM boxes as consumers: "Cabinet B" (trusted),
 * "Intrus" (certificate from the right authority but not in the trust list), and callers with a foreign
 * certificate, no certificate, or no professional token.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dcmjs from 'dcmjs';
import { CompactSign, exportSPKI, generateKeyPair } from 'jose';
import { generateStudy, type GeneratedStudy } from '../harness/gen-study.js';
import { haveCommand, startOrthanc, type Orthanc } from '../harness/peers.js';
import { startTestNode } from '../harness/node.js';
import { issueBoxCertificate, makeTestPki, type TestPki } from '../harness/certs.js';
import { createLogger } from '../../src/common/log.js';
import { sendMllp } from '../../src/hl7/mllp.js';
import { parseMessage } from '../../src/hl7/message.js';
import { DmpServer } from '../../src/simulators/dmp/server.js';
import { imagingReportCda, oruR01 } from '../../src/simulators/ris/reports.js';
import { XdsClient } from '../../src/xds/client.js';
import { cx } from '../../src/xds/metadata.js';
import { FrOid } from '../../src/xds/vocabulary.js';
import { issueProfessionalToken } from '../../src/auth/professional-token.js';
import { SourceBoxError } from '../../src/consumer/source-box.js';
import { PacsGateway } from '../../src/source/pacs.js';
import { StudyCache } from '../../src/source/study-cache.js';

const skip = haveCommand('Orthanc') ? false : 'Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)';

const INS = '280067512345690';
const PRO = { id: '810002909371', familyName: 'RADIO', givenName: 'Jeanne', profession: '10', specialty: 'SM44', acr: 'eidas1' };
type Node = Awaited<ReturnType<typeof startTestNode>>;

/** One HTTPS GET with whatever credentials a test caller has; the time the first body byte came is kept. */
function rawGet(url: string, pki: TestPki, opts: { cert?: string; key?: string; token?: string; accept?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer; firstByteAt: number }> {
  return new Promise((resolve, reject) => {
    const req = https.get(
      url,
      {
        ca: readFileSync(pki.ca),
        ...(opts.cert ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key!) } : {}),
        headers: { accept: opts.accept ?? 'multipart/related; type="application/dicom"; transfer-syntax=*', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let firstByteAt = 0;
        res.on('data', (c: Buffer) => {
          firstByteAt ||= Date.now();
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), firstByteAt }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}

function kosRetrieveUrls(part10: Buffer): string[] {
  const dict = dcmjs.data.DicomMessage.readFile(part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.length) as ArrayBuffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dict.dict) as any;
  return [[ds.CurrentRequestedProcedureEvidenceSequence].flat()[0].ReferencedSeriesSequence].flat().map((s: any) => s.RetrieveURL);
}

describe('DRIMbox exchange: images served by the source box to trusted consumer boxes only', { skip }, () => {
  let work: string;
  let pki: TestPki;
  let orthanc: Orthanc;
  let dmp: DmpServer;
  let study: GeneratedStudy;
  let a: Node;
  let b: Node;
  let intruder: Node;
  let boxes: Record<'a' | 'b' | 'c' | 'd' | 'stranger', { cert: string; key: string; subjectDn: string }>;
  let trustListFile: string;
  let sign: (entries: Array<{ domain: string; subjectDn: string }>, version: number) => Promise<string>;
  let retrieveUrls: string[];
  const storedAtA: number[] = [];

  const token = (box: { key: string }, issuer: string, audience = new URL(a.exchange!.wadoRsBase).origin, lifetimeSeconds = 120) =>
    issueProfessionalToken(PRO, { issuer, audience, privateKeyPem: readFileSync(box.key), lifetimeSeconds, patient: INS });
  const pacsFetches = async () => (await a.metrics.registry.getSingleMetricAsString('opendrim_exchange_pacs_instances_total')).match(/ (\d+)$/m)?.[1];
  const orthancSops = async (studyUid: string) => (await orthanc.api('POST', '/tools/find', { Level: 'Instance', Query: { StudyInstanceUID: studyUid }, Expand: true })).map((i: any) => i.MainDicomTags.SOPInstanceUID).sort();
  const boxNode = (box: { cert: string; key: string }, domain: string, aeTitle: string, extra: Record<string, unknown> = {}) =>
    startTestNode({ aeTitle, dicomTlsPort: 0, tls: { cert: box.cert, key: box.key, ca: pki.ca }, exchange: { port: 0, domain, trustList: { file: trustListFile, authority: path.join(work, 'authority.pem') } }, ...extra });

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'exchange-it-'));
    pki = makeTestPki();
    boxes = {
      a: issueBoxCertificate(pki, 'drimbox.chu-a.test', 'CHU A'),
      b: issueBoxCertificate(pki, 'drimbox.cabinet-b.test', 'Cabinet B'),
      c: issueBoxCertificate(pki, 'drimbox.intrus.test', 'Intrus'),
      d: issueBoxCertificate(pki, 'drimbox.clinique-d.test', 'Clinique D'),
      stranger: issueBoxCertificate(pki, 'drimbox.ailleurs.test', 'Ailleurs', true),
    };
    // The list authority (the ANS in real life) signs the list of boxes; C is not on it.
    const authority = await generateKeyPair('ES256', { extractable: true });
    writeFileSync(path.join(work, 'authority.pem'), await exportSPKI(authority.publicKey));
    sign = (entries, version) => new CompactSign(new TextEncoder().encode(JSON.stringify({ issuer: 'ANS (test)', issuedAt: new Date().toISOString(), version, entries }))).setProtectedHeader({ alg: 'ES256' }).sign(authority.privateKey);
    trustListFile = path.join(work, 'trust-list.jws');
    writeFileSync(trustListFile, await sign([{ domain: 'drimbox.chu-a.test', subjectDn: boxes.a.subjectDn }, { domain: 'drimbox.cabinet-b.test', subjectDn: boxes.b.subjectDn }, { domain: 'drimbox.clinique-d.test', subjectDn: boxes.d.subjectDn }], 1));

    study = generateStudy({ out: path.join(work, 'study'), modality: 'CT', series: 3, slices: 12, rows: 128, cols: 128, patientId: INS, patientName: 'PAT-ECHANGE^CAMILLE', accession: 'ACC-XCH-1' });
    orthanc = await startOrthanc({ name: 'chu-a-pacs', aet: 'PACS' });
    for (const f of study.files) await orthanc.api('POST', '/instances', readFileSync(f));
    dmp = await new DmpServer({ host: '127.0.0.1', port: 0, dataDir: path.join(work, 'dmp'), log: createLogger('silent') }).start();
    a = await boxNode(boxes.a, 'drimbox.chu-a.test', 'DRIMBOXA', {
      peers: [{ aeTitle: 'PACS', host: '127.0.0.1', port: orthanc.dicomPort }],
      source: { pacs: 'PACS', dmp: { registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` }, organisation: { finess: '750712184', name: 'CHU A' } },
    });
    a.ingestor.onStored(() => storedAtA.push(Date.now()));
    b = await boxNode(boxes.b, 'drimbox.cabinet-b.test', 'DRIMBOXB');
    intruder = await boxNode(boxes.c, 'drimbox.intrus.test', 'INTRUS');
  });
  after(async () => {
    await Promise.all([a?.cleanup(), b?.cleanup(), intruder?.cleanup()]);
    await dmp?.close();
    await orthanc?.stop();
    rmSync(work, { recursive: true, force: true });
    rmSync(pki.dir, { recursive: true, force: true });
  });

  test('the KOS published for a signed report points at the exchange port of the source box', async () => {
    const spec = { ins: INS, ipp: 'IPP-A-7', family: 'PAT-ECHANGE', given: 'CAMILLE', birthDate: '19800615', sex: 'F' as const, studyUid: study.studyUid, accessionNumber: 'ACC-XCH-1', setId: 'B1C2D3E4-0000-4000-8000-000000000001', version: 1 };
    const ack = parseMessage(await sendMllp('127.0.0.1', a.hl7Port!, oruR01(spec, imagingReportCda(spec))));
    assert.equal(ack.segment('MSA')!.get(1), 'AA', ack.segment('ERR')?.get(8));
    await a.publisher!.queue.settled();
    const xds = new XdsClient({ registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` });
    const kos = (await xds.findDocuments({ patientId: cx(INS, FrOid.insNirTest) })).objects.documents.find((d) => d.mimeType === 'application/dicom')!;
    const [doc] = await xds.retrieve([{ repositoryUniqueId: kos.repositoryUniqueId!, documentUniqueId: kos.uniqueId }]);
    retrieveUrls = kosRetrieveUrls(doc!.content);
    assert.equal(retrieveUrls.length, 3);
    for (const u of retrieveUrls) assert.ok(u.startsWith(`${a.exchange!.wadoRsBase}/studies/${study.studyUid}/series/`), u);
    assert.equal(await pacsFetches(), '0', 'publishing alone brings nothing from the PACS');
  });

  test('a study not yet at the source box is fetched from its PACS (C-GET) and streamed to the caller as instances arrive', async () => {
    const url = `${a.exchange!.wadoRsBase}/studies/${study.studyUid}`;
    storedAtA.length = 0;
    const res = await rawGet(url, pki, { ...boxes.b, token: await token(boxes.b, 'drimbox.cabinet-b.test') });
    assert.equal(res.status, 200, res.body.toString().slice(0, 300));
    const parts = res.body.toString('latin1').split(/\r\n--opendrim-[0-9a-f]+/).filter((p) => p.includes('Content-Type: application/dicom'));
    assert.equal(parts.length, study.sopUids.length);
    assert.equal(storedAtA.length, study.sopUids.length, 'the source brought every instance from its PACS');
    // The caller had its first instance before the source had received the last one from the PACS.
    assert.ok(res.firstByteAt < storedAtA[storedAtA.length - 1]!, `first byte at ${res.firstByteAt}, last instance stored at ${storedAtA.at(-1)}`);
    assert.equal(await pacsFetches(), String(study.sopUids.length));
  });

  test('consumer box B fetches each series named in the KOS through A (served from cache), and holds exactly what Orthanc holds', async () => {
    let received = 0;
    for (const retrieveUrl of retrieveUrls) received += (await b.sourceBoxes!.importExam({ retrieveUrl, patient: INS }, PRO)).received;
    assert.equal(received, study.sopUids.length);
    assert.deepEqual((await b.index.listInstances({ studyUid: study.studyUid })).map((i) => i.sopUid).sort(), await orthancSops(study.studyUid));
    assert.equal(await pacsFetches(), String(study.sopUids.length), 'no second retrieve from the PACS');
    // Metadata for a viewer, from A's index.
    const meta = await rawGet(`${a.exchange!.wadoRsBase}/studies/${study.studyUid}/series/${study.seriesUids[0]}/metadata`, pki, { ...boxes.b, token: await token(boxes.b, 'drimbox.cabinet-b.test'), accept: 'application/dicom+json' });
    assert.equal(meta.status, 200);
    const json = JSON.parse(meta.body.toString());
    assert.equal(json.length, 12);
    assert.ok(String(json[0]['7FE00010'].BulkDataURI).startsWith(a.exchange!.wadoRsBase));
    const audit = await b.audit.search({ action: 'consumer.retrieve' });
    assert.equal(audit.length, 3);
    assert.ok(audit.every((r) => r.outcome === 'success' && r.actorId === PRO.id && r.patientId === INS));
  });

  test('C-MOVE to the source box works as the other way of bringing a series from the PACS', async () => {
    const other = generateStudy({ out: path.join(work, 'other'), modality: 'MR', series: 1, slices: 5, rows: 64, cols: 64, patientId: INS });
    for (const f of other.files) await orthanc.api('POST', '/instances', readFileSync(f));
    await orthanc.api('PUT', '/modalities/DRIMBOXA', { AET: 'DRIMBOXA', Host: '127.0.0.1', Port: a.dicomPort });
    const moving = new StudyCache({
      db: a.database.db,
      index: a.index,
      ingestor: a.ingestor,
      blobs: a.blobs,
      pacs: new PacsGateway({ aeTitle: 'PACS', host: '127.0.0.1', port: orthanc.dicomPort }, 'DRIMBOXA'),
      retrieve: 'C-MOVE',
      aeTitle: 'DRIMBOXA',
      limits: { maxBytes: 1e12, maxAgeMs: 3600_000, minResidencyMs: 0 },
      log: createLogger('silent'),
    });
    const got: string[] = [];
    for await (const i of moving.instances({ studyUid: other.studyUid })) got.push(i.sopUid);
    assert.deepEqual(got.sort(), await orthancSops(other.studyUid));
  });

  test('refused: no certificate, a foreign authority, a box not on the trust list, no token, a misaddressed, expired or borrowed token', async () => {
    const url = `${a.exchange!.wadoRsBase}/studies/${study.studyUid}`;
    const goodB = await token(boxes.b, 'drimbox.cabinet-b.test');
    const cases: Array<[string, Awaited<ReturnType<typeof rawGet>>, number, RegExp]> = [
      ['no client certificate', await rawGet(url, pki, { token: goodB }), 403, /client certificate is required/],
      ['certificate from another authority', await rawGet(url, pki, { ...boxes.stranger, token: goodB }), 403, /not accepted/],
      ['box not on the trust list', await rawGet(url, pki, { ...boxes.c, token: await token(boxes.c, 'drimbox.intrus.test') }), 403, /not in the trust list in force \(version 1\)/],
      ['no professional token', await rawGet(url, pki, boxes.b), 401, /professional token is required/],
      ['token for another box', await rawGet(url, pki, { ...boxes.b, token: await token(boxes.b, 'drimbox.cabinet-b.test', 'https://drimbox.elsewhere.test') }), 401, /claim "aud"/],
      ['token claiming another issuer', await rawGet(url, pki, { ...boxes.b, token: await token(boxes.b, 'drimbox.clinique-d.test') }), 401, /claim "iss"/],
      ['token living too long', await rawGet(url, pki, { ...boxes.b, token: await token(boxes.b, 'drimbox.cabinet-b.test', undefined, 7200) }), 401, /longer than the 600 s accepted/],
      // B's token replayed by D (also trusted): it was signed with B's key, not D's.
      ['token borrowed by another trusted box', await rawGet(url, pki, { ...boxes.d, token: goodB }), 401, /signature does not match|claim "iss"/],
    ];
    for (const [what, res, status, reason] of cases) {
      assert.equal(res.status, status, `${what}: ${res.body.toString()}`);
      assert.match(JSON.parse(res.body.toString()).error, reason, what);
      assert.ok(!res.body.includes(Buffer.from('DICM')), `${what}: no image data`);
      if (status === 401) assert.match(String(res.headers['www-authenticate']), /^Bearer realm="opendrim"/);
    }
    // The intruding box, through the product's own client, gets the refusal explained.
    await assert.rejects(intruder.sourceBoxes!.importExam({ retrieveUrl: retrieveUrls[0]!, patient: INS }, PRO), (e: Error) => e instanceof SourceBoxError && e.status === 403 && /not in the trust list/.test(e.message));
    assert.equal((await intruder.index.listInstances({ studyUid: study.studyUid })).length, 0);

    // Every access, granted or refused, is in A's audit trail, and the chain verifies.
    await a.audit.flush();
    const records = await a.audit.search({ studyUid: study.studyUid, limit: 1000 });
    const granted = records.filter((r) => r.action.startsWith('exchange.') && r.outcome === 'success');
    assert.ok(granted.length >= 5);
    assert.ok(granted.every((r) => r.actorType === 'practitioner' && r.actorId === PRO.id && r.patientId === INS && r.detail.box === 'drimbox.cabinet-b.test'));
    const refused = records.filter((r) => r.outcome === 'refused');
    assert.equal(refused.length, cases.length + 1);
    assert.ok(refused.some((r) => r.actorId === 'drimbox.intrus.test' || String(r.detail.certificateDn).includes('drimbox.intrus.test')));
    assert.ok(refused.every((r) => typeof r.detail.reason === 'string' && (r.detail.reason as string).length > 10));
    assert.equal((await a.audit.verify()).ok, true);
  });

  test('QIDO-RS on the exchange port: a box may search the patient its professional acts for, and only that one', async () => {
    const goodB = await token(boxes.b, 'drimbox.cabinet-b.test');
    const found = await rawGet(`${a.exchange!.wadoRsBase}/studies?PatientID=${INS}`, pki, { ...boxes.b, token: goodB });
    assert.equal(found.status, 200, found.body.toString());
    const rows = JSON.parse(found.body.toString()) as Array<Record<string, { Value?: string[] }>>;
    const mine = rows.find((r) => r['0020000D']?.Value?.[0] === study.studyUid);
    assert.ok(mine, 'the patient’s study in A’s PACS is found');
    assert.equal(mine['00081190']?.Value?.[0], `${a.exchange!.wadoRsBase}/studies/${study.studyUid}`);
    const other = await rawGet(`${a.exchange!.wadoRsBase}/studies?PatientID=180017512345633`, pki, { ...boxes.b, token: goodB });
    assert.equal(other.status, 403);
    assert.match(JSON.parse(other.body.toString()).error, /only the patient its professional acts for/);
    assert.equal((await rawGet(`${a.exchange!.wadoRsBase}/studies`, pki, { ...boxes.b, token: goodB })).status, 400);
    assert.equal((await rawGet(`${a.exchange!.wadoRsBase}/studies?PatientID=${INS}`, pki, boxes.b)).status, 401, 'no token, no search');
  });

  test('a tampered trust list is refused and the one in force stays; a new signed list without B shuts B out', async () => {
    const url = `${a.exchange!.wadoRsBase}/studies/${study.studyUid}/series/${study.seriesUids[0]}/metadata`;
    const asB = async () => rawGet(url, pki, { ...boxes.b, token: await token(boxes.b, 'drimbox.cabinet-b.test'), accept: 'application/dicom+json' });
    const good = readFileSync(trustListFile, 'utf8');
    const [h, p, s] = good.split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    payload.entries.push({ domain: 'drimbox.intrus.test', subjectDn: boxes.c.subjectDn });
    writeFileSync(trustListFile, `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`);
    const r1 = await a.trustList!.reload();
    assert.equal(r1.ok, false);
    assert.match((r1 as { error: string }).error, /signature does not verify/);
    assert.equal((await asB()).status, 200, 'the previous list stays in force');
    assert.equal((await rawGet(url, pki, { ...boxes.c, token: await token(boxes.c, 'drimbox.intrus.test') })).status, 403, 'the forged entry has no effect');

    writeFileSync(trustListFile, await sign([{ domain: 'drimbox.chu-a.test', subjectDn: boxes.a.subjectDn }], 2));
    assert.deepEqual(await a.trustList!.reload(), { ok: true, entries: 1, version: 2 });
    const r2 = await asB();
    assert.equal(r2.status, 403);
    assert.match(JSON.parse(r2.body.toString()).error, /not in the trust list in force \(version 2\)/);
  });
});
