/**
 * The DRIMbox source function end to end on one machine: Orthanc as the local PACS, OpenDRIM with its source
 * function, the DMP stand-in, and a RIS (test client) sending ANS-format HL7 messages over MLLP.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dcmjs from 'dcmjs';
import { generateStudy, newUid, type GeneratedStudy } from '../harness/gen-study.js';
import { haveCommand, startOrthanc, type Orthanc } from '../harness/peers.js';
import { startTestNode } from '../harness/node.js';
import { createLogger } from '../../src/common/log.js';
import { sendMllp } from '../../src/hl7/mllp.js';
import { parseMessage } from '../../src/hl7/message.js';
import { DmpServer } from '../../src/simulators/dmp/server.js';
import { imagingReportCda, omiO23, oruR01, type ReportSpec } from '../../src/simulators/ris/reports.js';
import { XdsClient } from '../../src/xds/client.js';
import { cx, type DocumentEntry } from '../../src/xds/metadata.js';
import { FrOid, Status } from '../../src/xds/vocabulary.js';
import { storeInstances } from '../../src/dicom/scu.js';
import { encodeDataset } from '../../src/dicom/net/dataset.js';
import { fileMetaHeader } from '../../src/dicom/part10.js';

const skip = haveCommand('Orthanc') ? false : 'Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)';

const INS = '279035121518989';
const PATIENT = cx(INS, FrOid.insNirTest);

/** The instances a KOS lists, as sorted SOP Instance UIDs, and the retrieve locations of its series. */
function kosContent(part10: Buffer) {
  const dict = dcmjs.data.DicomMessage.readFile(part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.length) as ArrayBuffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dict.dict) as any;
  const evidence = [ds.CurrentRequestedProcedureEvidenceSequence].flat()[0];
  const series = [evidence.ReferencedSeriesSequence].flat();
  return {
    ds,
    sops: series.flatMap((s: any) => [s.ReferencedSOPSequence].flat().map((i: any) => i.ReferencedSOPInstanceUID)).sort(),
    retrieveUrls: series.map((s: any) => s.RetrieveURL),
    retrieveAes: series.map((s: any) => s.RetrieveAETitle),
  };
}

