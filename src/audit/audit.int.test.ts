/** Every access to patient data through DIMSE and DICOMweb leaves an audit record, and the chain verifies. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { startTestNode } from '../../test/harness/node.js';
import { generateStudy, type GeneratedStudy } from '../../test/harness/gen-study.js';
import { echo, find, storeInstances } from '../dicom/scu.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

describe('audit trail of a running node', () => {
  let node: Awaited<ReturnType<typeof startTestNode>>;
  let study: GeneratedStudy;
  const remote = () => ({ aeTitle: 'OPENDRIM', host: '127.0.0.1', port: node.dicomPort });

  before(async () => {
    node = await startTestNode({ peers: [{ aeTitle: 'MODALITY', host: '127.0.0.1', port: 104 }] });
    study = generateStudy({ out: mkdtempSync(path.join(tmpdir(), 'audit-study-')), slices: 3, rows: 32, patientId: 'AUD1' });
  });
  after(async () => node?.cleanup());

  test('store, find, refused association and DICOMweb retrieve are recorded with who, what, which patient', async () => {
    const r = await storeInstances(remote(), 'MODALITY', study.files.map((p) => ({ path: p, sopClassUid: '', sopInstanceUid: '', transferSyntaxUid: '' })));
    assert.equal(r.completed, 3);
    assert.equal((await find(remote(), 'MODALITY', 'STUDY', { PatientID: 'AUD1', StudyInstanceUID: '' })).length, 1);
    await assert.rejects(echo(remote(), 'INTRUDER'));
    const base = `http://127.0.0.1:${node.httpPort}`;
    assert.equal((await fetch(`${base}/dicom-web/studies/${study.studyUid}/metadata`)).status, 200);
    await new Promise((res) => setTimeout(res, 200));
    await node.audit.flush();
    const events = (await (await fetch(`${base}/api/audit?patient=AUD1`)).json()) as Array<{ action: string; actorId: string; studyUid: string; outcome: string; detail: Record<string, unknown> }>;
    const store = events.find((e) => e.action === 'dicom.store');
    assert.ok(store, JSON.stringify(events));
    assert.deepEqual([store.actorId, store.studyUid, store.outcome, store.detail.stored], ['MODALITY', study.studyUid, 'success', 3]);
    assert.ok(events.find((e) => e.action === 'dicom.find' && e.actorId === 'MODALITY'));
    const web = events.find((e) => e.action === 'dicomweb.retrieve');
    assert.equal(web?.actorId, '127.0.0.1');
    const refused = (await (await fetch(`${base}/api/audit?actor=INTRUDER`)).json()) as Array<{ action: string; outcome: string }>;
    assert.deepEqual(refused.map((e) => [e.action, e.outcome]), [['dicom.associate', 'refused']]);
    const verify = (await (await fetch(`${base}/api/audit/verify`)).json()) as { ok: boolean; records: number };
    assert.equal(verify.ok, true);
    assert.ok(verify.records >= 4);
    assert.match(await (await fetch(`${base}/api/audit/stats.csv`)).text(), /,dicom\.store,success,1\n/);
    assert.equal((await fetch(`${base}/api/audit?from=not-a-date`)).status, 400);
  });

  test('opendrim audit verify detects tampering', async () => {
    await node.audit.flush();
    const run = (env: Record<string, string>) =>
      promisify(execFile)(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli.ts'), 'audit', 'verify'], { cwd: root, env: { ...process.env, ...env } }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
    const env = { OPENDRIM_DATA_DIR: node.config.dataDir };
    const ok = await run(env);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /intact/);
    await sql`update audit_events set outcome = 'success' where action = 'dicom.associate'`.execute(node.database.db);
    const broken = await run(env);
    assert.equal(broken.code, 1);
    assert.match(broken.out, /BROKEN at record \d+/);
  });
});
