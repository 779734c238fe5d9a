import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase, type Database } from '../store/db.js';
import { migrateToLatest } from '../store/migrations.js';
import { LocalIdentities } from './local-identities.js';

describe('local identity of an INS', () => {
  let dir: string;
  let database: Database;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'identities-'));
    database = openDatabase({ dataDir: dir });
    await migrateToLatest(database.db, database.dialect);
  });
  after(async () => {
    await database.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the PACS answer is used only when it names exactly one local patient; a recorded decision comes first', async () => {
    let answer: Array<{ patientId: string; issuer: string }> = [];
    const ids = new LocalIdentities(database.db, 'CABINET-B', async () => answer);
    assert.equal(await ids.lookup('280067512345690'), undefined, 'nobody');
    answer = [{ patientId: 'IPP-1', issuer: 'CABINET-B' }, { patientId: 'IPP-2', issuer: 'CABINET-B' }];
    assert.equal(await ids.lookup('280067512345690'), undefined, 'two candidates: no guess');
    answer = [{ patientId: 'IPP-1', issuer: 'CABINET-B' }, { patientId: 'X9', issuer: 'OTHER-SITE' }];
    assert.deepEqual(await ids.lookup('280067512345690'), { localId: 'IPP-1', issuer: 'CABINET-B', source: 'pacs' }, 'identifiers of other domains do not count');
    await ids.record('280067512345690', '1.2.250.1.213.1.4.10', 'IPP-7', 'decision:899');
    answer = [];
    assert.deepEqual(await ids.lookup('280067512345690'), { localId: 'IPP-7', issuer: 'CABINET-B', source: 'decision:899' });
  });
});
