/** Several associations storing into the same study at once: nothing lost, nothing duplicated, on SQLite and PostgreSQL. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startTestNode } from '../../test/harness/node.js';
import { generateStudy, newUid } from '../../test/harness/gen-study.js';
import { testDatabases } from '../../test/harness/databases.js';
import { find, storeInstances } from '../dicom/scu.js';

for (const database of await testDatabases()) {
  test(`four concurrent associations into one study on ${database.name}`, async () => {
    const node = await startTestNode({ dicom: { acceptUnknownCallingAe: true, checkCalledAe: true, maxPduLength: 262144, maxAssociations: 16, idleTimeoutMs: 30000, maxFindResults: 100 } }, database.url);
    try {
      const studyUid = newUid();
      const parts = [0, 1, 2, 3].map((i) => generateStudy({ out: mkdtempSync(path.join(tmpdir(), `conc-${i}-`)), studyUid, series: 1, slices: 25, rows: 64, patientId: 'CONC1' }));
      const remote = { aeTitle: 'OPENDRIM', host: '127.0.0.1', port: node.dicomPort };
      const results = await Promise.all(parts.map((p, i) => storeInstances(remote, `MOD${i}`, p.files.map((f) => ({ path: f, sopClassUid: '', sopInstanceUid: '', transferSyntaxUid: '' })))));
      assert.deepEqual(results.map((r) => r.completed), [25, 25, 25, 25]);
      // The same instances again, concurrently: idempotent.
      await Promise.all(parts.map((p, i) => storeInstances(remote, `MOD${i}`, p.files.slice(0, 5).map((f) => ({ path: f, sopClassUid: '', sopInstanceUid: '', transferSyntaxUid: '' })))));
      const counts = await node.index.counts();
      assert.deepEqual({ patients: counts.patients, studies: counts.studies, series: counts.series, instances: counts.instances }, { patients: 1, studies: 1, series: 4, instances: 100 });
      const [study] = await find(remote, 'CHECK', 'STUDY', { StudyInstanceUID: studyUid, NumberOfStudyRelatedInstances: '', NumberOfStudyRelatedSeries: '' });
      assert.deepEqual(study!['00201208']!.Value, [100]);
      assert.deepEqual(study!['00201206']!.Value, [4]);
    } finally {
      await node.cleanup();
      await database.drop();
    }
  });
}
