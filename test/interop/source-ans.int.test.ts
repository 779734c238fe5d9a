/**
 * The source function as the ANS homologation session plays it: one box receives, in order, the report messages of
 * many exams (ansforge/DRIM-M_DATA, "Référencement DRIMBox/Jeux de données"), with the quirks of the ANS data
 * sets reproduced in our own messages: every report shares one setId at version 1, the CDA's accession number
 * (ps3-20:accessionNumber) differs from OBR-18 and from the order number, a report covers two exams, a report
 * comes back with other DMP flags, a de-publication names its exam by its CDA or by OBX-11 = D alone, the DMP is
 * down for a while. After each message: the ACK, the DMP stand-in's registry and the KOS content.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dcmjs from 'dcmjs';
import { generateStudy, newUid } from '../harness/gen-study.js';
import { haveCommand, startOrthanc, type Orthanc } from '../harness/peers.js';
import { startTestNode } from '../harness/node.js';
import { createLogger } from '../../src/common/log.js';
import { DmpExams } from '../../src/consumer/dmp-exams.js';
import { sendMllp } from '../../src/hl7/mllp.js';
import { parseMessage } from '../../src/hl7/message.js';
import { DmpServer } from '../../src/simulators/dmp/server.js';
import { imagingReportCda, oruR01, type ReportSpec } from '../../src/simulators/ris/reports.js';
import { XdsClient } from '../../src/xds/client.js';
import { dmpPatientId, type DocumentEntry } from '../../src/xds/metadata.js';
import { FrOid, Status } from '../../src/xds/vocabulary.js';

const skip = haveCommand('Orthanc') ? false : 'Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)';
/** The issue asks for a minute of DMP outage; OPENDRIM_OUTAGE_SECONDS shortens it when iterating. */
const OUTAGE_SECONDS = Number(process.env.OPENDRIM_OUTAGE_SECONDS ?? 60);

const INS = '279035121518989';
const SHARED_SET_ID = 'D52DE737-001D-4031-B571-0A0ED7C42300';
/** The RIS's own number, the same in OBR-18 of every ANS message whatever the exam. */
const OBR_NUMBER = '09011600123';
const ACCESSION_ROOT = '1.2.250.1.925.994044785528.27';

