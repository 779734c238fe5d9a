import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dcmjs from 'dcmjs';
import { openDatabase } from './db.js';
import { migrateToLatest } from './migrations.js';
import { StudyIndex } from './study-index.js';
import { FsBlobStore } from './blobs.js';
import { Ingestor } from './ingest.js';
import { createLogger } from '../common/log.js';
import { newUid } from '../../test/harness/gen-study.js';
import { even, le16, tagBytes } from '../../test/harness/raw-dataset.js';
import { fileMetaHeader } from '../dicom/part10.js';

function encapsulatedPdf(bytes: number): { buf: Buffer; sop: string; study: string } {
  const sop = newUid();
  const study = newUid();
  const ds = {
    SOPClassUID: '1.2.840.10008.5.1.4.1.1.104.1',
    SOPInstanceUID: sop,
    StudyInstanceUID: study,
    SeriesInstanceUID: newUid(),
    PatientID: 'PDF1',
    Modality: 'DOC',
    EncapsulatedDocument: Uint8Array.from({ length: bytes }, (_, i) => i % 251).buffer,
    MIMETypeOfEncapsulatedDocument: 'application/pdf',
    _vrMap: { EncapsulatedDocument: 'OB' },
  };
  const meta = { FileMetaInformationVersion: new Uint8Array([0, 1]).buffer, MediaStorageSOPClassUID: ds.SOPClassUID, MediaStorageSOPInstanceUID: sop, TransferSyntaxUID: '1.2.840.10008.1.2.1', ImplementationClassUID: '1.2.3.4' };
  const dict = new dcmjs.data.DicomDict(dcmjs.data.DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(ds);
  return { buf: Buffer.from(dict.write()), sop, study };
}


/** A store in a temporary directory; `ingestor(policy)` builds an ingestor over it. */
async function scratchStore() {
  const dir = mkdtempSync(path.join(tmpdir(), 'ingest-'));
  const database = openDatabase({ dataDir: dir });
  await migrateToLatest(database.db, database.dialect);
  const index = new StudyIndex(database.db, database.dialect);
  const blobs = new FsBlobStore(dir);
  const log = createLogger('silent');
  return {
    index,
    blobs,
    ingestor: (duplicates: 'keep' | 'overwrite' = 'keep') => new Ingestor(blobs, index, { duplicates, maxInstanceBytes: 1 << 30, log }),
    async cleanup() {
      await blobs.close();
      await database.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('an object without pixel data larger than the header prefix is indexed whole', async () => {
  const store = await scratchStore();
  const { index } = store;
  const ingestor = store.ingestor();
  try {
    const pdf = encapsulatedPdf(300_000);
    const w = ingestor.begin();
    // Written in PDU-sized pieces, as a network receive would.
    for (let i = 0; i < pdf.buf.length; i += 16_384) w.write(pdf.buf.subarray(i, i + 16_384));
    const r = await ingestor.commit(w);
    assert.equal(r.outcome, 'stored');
    const rows: string[] = [];
    for await (const m of index.metadata({ studyUid: pdf.study })) rows.push(m);
    const json = JSON.parse(rows[0]!);
    assert.deepEqual(json['00420012'].Value, ['application/pdf'], 'attribute after the prefix is kept');
    assert.match(json['00420011'].BulkDataURI, /\/bulk\/00420011$/);
  } finally {
    await store.cleanup();
  }
});

test('re-receiving an instance: kept by default, replaced with duplicates=overwrite', async () => {
  const store = await scratchStore();
  const { index, blobs } = store;
  try {
    const first = encapsulatedPdf(1000);
    const second = Buffer.from(first.buf.toString('latin1').replace('application/pdf', 'application/xyz'), 'latin1');
    const put = async (ing: Ingestor, buf: Buffer) => {
      const w = ing.begin();
      w.end(buf);
      return ing.commit(w);
    };
    const mime = async () => {
      const rows: string[] = [];
      for await (const m of index.metadata({ studyUid: first.study })) rows.push(m);
      return JSON.parse(rows[0]!)['00420012'].Value[0];
    };
    const keep = store.ingestor('keep');
    assert.equal((await put(keep, first.buf)).outcome, 'stored');
    assert.equal((await put(keep, second)).outcome, 'duplicate');
    assert.equal(await mime(), 'application/pdf');
    const overwrite = store.ingestor('overwrite');
    assert.equal((await put(overwrite, second)).outcome, 'replaced');
    assert.equal(await mime(), 'application/xyz');
    assert.equal((await index.counts()).instances, 1);
    assert.deepEqual(await blobs.pendingTempFiles(), []);
  } finally {
    await store.cleanup();
  }
});

test('regression (found by fuzzing): a Transfer Syntax UID element with a numeric VR is refused as not DICOM', async () => {
  const { parseHeader, DicomParseError } = await import('../dicom/part10.js');
  const pdf = encapsulatedPdf(100);
  const b = Buffer.from(pdf.buf);
  const i = b.indexOf(Buffer.from([0x02, 0x00, 0x10, 0x00, 0x55, 0x49])); // (0002,0010) UI
  b[i + 4] = 0x55;
  b[i + 5] = 0x4c; // UL
  assert.throws(() => parseHeader(b, true), DicomParseError);
});

test('an instance whose names use ISO 2022 code extensions (Japanese) is stored and indexed, not refused as malformed', async () => {
  const store = await scratchStore();
  try {
    const study = newUid();
    const el = (tag: number, vr: string, v: Buffer) => Buffer.concat([tagBytes(tag), Buffer.from(vr), le16(v.length), v]);
    // PS3.5 H.3.1: Yamada^Tarou=山田^太郎, JIS X 0208 between ESC $ B and ESC ( B.
    const pn = Buffer.from('Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B', 'latin1');
    const ds = Buffer.concat([
      el(0x00080005, 'CS', even('\\ISO 2022 IR 87')),
      el(0x00080016, 'UI', even('1.2.840.10008.5.1.4.1.1.7', '\0')),
      el(0x00080018, 'UI', even('1.2.3.4.5', '\0')),
      el(0x00100010, 'PN', pn.length % 2 ? Buffer.concat([pn, Buffer.from(' ')]) : pn),
      el(0x00100020, 'LO', even('JP1')),
      el(0x0020000d, 'UI', even(study, '\0')),
      el(0x0020000e, 'UI', even(newUid(), '\0')),
      // A Secondary Capture is an image: a 1×2 pixel one, so that the object is whole.
      el(0x00280002, 'US', le16(1)),
      el(0x00280010, 'US', le16(1)),
      el(0x00280011, 'US', le16(2)),
      el(0x00280100, 'US', le16(8)),
      Buffer.concat([tagBytes(0x7fe00010), Buffer.from('OB'), le16(0), Buffer.from([2, 0, 0, 0]), Buffer.from([7, 9])]),
    ]);
    const w = store.ingestor().begin();
    w.end(Buffer.concat([fileMetaHeader({ sopClassUid: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUid: '1.2.3.4.5', transferSyntaxUid: '1.2.840.10008.1.2.1' }), ds]));
    assert.equal((await store.ingestor().commit(w)).outcome, 'stored');
    const { matches } = await store.index.find({ level: 'STUDY', keys: new Map([['0020000D', study], ['00100010', '']]), limit: 10 });
    assert.deepEqual(matches[0]?.attrs['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎' }] });
  } finally {
    await store.cleanup();
  }
});
