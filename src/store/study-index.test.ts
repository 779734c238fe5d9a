import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openDatabase, type Database } from './db.js';
import { migrateToLatest } from './migrations.js';
import { StudyIndex, likePattern } from './study-index.js';
import { FsBlobStore } from './blobs.js';
import { Ingestor, IngestError } from './ingest.js';
import { createLogger } from '../common/log.js';
import { generateStudy, type GeneratedStudy } from '../../test/harness/gen-study.js';
import { testDatabases } from '../../test/harness/databases.js';

const dbs = await testDatabases();

async function ingestFile(ing: Ingestor, file: string) {
  const w = await ing.begin();
  await pipeline(createReadStream(file), w);
  return ing.commit(w);
}

for (const target of dbs) {
  describe(`study index on ${target.name}`, () => {
    let dir: string;
    let database: Database;
    let index: StudyIndex;
    let ingestor: Ingestor;
    let blobs: FsBlobStore;
    let ct: GeneratedStudy;
    let mr: GeneratedStudy;

    before(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'idx-'));
      database = openDatabase({ databaseUrl: target.url, dataDir: dir });
      await migrateToLatest(database.db, database.dialect);
      await migrateToLatest(database.db, database.dialect); // idempotent
      index = new StudyIndex(database.db, database.dialect);
      blobs = new FsBlobStore(dir);
      ingestor = new Ingestor(blobs, index, { duplicates: 'keep', maxInstanceBytes: 10 * 1024 * 1024, log: createLogger('silent') });
      ct = generateStudy({ out: path.join(dir, 'ct'), modality: 'CT', series: 2, slices: 3, rows: 64, patientName: 'Dupont^Hélène', patientId: 'P1', studyDate: '20240110', accession: 'ACC1', ins: '279035121518989' });
      mr = generateStudy({ out: path.join(dir, 'mr'), modality: 'MR', series: 1, slices: 2, rows: 64, patientName: "D'ARC^JEANNE", patientId: 'P2', studyDate: '20250301', accession: 'ACC_2%' });
      for (const f of [...ct.files, ...mr.files]) assert.equal((await ingestFile(ingestor, f)).outcome, 'stored');
    });
    after(async () => {
      await blobs.close();
      await database.close();
      await target.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    const q = (level: 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE', keys: Record<string, string>, limit = 100) =>
      index.find({ level, keys: new Map(Object.entries(keys)), limit });

    test('counts and computed attributes', async () => {
      assert.deepEqual({ ...(await index.counts()), bytes: 0 }, { patients: 2, studies: 2, series: 3, instances: 8, bytes: 0 });
      const { matches } = await q('STUDY', { '0020000D': ct.studyUid });
      assert.equal(matches.length, 1);
      const a = matches[0]!.attrs;
      assert.deepEqual(a['00201206']!.Value, [2]);
      assert.deepEqual(a['00201208']!.Value, [6]);
      assert.deepEqual(a['00080061']!.Value, ['CT']);
      assert.deepEqual(a['00100020']!.Value, ['P1']);
    });

    test('wildcard, case- and accent-insensitive person names', async () => {
      assert.equal((await q('STUDY', { '00100010': 'dupont*' })).matches.length, 1);
      assert.equal((await q('STUDY', { '00100010': 'DUPONT^HELENE' })).matches.length, 1);
      assert.equal((await q('STUDY', { '00100010': "D'ARC^J?ANNE" })).matches.length, 1);
      assert.equal((await q('STUDY', { '00100010': 'DUPON' })).matches.length, 0);
      assert.equal((await q('STUDY', { '00100010': '*' })).matches.length, 2);
    });

    test('date ranges', async () => {
      assert.equal((await q('STUDY', { '00080020': '20240101-20241231' })).matches.length, 1);
      assert.equal((await q('STUDY', { '00080020': '20250101-' })).matches.length, 1);
      assert.equal((await q('STUDY', { '00080020': '-20250301' })).matches.length, 2);
      assert.equal((await q('STUDY', { '00080020': '20240110' })).matches.length, 1);
      await assert.rejects(q('STUDY', { '00080020': '2024-01-10x' }), /not a date/);
    });

    test('list of UIDs and hierarchical levels', async () => {
      assert.equal((await q('STUDY', { '0020000D': `${ct.studyUid}\\${mr.studyUid}` })).matches.length, 2);
      assert.equal((await q('SERIES', { '0020000D': ct.studyUid })).matches.length, 2);
      const series = await q('SERIES', { '0020000E': ct.seriesUids[0]! });
      assert.deepEqual(series.matches[0]!.attrs['00201209']!.Value, [3]);
      assert.equal((await q('IMAGE', { '0020000E': ct.seriesUids[1]! })).matches.length, 3);
      await assert.rejects(q('STUDY', { '00080018': ct.sopUids[0]! }), /cannot be matched at STUDY level/);
    });

    test('modalities in study, other patient IDs, literal % and _ are not wildcards', async () => {
      assert.equal((await q('STUDY', { '00080061': 'MR' })).matches.length, 1);
      assert.equal((await q('STUDY', { '00080061': 'CT\\MR' })).matches.length, 2);
      assert.equal((await q('PATIENT', { '00101000': '279035121518989' })).matches.length, 1);
      assert.equal((await q('STUDY', { '00080050': 'ACC_2%' })).matches.length, 1);
      assert.equal((await q('STUDY', { '00080050': 'ACC%' })).matches.length, 0);
      assert.equal(likePattern("a%b_c*d?\\"), 'a\\%b\\_c%d_\\\\');
    });

    test('injection probes are just values', async () => {
      for (const probe of ["' OR 1=1 --", "P1'; DROP TABLE studies; --", '"; select *', '\\\\*']) {
        const { matches } = await q('STUDY', { '00100020': probe });
        assert.equal(matches.length, 0, probe);
      }
      assert.equal((await index.counts()).studies, 2);
    });

    test('limit and offset page through results', async () => {
      const page1 = await q('IMAGE', { '0020000D': ct.studyUid }, 4);
      assert.equal(page1.matches.length, 4);
      assert.equal(page1.truncated, true);
      const page2 = await index.find({ level: 'IMAGE', keys: new Map([['0020000D', ct.studyUid]]), limit: 4, offset: 4 });
      assert.equal(page2.matches.length, 2);
      assert.equal(page2.truncated, false);
    });

    test('duplicates are idempotent; non-DICOM and incomplete input is refused and leaves nothing behind', async () => {
      assert.equal((await ingestFile(ingestor, ct.files[0]!)).outcome, 'duplicate');
      const junk = path.join(dir, 'junk.dcm');
      writeFileSync(junk, Buffer.alloc(2000, 7));
      await assert.rejects(ingestFile(ingestor, junk), (e: unknown) => e instanceof IngestError && e.kind === 'not-dicom');
      assert.deepEqual(await blobs.pendingTempFiles(), []);
      assert.equal((await index.counts()).instances, 8);
    });

    test('an instance received again with duplicates=overwrite replaces its row (the one-statement path)', async () => {
      const overwrite = new Ingestor(blobs, index, { duplicates: 'overwrite', maxInstanceBytes: 10 * 1024 * 1024, log: createLogger('silent') });
      const sop = ct.sopUids[0]!;
      const row = () => database.db.selectFrom('instances').select(['source_ae', 'received_at', 'series_pk', 'metadata']).where('sop_uid', '=', sop).executeTakeFirstOrThrow();
      const before = await row();
      const w = overwrite.begin();
      await pipeline(createReadStream(ct.files[0]!), w);
      assert.equal((await overwrite.commit(w, { sourceAe: 'MODALITY_2' })).outcome, 'replaced');
      const after = await row();
      assert.equal(before.source_ae, null);
      assert.equal(after.source_ae, 'MODALITY_2');
      assert.ok(after.received_at >= before.received_at);
      assert.equal(after.series_pk, before.series_pk);
      assert.equal(after.metadata, before.metadata);
      assert.equal((await index.counts()).instances, 8);
    });

    test('metadata is served from the index in pages', async () => {
      const rows: string[] = [];
      for await (const m of index.metadata({ studyUid: ct.studyUid }, 4)) rows.push(m);
      assert.equal(rows.length, 6);
      const first = JSON.parse(rows[0]!);
      assert.equal(first['7FE00010'].BulkDataURI.startsWith('opendrim-base:/studies/'), true);
      assert.equal(first['00080018'].Value.length, 1);
    });
  });
}