describe('DRIMbox source: RIS report → DMP (report + KOS of what Orthanc holds)', { skip }, () => {
  let orthanc: Orthanc;
  let dmp: DmpServer;
  let node: Awaited<ReturnType<typeof startTestNode>>;
  let xds: XdsClient;
  let work: string;
  let study: GeneratedStudy;
  let spec: ReportSpec;
  const setId = 'D52DE737-001D-4031-B571-0A0ED7C42300';

  /** Sends a message and, once acknowledged, waits for the publication queue to have worked it through. */
  const send = async (msg: string) => {
    const reply = parseMessage(await sendMllp('127.0.0.1', node.hl7Port!, msg));
    await node.publisher!.queue.settled();
    return reply;
  };
  const ack = (m: ReturnType<typeof parseMessage>) => ({ code: m.segment('MSA')!.get(1), text: m.segment('ERR')?.get(8) ?? '', location: m.segment('ERR') ? `${m.segment('ERR')!.get(2, 1)}-${m.segment('ERR')!.get(2, 3)}` : '' });
  const approved = async () => (await xds.findDocuments({ patientId: PATIENT })).objects.documents;
  const byType = (docs: DocumentEntry[], mime: string) => docs.filter((d) => d.mimeType === mime);
  async function retrieveKos(d: DocumentEntry) {
    const [doc] = await xds.retrieve([{ repositoryUniqueId: d.repositoryUniqueId!, documentUniqueId: d.uniqueId }]);
    return kosContent(doc!.content);
  }
  async function orthancSops(): Promise<string[]> {
    const found = await orthanc.api('POST', '/tools/find', { Level: 'Instance', Query: { StudyInstanceUID: study.studyUid }, Expand: true });
    return found.map((i: any) => i.MainDicomTags.SOPInstanceUID).sort();
  }

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'source-it-'));
    study = generateStudy({ out: path.join(work, 'study'), modality: 'CT', series: 2, slices: 4, rows: 64, cols: 64, patientId: INS, patientName: 'PAT-TROIS^DOMINIQUE', accession: 'ACC-SRC-1' });
    orthanc = await startOrthanc({ name: 'source-pacs', aet: 'PACS' });
    for (const f of study.files) await orthanc.api('POST', '/instances', readFileSync(f));
    dmp = await new DmpServer({ host: '127.0.0.1', port: 0, dataDir: path.join(work, 'dmp'), log: createLogger('silent') }).start();
    xds = new XdsClient({ registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` });
    node = await startTestNode({
      aeTitle: 'DRIMBOX',
      publicUrl: 'https://drimbox.example.fr',
      peers: [{ aeTitle: 'PACS', host: '127.0.0.1', port: orthanc.dicomPort }],
      source: {
        pacs: 'PACS',
        dmp: { registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` },
        organisation: { finess: '750803447', name: 'Centre de radiologie OpenDRIM' },
        viewerUrlTemplate: 'https://drimbox.example.fr/viewer?study={studyUid}',
      },
    });
    spec = { ins: INS, ipp: 'IPP101', family: 'PAT-TROIS', given: 'DOMINIQUE', birthDate: '19790328', sex: 'F', studyUid: study.studyUid, accessionNumber: 'ACC-SRC-1', setId, version: 1 };
  });
  after(async () => {
    await node?.cleanup();
    await dmp?.close();
    await orthanc?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test('an ORU^R01 in the ANS format publishes the CDA and a KOS listing exactly the instances in Orthanc', async () => {
    const cda = imagingReportCda(spec);
    const a = ack(await send(oruR01(spec, cda, { flags: { INVISIBLE_PATIENT: 'Y' } })));
    assert.deepEqual(a, { code: 'AA', text: '', location: '' });
    const docs = await approved();
    assert.equal(docs.length, 2);
    const [report] = byType(docs, 'text/xml');
    const [kos] = byType(docs, 'application/dicom');
    assert.ok(report && kos);
    assert.equal(report.typeCode.code, '18748-4');
    assert.equal(report.classCode.code, '10');
    assert.equal(kos.typeCode.code, 'IMG-KOS');
    assert.equal(kos.formatCode.code, '1.2.840.10008.5.1.4.1.1.88.59');
    assert.equal(kos.formatCode.scheme, '1.2.840.10008.2.6.1');
    assert.ok(report.confidentialityCodes.some((c) => c.code === 'INVISIBLE_PATIENT' && c.scheme === FrOid.dmpConfidentiality), 'OBX flag carried into the metadata');
    assert.ok(!report.confidentialityCodes.some((c) => c.code === 'MASQUE_PS'));
    assert.ok(report.eventCodes.some((c) => c.code === 'CT'));
    assert.ok(report.referenceIdList!.some((r) => r.startsWith(`${study.studyUid}^`)));
    assert.match(report.authors[0]!.person!, /^801234567890\^MARTIN\^Claire/);
    const [stored] = await xds.retrieve([{ repositoryUniqueId: report.repositoryUniqueId!, documentUniqueId: report.uniqueId }]);
    assert.equal(stored!.content.toString('utf8'), cda, 'the CDA is published byte for byte');

    const k = await retrieveKos(kos);
    assert.deepEqual(k.sops, await orthancSops());
    assert.equal(k.sops.length, 8);
    assert.equal(k.ds.PatientID, INS);
    assert.equal(k.ds.IssuerOfPatientID, 'ASIP-SANTE-INS-NIR');
    assert.equal([k.ds.ConceptNameCodeSequence].flat()[0].CodeValue, '113030');
    assert.ok(k.retrieveUrls.every((u: string) => u.startsWith(`https://drimbox.example.fr/dicom-web/studies/${study.studyUid}/series/`)));
    assert.ok(k.retrieveAes.every((ae: string) => ae === 'DRIMBOX'));
    assert.equal(kos.uniqueId, k.ds.SOPInstanceUID);

    // The same message again (a RIS retry) changes nothing.
    assert.equal(ack(await send(oruR01(spec, cda, { flags: { INVISIBLE_PATIENT: 'Y' } }))).code, 'AA');
    assert.equal((await approved()).length, 2);
  });

  test('an amended report (same setId, version 2) replaces report and KOS (RPLC)', async () => {
    const before = await approved();
    spec = { ...spec, version: 2, text: 'Addendum: nodule de 4 mm.' };
    assert.equal(ack(await send(oruR01(spec, imagingReportCda(spec)))).code, 'AA');
    const after = await approved();
    assert.equal(after.length, 2);
    for (const old of before) assert.ok(!after.some((d) => d.entryUUID === old.entryUUID), 'previous versions no longer Approved');
    const deprecated = (await xds.findDocuments({ patientId: PATIENT, status: [Status.deprecated] })).objects.documents;
    assert.deepEqual(deprecated.map((d) => d.entryUUID).sort(), before.map((d) => d.entryUUID).sort());
    assert.equal(byType(after, 'text/xml')[0]!.version, '2');
    assert.equal(byType(after, 'application/dicom')[0]!.lid, byType(before, 'application/dicom')[0]!.lid);
  });

  test('a new series (OMI^O23) and an IOCM rejection note each replace the KOS with the new content', async () => {
    const extra = generateStudy({ out: path.join(work, 'extra'), modality: 'CT', series: 1, slices: 3, rows: 64, cols: 64, patientId: INS, patientName: 'PAT-TROIS^DOMINIQUE', accession: 'ACC-SRC-1', studyUid: study.studyUid });
    for (const f of extra.files) await orthanc.api('POST', '/instances', readFileSync(f));
    const reportBefore = byType(await approved(), 'text/xml')[0]!;
    assert.equal(ack(await send(omiO23(spec))).code, 'AA');
    let docs = await approved();
    assert.equal(byType(docs, 'text/xml')[0]!.entryUUID, reportBefore.entryUUID, 'the report is untouched');
    let k = await retrieveKos(byType(docs, 'application/dicom')[0]!);
    assert.equal(k.sops.length, 11);
    assert.deepEqual(k.sops, await orthancSops());

    // The PACS sends a rejection note (KOS titled 113001) for one instance to the DRIMbox.
    const rejected = study.sopUids[0]!;
    const sopUid = newUid();
    const note = Buffer.concat([
      fileMetaHeader({ sopClassUid: '1.2.840.10008.5.1.4.1.1.88.59', sopInstanceUid: sopUid, transferSyntaxUid: '1.2.840.10008.1.2.1' }),
      encodeDataset(
        {
          '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.88.59'] },
          '00080018': { vr: 'UI', Value: [sopUid] },
          '00080060': { vr: 'CS', Value: ['KO'] },
          '00100020': { vr: 'LO', Value: [INS] },
          '0020000D': { vr: 'UI', Value: [study.studyUid] },
          '0020000E': { vr: 'UI', Value: [newUid()] },
          '0040A040': { vr: 'CS', Value: ['CONTAINER'] },
          '0040A043': { vr: 'SQ', Value: [{ '00080100': { vr: 'SH', Value: ['113001'] }, '00080102': { vr: 'SH', Value: ['DCM'] }, '00080104': { vr: 'LO', Value: ['Rejected for Quality Reasons'] } }] },
          '0040A375': { vr: 'SQ', Value: [{ '0020000D': { vr: 'UI', Value: [study.studyUid] }, '00081115': { vr: 'SQ', Value: [{ '0020000E': { vr: 'UI', Value: [study.seriesUids[0]!] }, '00081199': { vr: 'SQ', Value: [{ '00081150': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.2'] }, '00081155': { vr: 'UI', Value: [rejected] } }] } }] } }] },
        },
        '1.2.840.10008.1.2.1',
      ),
    ]);
    const notePath = path.join(work, 'rejection.dcm');
    writeFileSync(notePath, note);
    const r = await storeInstances({ aeTitle: 'DRIMBOX', host: '127.0.0.1', port: node.dicomPort }, 'PACS', [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.88.59', sopInstanceUid: sopUid, transferSyntaxUid: '1.2.840.10008.1.2.1', path: notePath }]);
    assert.equal(r.completed, 1);
    for (let i = 0; i < 100; i++) {
      docs = await approved();
      k = await retrieveKos(byType(docs, 'application/dicom')[0]!);
      if (k.sops.length === 10) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(k.sops.length, 10);
    assert.ok(!k.sops.includes(rejected), 'the rejected instance is no longer in the manifest');
    // Nothing changed since: another OMI leaves the manifest as it is.
    const kosId = byType(docs, 'application/dicom')[0]!.entryUUID;
    assert.equal(ack(await send(omiO23(spec))).code, 'AA');
    assert.equal(byType(await approved(), 'application/dicom')[0]!.entryUUID, kosId);
  });

  test('bad requests get AE with an ERR naming the problem, and publish nothing', async () => {
    const count = (await approved()).length;
    const noIns = ack(await send(oruR01({ ...spec, ins: '' , setId: 'OTHER-SET' }, imagingReportCda({ ...spec, ins: '', setId: 'OTHER-SET' }), { withoutIns: true })));
    assert.equal(noIns.code, 'AE');
    assert.match(noIns.text, /no INS/);
    assert.equal(noIns.location, 'PID-3');
    // An exam not yet in the PACS may still arrive: the report is accepted, kept and retried, not refused.
    const missingStudy = { ...spec, setId: 'MISSING-STUDY', studyUid: newUid(), accessionNumber: 'NOPE' };
    const notInPacs = ack(await send(oruR01(missingStudy, imagingReportCda(missingStudy))));
    assert.equal(notInPacs.code, 'AA');
    const waiting = await node.publisher!.queue.pending({ examKey: missingStudy.studyUid });
    assert.equal(waiting.length, 1);
    assert.match(waiting[0]!.error ?? '', /not in the local PACS/);
    const brokenCda = ack(await send(oruR01({ ...spec, setId: 'BROKEN' }, '<ClinicalDocument><unclosed></ClinicalDocument>')));
    assert.equal(brokenCda.code, 'AE');
    assert.match(brokenCda.text, /not readable XML/);
    const adt = parseMessage(await sendMllp('127.0.0.1', node.hl7Port!, `MSH|^~\\&|RIS|F|OPENDRIM|F|20240101||ZZZ^Z01|Z1|P|2.5\rPID|||1\r`));
    assert.equal(adt.segment('MSA')!.get(1), 'AR');
    assert.equal((await approved()).length, count);
  });

  test('a de-publication (ORC-1 = CA) deprecates report and KOS', async () => {
    assert.equal(ack(await send(oruR01(spec, imagingReportCda(spec), { orderControl: 'CA' }))).code, 'AA');
    assert.equal((await approved()).length, 0);
    const audit = await node.audit.search({ action: 'source.report.withdraw' });
    assert.ok(JSON.stringify(audit).includes(study.studyUid));
  });
});
