import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from './db.js';
import { migrateToLatest } from './migrations.js';
import { StudyIndex } from './study-index.js';
import { FsBlobStore } from './blobs.js';
import { Ingestor } from './ingest.js';
import { recoverTempFiles } from './recover.js';
import { isWholePart10, pixelDataOffset } from '../dicom/element-walk.js';
import { createLogger } from '../common/log.js';
import { generateStudy } from '../../test/harness/gen-study.js';

test('whole instances left under a temporary name are ingested; cut, fresh and empty files are left to the sweep', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'recover-'));
  const database = openDatabase({ dataDir: dir });
  await migrateToLatest(database.db, database.dialect);
  const index = new StudyIndex(database.db, database.dialect);
  const blobs = new FsBlobStore(dir);
  const ingestor = new Ingestor(blobs, index, { duplicates: 'keep', maxInstanceBytes: 1 << 30, log: createLogger('silent') });
  try {
    const study = generateStudy({ out: path.join(dir, 'gen'), modality: 'CT', slices: 4, rows: 64 });
    const [whole, cut, beforePixels, fresh] = study.files.map((f) => readFileSync(f));
    const tmp = path.join(dir, 'tmp');
    const put = (name: string, bytes: Buffer, ageMinutes: number) => {
      const p = path.join(tmp, name);
      writeFileSync(p, bytes);
      const t = new Date(Date.now() - ageMinutes * 60_000);
      utimesSync(p, t, t);
      return p;
    };
    const files = {
      whole: put('a.part', whole!, 30),
      cut: put('b.part', cut!.subarray(0, cut!.length - 100), 30),
      beforePixels: put('c.part', beforePixels!.subarray(0, pixelDataOffset(beforePixels!)), 30),
      fresh: put('d.part', fresh!, 1),
      empty: put('e.part', Buffer.alloc(0), 30),
    };
    assert.equal(isWholePart10(whole!), true);
    assert.equal(isWholePart10(readFileSync(files.beforePixels)), false, 'an image header without its pixel data is not whole');

    const r = await recoverTempFiles(blobs, ingestor, createLogger('silent'));
    assert.deepEqual(r, { recovered: 1, left: 2 });
    assert.equal(await index.hasInstance(study.sopUids[0]!), true);
    assert.equal((await index.counts()).instances, 1);
    assert.equal(existsSync(files.whole), false);
    for (const p of [files.cut, files.beforePixels, files.fresh, files.empty]) assert.equal(existsSync(p), true);
    // The instance is served from its place in the store, byte for byte.
    const [stored] = await index.listInstances({ sopUid: study.sopUids[0]! });
    assert.deepEqual(readFileSync(blobs.localPath(stored!.blobKey)), whole);
    // Run again (a second node starting): nothing more to do.
    assert.deepEqual(await recoverTempFiles(blobs, ingestor, createLogger('silent')), { recovered: 0, left: 2 });
  } finally {
    await blobs.close();
    await database.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
