import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Kysely } from 'kysely';
import { openDatabase, type Database, type DB } from '../store/db.js';
import { migrateToLatest } from '../store/migrations.js';
import { createLogger } from '../common/log.js';
import { AuditTrail, GENESIS, recordHash } from './audit-trail.js';
import { AuditCheckpoints, auditKey, verifyCheckpoints } from './checkpoints.js';
import { testDatabases } from '../../test/harness/databases.js';

/** What someone with write access to the database does after changing records: recompute the whole chain. */
async function rechain(db: Kysely<DB>): Promise<void> {
  let prev = GENESIS;
  for (const row of await db.selectFrom('audit_events').selectAll().orderBy('id').execute()) {
    const hash = recordHash(prev, { id: Number(row.id), at: row.at, actorType: row.actor_type, actorId: row.actor_id, actorAddress: row.actor_address, action: row.action, patientId: row.patient_id, studyUid: row.study_uid, outcome: row.outcome, detail: row.detail });
    await db.updateTable('audit_events').set({ prev_hash: prev, hash }).where('id', '=', Number(row.id)).execute();
    prev = hash;
  }
}

for (const target of await testDatabases()) {
  describe(`audit trail tampering, each kind detected (${target.name})`, () => {
    let dir: string;
    let database: Database;
    let audit: AuditTrail;
    let checkpoints: AuditCheckpoints;
    const files = () => ({ file: path.join(dir, 'anchors', 'checkpoints.jsonl'), keyFile: path.join(dir, 'anchors', 'key.pem') });
    const verifyAll = async () => {
      const chain = await audit.verify();
      const anchors = await verifyCheckpoints(database.db, files().file, auditKey(files().keyFile).publicKey);
      return { chain, anchors };
    };

    before(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'audit-anchors-'));
      database = openDatabase({ databaseUrl: target.url, dataDir: dir });
      await migrateToLatest(database.db, database.dialect);
      audit = new AuditTrail(database.db, database.dialect, createLogger('silent'));
      checkpoints = new AuditCheckpoints({ db: database.db, trail: audit, ...files(), log: createLogger('silent') });
    });
    after(async () => {
      await database.close();
      await target.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    /** A fresh trail of 20 records with a checkpoint after them. */
    async function fresh(): Promise<void> {
      await database.db.deleteFrom('audit_events').execute();
      rmSync(files().file, { force: true });
      checkpoints = new AuditCheckpoints({ db: database.db, trail: audit, ...files(), log: createLogger('silent') });
      for (let i = 0; i < 20; i++) await audit.record({ actorType: 'practitioner', actorId: `8${i}`, action: 'consumer.view', patientId: 'P1', outcome: 'success', detail: { i } });
      assert.ok(await checkpoints.write());
      await audit.record({ actorType: 'system', actorId: 'later', action: 'dicom.store', outcome: 'success' });
      const v = await verifyAll();
      assert.ok(v.chain.ok && v.anchors.ok, 'intact to begin with');
    }

    test('an edited record, the chain recomputed after it: the checkpoint no longer matches', async () => {
      await fresh();
      await database.db.updateTable('audit_events').set({ actor_id: 'someone-else' }).where('id', '=', 5).execute();
      assert.equal((await audit.verify()).ok, false, 'the chain alone catches the edit');
      await rechain(database.db);
      const v = await verifyAll();
      assert.equal(v.chain.ok, true, 'a recomputed chain hides the edit from the chain check…');
      assert.equal(v.anchors.ok, false, '…not from the checkpoint');
      assert.match(!v.anchors.ok ? v.anchors.reason : '', /altered and re-chained/);
    });

    test('a deleted record, the chain recomputed: the gap in the sequence is found', async () => {
      await fresh();
      await database.db.deleteFrom('audit_events').where('id', '=', 7).execute();
      await rechain(database.db);
      const v = await audit.verify();
      assert.equal(v.ok, false);
      assert.equal(v.brokenAt, 8);
      assert.match(v.reason ?? '', /record 7 is missing/);
    });

    test('a deleted record, the rest renumbered and re-chained: the checkpoint catches it', async () => {
      await fresh();
      await database.db.deleteFrom('audit_events').where('id', '=', 3).execute();
      for (const row of await database.db.selectFrom('audit_events').select('id').where('id', '>', 3).orderBy('id').execute()) await database.db.updateTable('audit_events').set({ id: Number(row.id) - 1 }).where('id', '=', Number(row.id)).execute();
      await rechain(database.db);
      const v = await verifyAll();
      assert.equal(v.chain.ok, true);
      assert.equal(v.anchors.ok, false);
    });

    test('the trail truncated (its last records removed): the checkpoint names the record that is gone', async () => {
      await fresh();
      await database.db.deleteFrom('audit_events').where('id', '>=', 15).execute();
      const v = await verifyAll();
      assert.equal(v.chain.ok, true, 'what is left is a valid chain');
      assert.equal(v.anchors.ok, false);
      assert.match(!v.anchors.ok ? v.anchors.reason : '', /record 20\b.*no longer in the trail/);
    });

    test('an altered checkpoint file fails its signature; checkpoints reach the trail (and so the ATNA collector)', async () => {
      await fresh();
      const text = readFileSync(files().file, 'utf8');
      writeFileSync(files().file, text.replace(/"count":\d+/, '"count":3'));
      const v = await verifyAll();
      assert.equal(v.anchors.ok, false);
      assert.match(!v.anchors.ok ? v.anchors.reason : '', /signature/);
      assert.equal((await audit.search({ action: 'audit.checkpoint' })).length, 1);
    });
  });
}
