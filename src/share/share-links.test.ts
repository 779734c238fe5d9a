import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openDatabase, type Database } from '../store/db.js';
import { migrateToLatest } from '../store/migrations.js';
import { ShareError, ShareLinks } from './share-links.js';

describe('share links', () => {
  let dir: string;
  let database: Database;
  let links: ShareLinks;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'share-'));
    database = openDatabase({ dataDir: dir });
    await migrateToLatest(database.db, database.dialect);
    links = new ShareLinks(database.db, { maxHours: 48, codeAttempts: 3 });
  });
  after(async () => {
    await database.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const refused = (status: number, re: RegExp) => (e: unknown) => e instanceof ShareError && e.status === status && re.test(e.message);

  test('a token opens its link only; the database keeps no token and no code in clear', async () => {
    const a = await links.create({ studyUid: '1.2.3', patientId: 'P1', createdBy: 't', hours: 1, withCode: true });
    assert.match(a.token, /^[A-Za-z0-9_-]{43}$/);
    assert.match(a.code!, /^\d{6}$/);
    const link = await links.resolve(a.token);
    assert.equal(link.study_uid, '1.2.3');
    const row = JSON.stringify(await database.db.selectFrom('share_links').selectAll().execute());
    assert.ok(!row.includes(a.token) && !row.includes(`"${a.code}"`));
    await assert.rejects(links.resolve(a.token.slice(0, -1) + (a.token.endsWith('A') ? 'B' : 'A')), refused(404, /not valid/));
    await assert.rejects(links.resolve('../../etc/passwd'), refused(404, /not valid/));
    await assert.rejects(links.create({ studyUid: '1.2.3', patientId: 'P1', createdBy: 't', hours: 49, withCode: false }), refused(400, /48 hours/));
  });

  test('access code: the right one passes and yields a proof bound to the link; wrong ones lock it', async () => {
    const a = await links.create({ studyUid: '1.2.4', patientId: 'P2', createdBy: 't', hours: 1, withCode: true });
    const b = await links.create({ studyUid: '1.2.5', patientId: 'P3', createdBy: 't', hours: 1, withCode: true });
    const la = await links.resolve(a.token);
    const lb = await links.resolve(b.token);
    assert.equal(links.proofMatches(la, a.token, undefined), false);
    assert.equal(await links.checkCode(la, a.code!), true);
    assert.equal(links.proofMatches(la, a.token, links.proof(la, a.token)), true);
    assert.equal(links.proofMatches(lb, b.token, links.proof(la, a.token)), false, 'a proof for one link does not open another');
    const wrong = a.code === '000000' ? '111111' : '000000';
    for (let i = 0; i < 3; i++) assert.equal(await links.checkCode(await links.resolve(b.token), wrong), false);
    await assert.rejects(links.resolve(b.token), refused(403, /locked/));
  });

  test('expired and revoked links are refused with their reason', async () => {
    const a = await links.create({ studyUid: '1.2.6', patientId: 'P4', createdBy: 't', hours: 1, withCode: false });
    await database.db.updateTable('share_links').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('id', '=', a.id).execute();
    await assert.rejects(links.resolve(a.token), refused(410, /expired/));
    const b = await links.create({ studyUid: '1.2.7', patientId: 'P5', createdBy: 't', hours: 1, withCode: false });
    assert.equal(await links.revoke(b.id), true);
    assert.equal(await links.revoke(b.id), false);
    await assert.rejects(links.resolve(b.token), refused(410, /revoked/));
  });
});
