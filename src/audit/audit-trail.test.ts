import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { openDatabase, type Database } from '../store/db.js';
import { migrateToLatest } from '../store/migrations.js';
import { createLogger } from '../common/log.js';
import { AuditTrail } from './audit-trail.js';
import { testDatabases } from '../../test/harness/databases.js';

for (const target of await testDatabases()) {
  describe(`audit trail on ${target.name}`, () => {
    let dir: string;
    let database: Database;
    let audit: AuditTrail;
    before(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'audit-'));
      database = openDatabase({ databaseUrl: target.url, dataDir: dir });
      await migrateToLatest(database.db, database.dialect);
      audit = new AuditTrail(database.db, database.dialect, createLogger('silent'));
    });
    after(async () => {
      await database.close();
      await target.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('concurrent appends form one unbroken chain, searchable by patient and actor', async () => {
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          audit.record({ actorType: 'dicom-ae', actorId: i % 2 ? 'CT1' : 'PACS', actorAddress: '10.0.0.1', action: 'dicom.store', patientId: `P${i % 4}`, studyUid: `1.2.${i}`, outcome: 'success', detail: { instances: i } }),
        ),
      );
      const v = await audit.verify();
      assert.deepEqual({ ok: v.ok, records: v.records }, { ok: true, records: 40 });
      assert.equal((await audit.search({ patientId: 'P1' })).length, 10);
      assert.equal((await audit.search({ actorId: 'CT1', limit: 5 })).length, 5);
      const csv = await audit.dailyStatsCsv();
      assert.match(csv, /^day,action,outcome,count\n\d{4}-\d{2}-\d{2},dicom\.store,success,40\n$/);
    });

    test('an edited record is detected', async () => {
      await sql`update audit_events set patient_id = 'SOMEONE_ELSE' where id = 7`.execute(database.db);
      const v = await audit.verify();
      assert.equal(v.ok, false);
      assert.equal(v.brokenAt, 7);
      assert.match(v.reason!, /altered/);
    });

    test('a deleted record is detected', async () => {
      const d2 = mkdtempSync(path.join(tmpdir(), 'audit2-'));
      const other = openDatabase({ dataDir: d2 });
      await migrateToLatest(other.db, other.dialect);
      const trail = new AuditTrail(other.db, other.dialect, createLogger('silent'));
      for (let i = 0; i < 5; i++) await trail.record({ actorType: 'system', actorId: 'test', action: 'x', outcome: 'success' });
      assert.equal((await trail.verify()).ok, true);
      await sql`delete from audit_events where id = 3`.execute(other.db);
      const v = await trail.verify();
      assert.equal(v.ok, false);
      assert.equal(v.brokenAt, 4);
      assert.match(v.reason!, /missing/);
      await other.close();
      rmSync(d2, { recursive: true, force: true });
    });

    test('programme indicators per day: publications, consultations, contextual calls, errors', async () => {
      const at = (action: string, outcome: 'success' | 'failure' | 'refused' = 'success') => audit.record({ actorType: 'system', actorId: 'kpi', action, outcome });
      await at('source.report.publish');
      await at('source.report.replace');
      await at('consumer.open');
      await at('consumer.launch');
      await at('consumer.launch', 'failure');
      await at('share.open', 'refused');
      await audit.flush();
      const [header, ...lines] = (await audit.kpiCsv()).trim().split('\n');
      assert.equal(header, 'day,publications,consultations,served_to_boxes,contextual_calls,imports,routed,received,cds_imported,share_openings,refusals,errors');
      const today = lines.find((l) => l.startsWith(new Date().toISOString().slice(0, 10)))!.split(',');
      const col = (name: string) => Number(today[header!.split(',').indexOf(name)]);
      assert.equal(col('publications'), 2);
      assert.equal(col('consultations'), 1);
      assert.equal(col('contextual_calls'), 2);
      assert.ok(col('errors') >= 1 && col('refusals') >= 1);
    });
  });
}
