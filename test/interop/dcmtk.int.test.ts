/**
 * OpenDRIM against DCMTK, the reference DICOM toolkit nobody here wrote: echoscu, storescu (a 300-slice
 * 512x512 16-bit CT), findscu at every level, movescu to a storescp, getscu; and refusals DCMTK can provoke.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dcmjs from 'dcmjs';
import { generateStudy, newUid, type GeneratedStudy } from '../harness/gen-study.js';
import { dcmtk, haveCommand, startStorescp } from '../harness/peers.js';
import { startTestNode } from '../harness/node.js';
import { explicitElement, fileMetaHeader } from '../../src/dicom/part10.js';
import { storeInstances } from '../../src/dicom/scu.js';
import { even, implicitElement, item, le16, undefinedSq } from '../harness/raw-dataset.js';

/** The data set of a Part 10 file, after its File Meta Information group. */
function datasetBytes(file: Buffer): Buffer {
  const groupLength = file.readUInt32LE(140);
  return file.subarray(144 + groupLength);
}

const skip = haveCommand('storescu') ? false : 'DCMTK is not installed (apt-get install dcmtk)';

describe('DCMTK interoperability', { skip }, () => {
  let node: Awaited<ReturnType<typeof startTestNode>>;
  let sink: Awaited<ReturnType<typeof startStorescp>>;
  let ct: GeneratedStudy;
  let work: string;
  let peers: Array<{ aeTitle: string; host: string; port: number }>;
  let firstDataDir: string;
  const port = () => String(node.dicomPort);

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'dcmtk-it-'));
    ct = generateStudy({ out: path.join(work, 'ct'), modality: 'CT', series: 1, slices: 300, patientId: 'DCMTK1', patientName: 'MODALITY^TEST', accession: 'ACC-DCMTK' });
    sink = await startStorescp('SINK');
    peers = [
      { aeTitle: 'STORESCU', host: '127.0.0.1', port: 104 },
      { aeTitle: 'FINDSCU', host: '127.0.0.1', port: 104 },
      { aeTitle: 'MOVESCU', host: '127.0.0.1', port: 104 },
      { aeTitle: 'GETSCU', host: '127.0.0.1', port: 104 },
      { aeTitle: 'ECHOSCU', host: '127.0.0.1', port: 104 },
      { aeTitle: 'SINK', host: '127.0.0.1', port: sink.port },
    ];
    node = await startTestNode({ peers });
    firstDataDir = node.config.dataDir;
  });
  after(async () => {
    await node?.cleanup();
    await sink?.stop();
    rmSync(firstDataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  test('echoscu: known AE accepted, unknown calling AE and wrong called AE rejected', async () => {
    assert.equal((await dcmtk('echoscu', ['-aec', 'OPENDRIM', '127.0.0.1', port()])).code, 0);
    const stranger = await dcmtk('echoscu', ['-aet', 'STRANGER', '-aec', 'OPENDRIM', '127.0.0.1', port()]);
    assert.notEqual(stranger.code, 0);
    assert.match(stranger.out, /Calling AE Title Not Recognized|rejected/i);
    const wrongCalled = await dcmtk('echoscu', ['-aec', 'NOTME', '127.0.0.1', port()]);
    assert.notEqual(wrongCalled.code, 0);
    assert.match(wrongCalled.out, /Called AE Title Not Recognized|rejected/i);
  });

  test('storescu: a 300-slice CT is stored completely and idempotently', async () => {
    const r = await dcmtk('storescu', ['-aec', 'OPENDRIM', '127.0.0.1', port(), ...ct.files]);
    assert.equal(r.code, 0, r.out);
    const counts = await node.index.counts();
    assert.equal(counts.instances, 300);
    // The data set is kept byte for byte; only the File Meta Information is rewritten (source AE, implementation).
    const [stored] = await node.index.listInstances({ sopUid: ct.sopUids[7]! });
    assert.deepEqual(datasetBytes(readFileSync(node.blobs.localPath(stored!.blobKey))), datasetBytes(readFileSync(ct.files[7]!)));
    const again = await dcmtk('storescu', ['-aec', 'OPENDRIM', '127.0.0.1', port(), ...ct.files.slice(0, 5)]);
    assert.equal(again.code, 0, again.out);
    assert.equal((await node.index.counts()).instances, 300);
  });

  test('findscu at patient, study, series and image level, with wildcards and ranges', async () => {
    const f = (args: string[]) => dcmtk('findscu', ['-aec', 'OPENDRIM', '127.0.0.1', port(), ...args]);
    const patient = await f(['-P', '-k', 'QueryRetrieveLevel=PATIENT', '-k', 'PatientName=modality*', '-k', 'PatientID', '-k', 'NumberOfPatientRelatedInstances']);
    assert.match(patient.out, /DCMTK1/);
    assert.match(patient.out, /\(0020,1204\) IS \[300 ?\]/);
    const study = await f(['-S', '-k', 'QueryRetrieveLevel=STUDY', '-k', 'StudyDate=20260101-20261231', '-k', 'AccessionNumber=ACC-DCMTK', '-k', 'StudyInstanceUID', '-k', 'ModalitiesInStudy', '-k', 'NumberOfStudyRelatedSeries']);
    assert.ok(study.out.includes(ct.studyUid), study.out);
    assert.match(study.out, /\(0008,0061\) CS \[CT ?\]/);
    const none = await f(['-S', '-k', 'QueryRetrieveLevel=STUDY', '-k', 'StudyDate=19000101-19001231', '-k', 'StudyInstanceUID']);
    assert.doesNotMatch(none.out, /Find Response: 1 \(Pending\)/);
    const series = await f(['-S', '-k', 'QueryRetrieveLevel=SERIES', '-k', `StudyInstanceUID=${ct.studyUid}`, '-k', 'SeriesInstanceUID', '-k', 'Modality', '-k', 'NumberOfSeriesRelatedInstances']);
    assert.ok(series.out.includes(ct.seriesUids[0]!));
    assert.match(series.out, /\(0020,1209\) IS \[300 ?\]/);
    const image = await f(['-S', '-k', 'QueryRetrieveLevel=IMAGE', '-k', `StudyInstanceUID=${ct.studyUid}`, '-k', `SeriesInstanceUID=${ct.seriesUids[0]}`, '-k', 'InstanceNumber=42', '-k', 'SOPInstanceUID']);
    assert.ok(image.out.includes(ct.sopUids[41]!), image.out);
    assert.equal((image.out.match(/Pending/g) ?? []).length, 1);
  });

  test('movescu: the study is sent to a storescp destination; unknown destinations are refused', async () => {
    const r = await dcmtk('movescu', ['-v', '-S', '-aec', 'OPENDRIM', '-aem', 'SINK', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${ct.studyUid}`, '127.0.0.1', port()]);
    assert.equal(r.code, 0, r.out);
    assert.equal(readdirSync(sink.dir).length, 300);
    const unknown = await dcmtk('movescu', ['-S', '-aec', 'OPENDRIM', '-aem', 'NOWHERE', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${ct.studyUid}`, '127.0.0.1', port()]);
    assert.match(unknown.out, /MoveDestinationUnknown|Move Destination Unknown|A801/i);
    await node.audit.flush();
    assert.ok((await node.audit.search({ action: 'dicom.move' })).some((r) => r.outcome === 'refused' && JSON.stringify(r.detail).includes('NOWHERE')), 'the refused C-MOVE is audited');
  });

  test('getscu: a series comes back on the same association', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'getscu-'));
    const r = await dcmtk('getscu', ['-S', '-aec', 'OPENDRIM', '-od', out, '-k', 'QueryRetrieveLevel=SERIES', '-k', `StudyInstanceUID=${ct.studyUid}`, '-k', `SeriesInstanceUID=${ct.seriesUids[0]}`, '127.0.0.1', port()], 300_000);
    assert.equal(r.code, 0, r.out);
    assert.equal(readdirSync(out).length, 300);
  });

  test('compressed instances (JPEG-LS, JPEG lossless from dcmcjpls/dcmcjpeg) are stored and sent on as received', async () => {
    const small = generateStudy({ out: path.join(work, 'small'), modality: 'CT', series: 1, slices: 2, rows: 128, patientId: 'JLS1' });
    const jls = path.join(work, 'jls.dcm');
    const jpl = path.join(work, 'jpl.dcm');
    assert.equal((await dcmtk('dcmcjpls', [small.files[0]!, jls])).code, 0);
    assert.equal((await dcmtk('dcmcjpeg', [small.files[1]!, jpl])).code, 0);
    // storescu proposes uncompressed syntaxes unless told: -xt JPEG-LS lossless, -xs JPEG lossless.
    for (const [flag, file] of [['-xt', jls], ['-xs', jpl]] as const) {
      const r = await dcmtk('storescu', [flag, '-aec', 'OPENDRIM', '127.0.0.1', port(), file]);
      assert.equal(r.code, 0, r.out);
    }
    const stored = await node.index.listInstances({ studyUid: small.studyUid });
    assert.deepEqual(stored.map((i) => i.transferSyntaxUid).sort(), ['1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.4.80']);
    for (const i of stored) {
      const original = i.transferSyntaxUid.endsWith('.80') ? jls : jpl;
      assert.deepEqual(datasetBytes(readFileSync(node.blobs.localPath(i.blobKey))), datasetBytes(readFileSync(original)), 'compressed data set kept byte for byte');
    }
    // Decoded on request (dcmjs-codecs): rendered as JPEG, and retrieved as Explicit VR Little Endian with
    // exactly the original pixels (both syntaxes are lossless).
    const base = `http://127.0.0.1:${node.httpPort}/dicom-web`;
    for (const i of stored) {
      const p = `${base}/studies/${i.studyUid}/series/${i.seriesUid}/instances/${i.sopUid}`;
      const jpeg = Buffer.from(await (await fetch(`${p}/rendered`, { headers: { accept: 'image/jpeg' } })).arrayBuffer());
      assert.deepEqual([...jpeg.subarray(0, 2)], [0xff, 0xd8], `rendered ${i.transferSyntaxUid}`);
      const res = await fetch(p, { headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1' } });
      assert.equal(res.status, 200);
      const body = Buffer.from(await res.arrayBuffer());
      const original = readFileSync(i.transferSyntaxUid.endsWith('.80') ? small.files[0]! : small.files[1]!);
      const pixels = (b: Buffer) => b.subarray(b.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00])) + 12, b.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00])) + 12 + 128 * 128 * 2);
      assert.ok(body.includes(Buffer.from('1.2.840.10008.1.2.1')), 'answered in Explicit VR Little Endian');
      assert.deepEqual(pixels(body), pixels(original), `pixels of the ${i.transferSyntaxUid} instance decoded exactly`);
    }
    const out = await startStorescp('SINK2', ['+xa']);
    try {
      // A new C-MOVE destination needs the node restarted with it configured (same data, same index).
      await node.close(1000);
      node = await startTestNode({ dataDir: firstDataDir, peers: [...peers, { aeTitle: 'SINK2', host: '127.0.0.1', port: out.port }] });
      const mv = await dcmtk('movescu', ['-S', '-aec', 'OPENDRIM', '-aem', 'SINK2', '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${small.studyUid}`, '127.0.0.1', port()]);
      assert.equal(mv.code, 0, mv.out);
      const received = readdirSync(out.dir).map((f) => path.join(out.dir, f));
      assert.equal(received.length, 2);
      const syntaxes = await Promise.all(received.map(async (f) => (await dcmtk('dcmdump', ['+P', '0002,0010', f])).out));
      assert.ok(syntaxes.some((o) => /JPEGLSLossless/.test(o)), syntaxes.join('\n'));
      assert.ok(syntaxes.some((o) => /JPEGLossless/.test(o)), syntaxes.join('\n'));
    } finally {
      await out.stop();
    }
  });

  test('an instance carrying a private sequence encoded as UN of undefined length (PS3.5 6.2.2) is stored as sent, and DCMTK reads the stored file', async () => {
    const sop = newUid();
    const study = newUid();
    const privateItem = Buffer.concat([implicitElement(0x00190010, even('ACME 1.0')), implicitElement(0x00191011, even('PRIVATE'))]);
    const unSequence = undefinedSq(0x00191010, 'UN', [item(privateItem, true)]);
    const body = Buffer.concat([
      explicitElement(0x00080016, 'UI', even('1.2.840.10008.5.1.4.1.1.7', '\0')),
      explicitElement(0x00080018, 'UI', even(sop, '\0')),
      explicitElement(0x00080060, 'CS', even('OT')),
      explicitElement(0x00100010, 'PN', even('UN^SEQUENCE')),
      explicitElement(0x00100020, 'LO', even('UN-1')),
      explicitElement(0x00190010, 'LO', even('ACME 1.0')),
      unSequence,
      explicitElement(0x0020000d, 'UI', even(study, '\0')),
      explicitElement(0x0020000e, 'UI', even(newUid(), '\0')),
      explicitElement(0x00280002, 'US', le16(1)),
      explicitElement(0x00280004, 'CS', even('MONOCHROME2')),
      explicitElement(0x00280010, 'US', le16(4)),
      explicitElement(0x00280011, 'US', le16(4)),
      explicitElement(0x00280100, 'US', le16(8)),
      explicitElement(0x00280101, 'US', le16(8)),
      explicitElement(0x00280102, 'US', le16(7)),
      explicitElement(0x00280103, 'US', le16(0)),
      explicitElement(0x7fe00010, 'OB', Buffer.alloc(16, 0x80)),
    ]);
    const file = path.join(work, 'un-sequence.dcm');
    writeFileSync(file, Buffer.concat([fileMetaHeader({ sopClassUid: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.1' }), body]));
    // DCMTK reads it as valid DICOM (dcmdump), but its storescu would re-encode the UN as a sequence it knows;
    // sent byte for byte, as an archive forwarding what it received would, dcmjs alone would have refused it.
    assert.match((await dcmtk('dcmdump', [file])).out, /\(0019,1010\)/);
    const sent = await storeInstances({ aeTitle: 'OPENDRIM', host: '127.0.0.1', port: node.dicomPort }, 'STORESCU', [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUid: sop, transferSyntaxUid: '1.2.840.10008.1.2.1', path: file }]);
    assert.equal(sent.completed, 1, sent.error);
    assert.equal(await node.index.hasInstance(sop), true);
    const [stored] = await node.index.listInstances({ sopUid: sop });
    assert.equal(stored?.studyUid, study);
    const dump = await dcmtk('dcmdump', [node.blobs.localPath(stored!.blobKey)!]);
    assert.match(dump.out, /\(0019,1010\)/, 'the UN sequence is kept in the stored file');
  });

  test('an instance without Study Instance UID is refused with an error status and not indexed', async () => {
    const sop = newUid();
    const ds = { SOPClassUID: '1.2.840.10008.5.1.4.1.1.7', SOPInstanceUID: sop, SeriesInstanceUID: newUid(), PatientID: 'X', Modality: 'OT' };
    const meta = { FileMetaInformationVersion: new Uint8Array([0, 1]).buffer, MediaStorageSOPClassUID: ds.SOPClassUID, MediaStorageSOPInstanceUID: sop, TransferSyntaxUID: '1.2.840.10008.1.2.1', ImplementationClassUID: '1.2.3.4' };
    const dict = new dcmjs.data.DicomDict(dcmjs.data.DicomMetaDictionary.denaturalizeDataset(meta));
    dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(ds);
    const file = path.join(work, 'no-study.dcm');
    writeFileSync(file, Buffer.from(dict.write()));
    const r = await dcmtk('storescu', ['-v', '-aec', 'OPENDRIM', '127.0.0.1', port(), file]);
    assert.match(r.out, /CannotUnderstand|Cannot understand|0xc000/i);
    assert.equal(await node.index.hasInstance(sop), false);
  });
});
