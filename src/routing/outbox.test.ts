import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../common/log.js';
import { AuditTrail } from '../audit/audit-trail.js';
import { openDatabase, type Database } from '../store/db.js';
import { migrateToLatest } from '../store/migrations.js';
import type { OutboundInstance } from '../dicom/scu.js';
import type { RouteDestination, SendOutcome } from './destinations.js';
import { RouteOutbox } from './outbox.js';
import { testDatabases } from '../../test/harness/databases.js';

/** A destination that fails its first `failures` sends, then accepts everything. */
class FlakyDestination implements RouteDestination {
  readonly name = 'flaky';
  readonly describe = 'a flaky peer';
  sends = 0;
  constructor(private failures: number) {}
  async send(files: OutboundInstance[], onProgress: (n: number) => void): Promise<SendOutcome> {
    this.sends++;
    if (this.failures-- > 0) return { sent: 1, failed: files.length - 1, error: 'connection reset' };
    onProgress(files.length);
    return { sent: files.length, failed: 0 };
  }
}

const waitFor = async <T>(probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> => {
  const t0 = Date.now();
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

for (const target of await testDatabases()) {
  describe(`routing outbox on ${target.name}`, () => {
    let dir: string;
    let database: Database;
    before(async () => {
      dir = mkdtempSync(path.join(tmpdir(), 'outbox-'));
      database = openDatabase({ databaseUrl: target.url, dataDir: dir });
      await migrateToLatest(database.db, database.dialect);
    });
    after(async () => {
      await database.close();
      await target.drop();
      rmSync(dir, { recursive: true, force: true });
    });
    const files = async () => [1, 2, 3].map((i) => ({ sopClassUid: '1.2', sopInstanceUid: `1.2.${i}`, transferSyntaxUid: '1.2.840.10008.1.2.1', path: `/tmp/${i}` }));

    test('a failing send is retried with backoff until it succeeds; a study queued twice is sent once', async () => {
      const flaky = new FlakyDestination(2);
      const outbox = new RouteOutbox({ db: database.db, dialect: database.dialect, destinations: new Map([['flaky', flaky]]), files, audit: new AuditTrail(database.db, database.dialect, createLogger('silent')), log: createLogger('silent'), maxAttempts: 5, baseDelayMs: 100 });
      const id = await outbox.enqueue('1.2.3.4', 'flaky', 'rule-1');
      assert.ok(id);
      assert.equal(await outbox.enqueue('1.2.3.4', 'flaky', 'rule-1'), undefined, 'already pending: not queued twice');
      outbox.start(30);
      try {
        const first = await waitFor(async () => ((await outbox.get(id!))?.attempts === 1 ? outbox.get(id!) : undefined));
        assert.equal(first!.status, 'queued');
        assert.match(first!.error ?? '', /1 of 3 instance\(s\) accepted by a flaky peer: connection reset/);
        assert.ok(Date.parse(first!.next_attempt_at) > Date.now() - 50, 'retried later, not at once');
        const done = await waitFor(async () => ((await outbox.get(id!))?.status === 'done' ? outbox.get(id!) : undefined));
        assert.equal(Number(done!.attempts), 2);
        assert.equal(Number(done!.sent), 3);
        assert.equal(flaky.sends, 3);
        // Once done, the same study queued again (it grew) is a new transfer.
        assert.ok(await outbox.enqueue('1.2.3.4', 'flaky', 'rule-1'));
      } finally {
        outbox.stop();
      }
    });

    test('after maxAttempts a transfer is failed and waits for the retry button', async () => {
      const dead = new FlakyDestination(1000);
      const outbox = new RouteOutbox({ db: database.db, dialect: database.dialect, destinations: new Map([['dead', dead]]), files, audit: new AuditTrail(database.db, database.dialect, createLogger('silent')), log: createLogger('silent'), maxAttempts: 2, baseDelayMs: 20 });
      const id = (await outbox.enqueue('1.2.3.5', 'dead', 'rule-2'))!;
      outbox.start(20);
      try {
        const failed = await waitFor(async () => ((await outbox.get(id))?.status === 'failed' ? outbox.get(id) : undefined));
        assert.equal(Number(failed!.attempts), 2);
        assert.equal(dead.sends, 2);
        assert.equal(await outbox.retry(id, 'admin'), true);
        await waitFor(async () => (dead.sends >= 3 ? true : undefined));
        assert.equal(await outbox.retry(999_999, 'admin'), false);
        const unknown = (await outbox.enqueue('1.2.3.6', 'gone', 'rule-3'))!;
        const gone = await waitFor(async () => ((await outbox.get(unknown))?.attempts === 1 ? outbox.get(unknown) : undefined));
        assert.match(gone!.error ?? '', /destination gone is no longer configured/);
      } finally {
        outbox.stop();
      }
    });
  });
}