describe('ANS session, source function: exams played in order on one box', { skip }, () => {
  let orthanc: Orthanc;
  let dmp: DmpServer;
  let dmpPort: number;
  let node: Awaited<ReturnType<typeof startTestNode>>;
  let xds: XdsClient;
  let work: string;
  const studies = new Map<string, { studyUid: string; sopUids: string[] }>();
  const patient = { ins: INS, ipp: 'IPP101', family: 'PAT-TROIS', given: 'DOMINIQUE', birthDate: '19790328', sex: 'F' as const };

  /** One exam of the session: its study in Orthanc (unless held back) and its report spec, setId shared. */
  async function exam(letter: string, n: number, o: { store?: boolean; version?: number; documentId?: string } = {}): Promise<ReportSpec> {
    const studyUid = `1.2.250.1.213.4.5.2.1.${n}.${Date.now() % 100000}`;
    if (o.store !== false) await storeStudy(letter, studyUid);
    else studies.set(letter, { studyUid, sopUids: [] });
    return { ...patient, studyUid, accessionNumber: `ACN${n}`, accessionRoot: ACCESSION_ROOT, placerOrderNumber: `OPN${n}`, setId: SHARED_SET_ID, version: o.version ?? 1, documentId: o.documentId ?? `1.2.250.1.213.4.5.4.${n}`, effectiveTime: '20210108111700+0100', examCode: { code: 'ACQH004', display: 'Scanographie du crâne' }, modality: 'CT', region: { code: '774007', display: 'structure de la tête et/ou du cou' } };
  }
  async function storeStudy(letter: string, studyUid: string) {
    const g = generateStudy({ out: path.join(work, letter), modality: 'CT', series: 1, slices: 2, rows: 32, cols: 32, patientId: 'IPP101', patientName: 'PAT-TROIS^DOMINIQUE', accession: `ACN-${letter}`, studyUid });
    studies.set(letter, { studyUid, sopUids: g.sopUids });
    for (const f of g.files) await orthanc.api('POST', '/instances', readFileSync(f));
  }

  const raw = async (msg: string) => parseMessage(await sendMllp('127.0.0.1', node.hl7Port!, msg));
  const ack = (m: ReturnType<typeof parseMessage>) => ({ code: m.segment('MSA')!.get(1), text: m.segment('ERR')?.get(8) ?? '', location: m.segment('ERR') ? `${m.segment('ERR')!.get(2, 1)}-${m.segment('ERR')!.get(2, 3)}` : '' });
  /** Sends a report message the way the ANS data sets carry it (OBR-18 = the RIS's number) and waits for the queue. */
  async function send(spec: ReportSpec, o: Parameters<typeof oruR01>[2] = {}, cda = imagingReportCda(spec)) {
    const a = ack(await raw(oruR01(spec, cda, { obrAccession: OBR_NUMBER, ...o })));
    await node.publisher!.queue.settled();
    return a;
  }
  const documents = async (status: string[] = [Status.approved]) => (await xds.findDocuments({ patientId: dmpPatientId({ id: INS, oid: FrOid.insNirTest }), status })).objects.documents;
  const ofStudy = (docs: DocumentEntry[], studyUid: string) => docs.filter((d) => d.referenceIdList?.some((r) => r.startsWith(`${studyUid}^`)));
  async function kos(d: DocumentEntry) {
    const [doc] = await xds.retrieve([{ repositoryUniqueId: d.repositoryUniqueId!, documentUniqueId: d.uniqueId }]);
    const part10 = doc!.content;
    const dict = dcmjs.data.DicomMessage.readFile(part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.length) as ArrayBuffer);
    return { part10, ds: dcmjs.data.DicomMetaDictionary.naturalizeDataset(dict.dict) as any };
  }
  const sopsOf = (ds: any) => [ds.CurrentRequestedProcedureEvidenceSequence].flat().flatMap((st: any) => [st.ReferencedSeriesSequence].flat().flatMap((s: any) => [s.ReferencedSOPSequence].flat().map((i: any) => i.ReferencedSOPInstanceUID))).sort();

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'source-ans-'));
    orthanc = await startOrthanc({ name: 'ans-pacs', aet: 'PACS' });
    dmp = await new DmpServer({ host: '127.0.0.1', port: 0, dataDir: path.join(work, 'dmp'), log: createLogger('silent') }).start();
    dmpPort = Number(new URL(dmp.url).port);
    xds = new XdsClient({ registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` });
    node = await startTestNode({
      aeTitle: 'DRIMBOX',
      publicUrl: 'https://drimbox.example.fr',
      peers: [{ aeTitle: 'PACS', host: '127.0.0.1', port: orthanc.dicomPort }],
      source: {
        pacs: 'PACS',
        dmp: { registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` },
        organisation: { finess: '750803447', name: 'Centre de radiologie Ambroise' },
        retry: { firstDelaySeconds: 0.5, maxDelaySeconds: 4, giveUpAfterHours: 1 },
      },
    });
  });
  after(async () => {
    await node?.cleanup();
    await dmp?.close();
    await orthanc?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const C = () => specs.get('C')!;
  const specs = new Map<string, ReportSpec>();

  test('exam C: published with the CDA accession number, its issuer and the order number (not OBR-18)', async () => {
    specs.set('C', await exam('C', 103));
    assert.deepEqual(await send(C(), { flags: { INVISIBLE_PATIENT: 'Y' } }), { code: 'AA', text: '', location: '' });
    const docs = ofStudy(await documents(), C().studyUid!);
    assert.deepEqual(docs.map((d) => d.mimeType).sort(), ['application/dicom', 'text/xml']);
    const kosEntry = docs.find((d) => d.mimeType === 'application/dicom')!;
    assert.deepEqual(kosEntry.referenceIdList, [`ACN103^^^&${ACCESSION_ROOT}&ISO^urn:ihe:iti:xds:2013:accession`, `${C().studyUid}^^^&${kosEntry.referenceIdList![1]!.split('&')[1]}&ISO^urn:ihe:iti:xds:2016:studyInstanceUID`, 'OPN103^^^&1.2.250.1.213.4.5.2.6&ISO^urn:ihe:iti:xds:2013:order']);
    const { ds } = await kos(kosEntry);
    assert.equal(ds.AccessionNumber, 'ACN103', 'the accession number is ps3-20:accessionNumber, not OBR-18');
    const request = [ds.ReferencedRequestSequence].flat()[0];
    assert.equal(request.AccessionNumber, 'ACN103');
    assert.equal([request.IssuerOfAccessionNumberSequence].flat()[0].UniversalEntityID, ACCESSION_ROOT);
    assert.equal(request.PlacerOrderNumberImagingServiceRequest, 'OPN103');
    assert.equal([request.OrderPlacerIdentifierSequence].flat()[0].UniversalEntityID, '1.2.250.1.213.4.5.2.6');
    assert.deepEqual(sopsOf(ds), [...studies.get('C')!.sopUids].sort());
  });

  test('exam E: another exam under the same setId and version is a new publication, not "already published"', async () => {
    specs.set('E', await exam('E', 105));
    assert.equal((await send(specs.get('E')!)).code, 'AA');
    assert.equal(ofStudy(await documents(), specs.get('E')!.studyUid!).length, 2);
    assert.equal(ofStudy(await documents(), C().studyUid!).length, 2, 'exam C untouched');
  });

  test('the same report again (a RIS retry) is idempotent: AA, nothing submitted', async () => {
    const before = (await documents([Status.approved, Status.deprecated])).length;
    assert.equal((await send(C(), { flags: { INVISIBLE_PATIENT: 'Y' } })).code, 'AA');
    assert.equal((await documents([Status.approved, Status.deprecated])).length, before);
  });

  test('the same report with other DMP flags updates the entries\' confidentiality (ITI-57), same uniqueIds', async () => {
    const before = ofStudy(await documents(), C().studyUid!);
    assert.equal((await send(C(), { flags: { INVISIBLE_PATIENT: 'Y', MASQUE_PS: 'Y', MODIF_CONF_CODE: 'Y' } })).code, 'AA');
    const after = ofStudy(await documents(), C().studyUid!);
    assert.equal(after.length, 2);
    assert.deepEqual(after.map((d) => d.uniqueId).sort(), before.map((d) => d.uniqueId).sort(), 'same documents');
    for (const d of after) {
      assert.ok(d.confidentialityCodes.some((c) => c.code === 'MASQUE_PS' && c.scheme === '1.2.250.1.213.1.1.4.13'), `${d.mimeType} now hidden from professionals`);
      assert.equal(d.version, '2');
    }
    const deprecated = ofStudy(await documents([Status.deprecated]), C().studyUid!);
    assert.deepEqual(deprecated.map((d) => d.entryUUID).sort(), before.map((d) => d.entryUUID).sort());
  });

  test('the same document id with other content (another FINESS) is refused with AE naming ClinicalDocument/id', async () => {
    const before = (await documents([Status.approved, Status.deprecated])).length;
    const a = await send({ ...C(), organisation: { finess: '1750803447', name: 'Centre de radiologie Ambroise' } }, { flags: { INVISIBLE_PATIENT: 'Y', MASQUE_PS: 'Y' } });
    assert.equal(a.code, 'AE');
    assert.match(a.text, /ClinicalDocument\/id/);
    assert.equal(a.location, 'OBX-5');
    assert.equal((await documents([Status.approved, Status.deprecated])).length, before);
  });

  test('exam G: a new version (same setId, new id, version 2) replaces report and KOS (RPLC); an older version is refused', async () => {
    specs.set('G1', await exam('G', 108, { documentId: '1.2.250.1.213.4.5.4.407' }));
    assert.equal((await send(specs.get('G1')!)).code, 'AA');
    const v1 = ofStudy(await documents(), specs.get('G1')!.studyUid!);
    assert.equal(v1.length, 2);
    const v2spec = { ...specs.get('G1')!, documentId: '1.2.250.1.213.4.5.4.4072', version: 2, text: 'Compte rendu modifié' };
    assert.equal((await send(v2spec)).code, 'AA');
    const v2 = ofStudy(await documents(), v2spec.studyUid!);
    assert.equal(v2.length, 2);
    assert.equal(v2.find((d) => d.mimeType === 'text/xml')!.uniqueId, '1.2.250.1.213.4.5.4.4072');
    const deprecated = ofStudy(await documents([Status.deprecated]), v2spec.studyUid!);
    assert.deepEqual(deprecated.map((d) => d.entryUUID).sort(), v1.map((d) => d.entryUUID).sort());
    const older = await send({ ...v2spec, documentId: '1.2.250.1.213.4.5.4.4071', version: 1 });
    assert.equal(older.code, 'AE');
    assert.match(older.text, /versionNumber/);
  });

  test('one report, two exams: each study gets its KOS, both linked to the report, both found by the consumer', async () => {
    const a = await exam('M1', 121);
    const b = await exam('M2', 122);
    const spec: ReportSpec = { ...patient, accessionNumber: 'ACN121', setId: SHARED_SET_ID, documentId: '1.2.250.1.213.4.5.4.420', exams: [{ studyUid: a.studyUid, accessionNumber: 'ACN121', accessionRoot: ACCESSION_ROOT, placerOrderNumber: 'OPN121' }, { studyUid: b.studyUid, accessionNumber: 'ACN122', accessionRoot: ACCESSION_ROOT, placerOrderNumber: 'OPN122', modality: 'CT' }] };
    assert.equal((await send(spec)).code, 'AA');
    const docs = await documents();
    const report = docs.find((d) => d.uniqueId === '1.2.250.1.213.4.5.4.420')!;
    assert.ok(report.referenceIdList!.some((r) => r.startsWith(`${a.studyUid}^`)) && report.referenceIdList!.some((r) => r.startsWith(`${b.studyUid}^`)));
    for (const [letter, s] of [['M1', a], ['M2', b]] as const) {
      const manifests = ofStudy(docs, s.studyUid!).filter((d) => d.mimeType === 'application/dicom');
      assert.equal(manifests.length, 1, `one KOS for ${letter}`);
      assert.deepEqual(sopsOf((await kos(manifests[0]!)).ds), [...studies.get(letter)!.sopUids].sort());
    }
    const listed = await new DmpExams(xds).list({ ins: INS, oid: FrOid.insNirTest });
    for (const s of [a, b]) {
      const e = listed.find((x) => x.studyUid === s.studyUid);
      assert.ok(e?.manifest && e.report, `exam ${s.studyUid} found with its report and manifest`);
    }
  });

  test('a report whose images are not in the PACS yet is accepted (AA) and published once they arrive', async () => {
    const spec = await exam('LATE', 130, { store: false });
    assert.equal((await send(spec)).code, 'AA');
    assert.equal(ofStudy(await documents(), spec.studyUid!).length, 0);
    await storeStudy('LATE', spec.studyUid!);
    await node.publisher!.queue.settled({ delayed: true, timeoutMs: 20_000 });
    assert.equal(ofStudy(await documents(), spec.studyUid!).length, 2);
  });

  test('an identity that is not qualified (PID-32 = PROV, or none) is refused with AE on PID-32, audited, nothing sent', async () => {
    const spec = await exam('PROV', 140);
    const before = (await documents([Status.approved, Status.deprecated])).length;
    for (const code of ['PROV', '']) {
      const a = await send(spec, { identityReliability: code });
      assert.equal(a.code, 'AE');
      assert.equal(a.location, 'PID-32');
      assert.match(a.text, /not qualified/);
    }
    assert.equal((await documents([Status.approved, Status.deprecated])).length, before);
    const audit = await node.audit.search({ action: 'source.report.refused' });
    assert.ok(audit.some((r) => JSON.stringify(r.detail).includes('PID-32')));
  });

  test('exam I: a de-publication (ORC-1 = CA) withdraws exactly exam I\'s documents; OBX-11 = D alone withdraws exam E', async () => {
    specs.set('I', await exam('I', 110));
    assert.equal((await send(specs.get('I')!)).code, 'AA');
    assert.equal(ofStudy(await documents(), specs.get('I')!.studyUid!).length, 2);
    const others = (await documents()).filter((d) => !ofStudy([d], specs.get('I')!.studyUid!).length).map((d) => d.entryUUID).sort();
    assert.equal((await send(specs.get('I')!, { orderControl: 'CA' })).code, 'AA');
    assert.equal(ofStudy(await documents(), specs.get('I')!.studyUid!).length, 0);
    assert.equal(ofStudy(await documents([Status.deprecated]), specs.get('I')!.studyUid!).length, 2);
    assert.deepEqual((await documents()).map((d) => d.entryUUID).sort(), others, 'every other exam is still published');
    // OBX-11 = D, ORC-1 = NW: the document is deleted all the same.
    assert.equal((await send(specs.get('E')!, { resultStatus: 'D' })).code, 'AA');
    assert.equal(ofStudy(await documents(), specs.get('E')!.studyUid!).length, 0);
    assert.equal(ofStudy(await documents(), C().studyUid!).length, 2, 'exam C, same patient and setId, is not withdrawn');
  });

  test('a de-publication of an exam never published here is refused with AE', async () => {
    const spec = await exam('NEVER', 150);
    const a = await send(spec, { orderControl: 'CA' });
    assert.equal(a.code, 'AE');
    assert.match(a.text, /nothing to withdraw/);
  });

  test(`the DMP down for ${OUTAGE_SECONDS} s during a batch: every report acknowledged, all published once it is back, none twice`, { timeout: (OUTAGE_SECONDS + 120) * 1000 }, async () => {
    await dmp.close();
    const batch: ReportSpec[] = [];
    for (const n of [160, 161, 162, 163, 164]) batch.push(await exam(`B${n}`, n));
    for (const spec of batch) assert.equal(ack(await raw(oruR01(spec, imagingReportCda(spec), { obrAccession: OBR_NUMBER }))).code, 'AA');
    await new Promise((r) => setTimeout(r, OUTAGE_SECONDS * 1000));
    const waiting = (await node.publisher!.queue.list({ status: 'pending' })).filter((e) => batch.some((b) => b.documentId === e.document_id));
    assert.equal(waiting.length, batch.length, 'all kept while the DMP is down');
    assert.ok(waiting.every((e) => e.attempts >= 1));
    dmp = await new DmpServer({ host: '127.0.0.1', port: dmpPort, dataDir: path.join(work, 'dmp'), log: createLogger('silent') }).start();
    await node.publisher!.queue.settled({ delayed: true, timeoutMs: 30_000 });
    const docs = await documents();
    for (const spec of batch) assert.equal(docs.filter((d) => d.uniqueId === spec.documentId).length, 1, `report ${spec.documentId} published once`);
    const metrics = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
    assert.match(metrics, /opendrim_dmp_publications_total\{outcome="published"\} \d+/);
  });

  test('the KOS is a valid DICOM object for DCMTK (and dciodvfy where installed)', { skip: haveCommand('dcmdump') ? false : 'DCMTK is not installed' }, async () => {
    const kosEntry = ofStudy(await documents(), C().studyUid!).find((d) => d.mimeType === 'application/dicom')!;
    const file = path.join(work, 'kos.dcm');
    writeFileSync(file, (await kos(kosEntry)).part10);
    const dump = execFileSync('dcmdump', ['+L', file], { encoding: 'utf8' });
    for (const tag of ['(0008,0051)', '(0008,0201)', '(0008,1110)', '(0032,1064)', '(0040,0026)', '(0040,2016)', '(0040,a375)', '(0040,a730)']) assert.ok(dump.includes(tag), `${tag} present`);
    assert.match(dump, /\(0040,a043\)[\s\S]*113030/);
    if (haveCommand('dciodvfy')) {
      let out = '';
      try {
        out = execFileSync('dciodvfy', [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (e) {
        out = `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`;
      }
      const errors = out.split('\n').filter((l) => /^Error/.test(l));
      assert.deepEqual(errors, [], out);
    }
  });
});
