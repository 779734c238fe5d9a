import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { openDatabase, type Database } from '../store/db.js';
import { migrateToLatest } from '../store/migrations.js';
import { testDatabases } from '../../test/harness/databases.js';
import { csrfMatches, SessionStore } from './sessions.js';

for (const tdb of await testDatabases()) {
  describe(`web sessions (${tdb.name})`, () => {
    let dir: string;
    let database: Database;
    let store: SessionStore;
    before(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'sessions-'));
      database = openDatabase({ databaseUrl: tdb.url, dataDir: dir });
      await migrateToLatest(database.db, database.dialect);
      store = new SessionStore(database.db, { idleMs: 30 * 60_000, absoluteMs: 12 * 3600_000 });
    });
    after(async () => {
      await database.close();
      await tdb.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('a session is found by its token and kind only; the table keeps a hash, never the token', async () => {
      const token = await store.create('user', { who: '8899700218896', tokens: { accessToken: 'eyJ.psc-access.token' } });
      assert.match(token, /^[\w-]{43}$/);
      const s = await store.get<{ who: string }>(token, 'user');
      assert.equal(s?.data.who, '8899700218896');
      assert.equal(await store.get(token, 'login'), undefined, 'another kind');
      assert.equal(await store.get(`${token}x`, 'user'), undefined);
      assert.equal(await store.get(undefined, 'user'), undefined);
      const rows = await database.db.selectFrom('web_sessions').selectAll().execute();
      assert.ok(rows.every((r) => r.id_hash !== token && !r.data.includes(token)));
      assert.ok(rows.every((r) => !r.data.includes('psc-access') && !r.data.includes('8899700218896')), 'session data (PSC tokens) sealed: a copy of the table reveals nothing');
      await store.update(token, { who: 'changed' });
      assert.equal((await store.get<{ who: string }>(token, 'user'))?.data.who, 'changed');
      await store.destroy(token);
      assert.equal(await store.get(token, 'user'), undefined);
    });

    test('expired sessions are refused and swept; CSRF tokens compare in constant time', async () => {
      const token = await store.create('login', { state: 'x' }, 60_000);
      const s = await store.get(token, 'login');
      assert.ok(s);
      assert.ok(csrfMatches(s.csrf, s.csrf));
      assert.ok(!csrfMatches(s.csrf, `${s.csrf.slice(0, -1)}A`) || s.csrf.endsWith('A'));
      assert.ok(!csrfMatches(s.csrf, undefined));
      assert.ok(!csrfMatches(s.csrf, ''));
      await sql`update web_sessions set expires_at = ${new Date(Date.now() - 1000).toISOString()}`.execute(database.db);
      assert.equal(await store.get(token, 'login'), undefined);
      await store.create('user', {});
      await sql`update web_sessions set expires_at = ${new Date(Date.now() - 1000).toISOString()}`.execute(database.db);
      assert.ok((await store.sweep()) >= 1);
      assert.equal((await database.db.selectFrom('web_sessions').selectAll().execute()).length, 0);
    });
  });
}
