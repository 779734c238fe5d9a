import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { generateStudy, type GeneratedStudy } from '../../test/harness/gen-study.js';
import { testDatabases } from '../../test/harness/databases.js';
import { createLogger } from '../common/log.js';
import { loadConfig } from '../config/config.js';
import { parseHeader, str } from '../dicom/part10.js';
import type { OutboundInstance } from '../dicom/scu.js';
import { openStore } from '../store/open-store.js';
import { AuditTrail } from '../audit/audit-trail.js';
import { LocalIdentities } from '../identity/local-identities.js';
import type { RemoteExamCache } from './remote-exam-cache.js';
import { PacsImports } from './pacs-import.js';

const INS = '280067512345690';

for (const db of await testDatabases()) {
  describe(`imports into the local PACS (${db.name})`, () => {
    let work: string;
    let study: GeneratedStudy;
    let store: Awaited<ReturnType<typeof openStore>>;
    let audit: AuditTrail;
    const pacsHas = new Map<string, string>();
    let failNext = 0;
    const pacs = {
      async send(files: OutboundInstance[]) {
        if (failNext > 0) {
          failNext--;
          return { completed: 0, failed: files.length, error: 'association rejected (simulated)' };
        }
        for (const f of files) pacsHas.set(f.sopInstanceUid, str(parseHeader(f.bytes ?? readFileSync(f.path), true).dataset, '00100020'));
        return { completed: files.length, failed: 0 };
      },
      async countInstances(_s: string, patientId: string) {
        return [...pacsHas.values()].filter((p) => p === patientId).length;
      },
    };
    /** The same PACS, answering which instances of a series it holds (what a resumed import asks). */
    const pacsWithPresence = {
      ...pacs,
      async present(_study: string, seriesUid: string) {
        const inSeries = new Set((await store.index.listInstances({ seriesUid })).map((i) => i.sopUid));
        return new Set([...pacsHas.keys()].filter((k) => inSeries.has(k)));
      },
    };

    before(async () => {
      work = mkdtempSync(path.join(tmpdir(), 'imports-'));
      study = generateStudy({ out: path.join(work, 's'), series: 2, slices: 30, rows: 16, cols: 16, patientId: INS });
      const config = loadConfig({ env: {}, overrides: { dataDir: path.join(work, 'data'), ...(db.url ? { databaseUrl: db.url } : {}) } });
      store = await openStore(config, createLogger('silent'));
      audit = new AuditTrail(store.database.db, store.database.dialect, createLogger('silent'));
      for (const f of study.files) {
        const w = store.ingestor.begin();
        await pipeline(createReadStream(f), w);
        await store.ingestor.commit(w);
      }
    });
    after(async () => {
      await audit.flush();
      await store.database.close();
      await db.drop();
      rmSync(work, { recursive: true, force: true });
    });

    test('waits for an identity, then sends in batches under it; a failed attempt is retried with backoff', async () => {
      // The remote exam is already in the local cache: the fake cache serves it from the index.
      const remote = { instances: (t: { studyUid: string; seriesUid: string }) => (async function* () { yield* await store.index.listInstances(t); })() } as unknown as RemoteExamCache;
      const imports = new PacsImports({ db: store.database.db, dialect: store.database.dialect, identities: new LocalIdentities(store.database.db, 'CABINET-B'), remote, blobs: store.blobs, pacs, workDir: path.join(work, 'tmp'), audit, log: createLogger('silent'), retryBaseMs: 50 });
      const series = await Promise.all(study.seriesUids.map(async (seriesUid) => ({ seriesUid, instances: (await store.index.listInstances({ seriesUid })).map((i) => ({ sopClassUid: i.sopClassUid, sopUid: i.sopUid })) })));
      const id = await imports.enqueue({ studyUid: study.studyUid, series, patient: { ins: INS, oid: '1.2.250.1.213.1.4.10' }, professional: { id: '8899700218896' } });
      const until = async (status: string, attempts = 0) => {
        for (let i = 0; i < 200; i++) {
          const j = await imports.get(id);
          if (j?.status === status && j.attempts >= attempts) return j;
          imports.kick();
          await new Promise((r) => setTimeout(r, 25));
        }
        assert.fail(`import never reached ${status}: ${JSON.stringify(await imports.get(id))}`);
      };
      await until('waiting-identity');
      assert.equal(pacsHas.size, 0, 'nothing sent without an identity');
      failNext = 1;
      await imports.decideIdentity(id, 'IPP-B-55', '8899700218896');
      const retried = await until('queued', 1);
      assert.equal(retried.attempts, 1);
      assert.match(retried.error ?? '', /association rejected/);
      const done = await until('done');
      assert.equal(done.done, 60);
      assert.deepEqual({ sent: done.report!.sent, inPacs: done.report!.inPacs, localId: done.report!.localId }, { sent: 60, inPacs: 60, localId: 'IPP-B-55' });
      assert.ok([...pacsHas.values()].every((p) => p === 'IPP-B-55'));
      await audit.flush();
      const trail = await audit.search({ action: 'consumer.import', limit: 50 });
      assert.deepEqual(trail.map((r) => r.detail.step).reverse(), ['requested', 'retry-scheduled', 'done']);
      imports.stop();
    });

    test('jobs run in parallel, but never more at once from one source box than its limit', async () => {
      const remote = { instances: (t: { studyUid: string; seriesUid: string }) => (async function* () { yield* await store.index.listInstances(t); })() } as unknown as RemoteExamCache;
      const running = new Map<string, number>();
      const peak = new Map<string, number>();
      const jobOrigin = new Map<string, string>();
      const slowPacs = {
        async send(files: OutboundInstance[]) {
          const job = path.basename(path.dirname(files[0]!.path));
          const origin = jobOrigin.get(job) ?? (await store.database.db.selectFrom('import_jobs').select('source_origin').where('id', '=', Number(job.slice('import-'.length))).executeTakeFirstOrThrow()).source_origin!;
          running.set(origin, (running.get(origin) ?? 0) + 1);
          peak.set(origin, Math.max(peak.get(origin) ?? 0, running.get(origin)!));
          await new Promise((r) => setTimeout(r, 40));
          running.set(origin, running.get(origin)! - 1);
          return pacs.send(files);
        },
        countInstances: pacs.countInstances,
      };
      const imports = new PacsImports({ db: store.database.db, dialect: store.database.dialect, identities: new LocalIdentities(store.database.db, 'CABINET-B'), remote, blobs: store.blobs, pacs: slowPacs, workDir: path.join(work, 'tmp'), audit, log: createLogger('silent'), parallel: 3, perSourceLimit: (o) => (o === 'https://a.test' ? 1 : undefined) });
      const series = (origin: string) => Promise.all(study.seriesUids.map(async (seriesUid) => ({ seriesUid, retrieveUrl: `${origin}/dicom-web/studies/${study.studyUid}/series/${seriesUid}`, instances: (await store.index.listInstances({ seriesUid })).map((i) => ({ sopClassUid: i.sopClassUid, sopUid: i.sopUid })) })));
      const ids: number[] = [];
      for (const origin of ['https://a.test', 'https://a.test', 'https://b.test', 'https://b.test']) {
        const id = await imports.enqueue({ studyUid: study.studyUid, series: await series(origin), patient: { ins: INS, oid: '1.2.250.1.213.1.4.10' }, professional: { id: '8899700218896' } });
        jobOrigin.set(`import-${id}`, origin);
        ids.push(id);
      }
      for (let i = 0; i < 400 && !(await Promise.all(ids.map((id) => imports.get(id)))).every((j) => j?.status === 'done'); i++) await new Promise((r) => setTimeout(r, 25));
      imports.stop();
      assert.ok((await Promise.all(ids.map((id) => imports.get(id)))).every((j) => j?.status === 'done'));
      assert.equal(peak.get('https://a.test'), 1, 'source A is limited to one import at a time');
      assert.equal(peak.get('https://b.test'), 2, 'source B has no limit: both its imports ran together');
    });

    test('jobs on one source box start spaced out (not in lockstep); another box is not held back', async () => {
      const remote = { instances: (t: { studyUid: string; seriesUid: string }) => (async function* () { yield* await store.index.listInstances(t); })() } as unknown as RemoteExamCache;
      const firstSend = new Map<string, number>();
      const t0 = Date.now();
      const timedPacs = {
        async send(files: OutboundInstance[]) {
          const job = path.basename(path.dirname(files[0]!.path));
          if (!firstSend.has(job)) firstSend.set(job, Date.now() - t0);
          await new Promise((r) => setTimeout(r, 900)); // each job stays busy well past the spacing
          return pacs.send(files);
        },
        countInstances: pacs.countInstances,
      };
      const imports = new PacsImports({ db: store.database.db, dialect: store.database.dialect, identities: new LocalIdentities(store.database.db, 'CABINET-B'), remote, blobs: store.blobs, pacs: timedPacs, workDir: path.join(work, 'tmp'), audit, log: createLogger('silent'), parallel: 4, startSpacingMs: 400 });
      const series = (origin: string) => Promise.all(study.seriesUids.map(async (seriesUid) => ({ seriesUid, retrieveUrl: `${origin}/dicom-web/studies/${study.studyUid}/series/${seriesUid}`, instances: (await store.index.listInstances({ seriesUid })).map((i) => ({ sopClassUid: i.sopClassUid, sopUid: i.sopUid })) })));
      const byOrigin = new Map<string, string[]>();
      const ids: number[] = [];
      for (const origin of ['https://c.test', 'https://c.test', 'https://c.test', 'https://d.test']) {
        const id = await imports.enqueue({ studyUid: study.studyUid, series: await series(origin), patient: { ins: INS, oid: '1.2.250.1.213.1.4.10' }, professional: { id: '8899700218896' } });
        byOrigin.set(origin, [...(byOrigin.get(origin) ?? []), `import-${id}`]);
        ids.push(id);
      }
      try {
        for (let i = 0; i < 400 && !(await Promise.all(ids.map((id) => imports.get(id)))).every((j) => j?.status === 'done'); i++) await new Promise((r) => setTimeout(r, 25));
        assert.ok((await Promise.all(ids.map((id) => imports.get(id)))).every((j) => j?.status === 'done'));
        const starts = byOrigin.get('https://c.test')!.map((j) => firstSend.get(j)!).sort((a, b) => a - b);
        // Spacing of 400 ms, measured at each job's first send: a busy machine delays a send by some tens of
        // milliseconds, so the bounds keep that margin (lockstep would be ~0 ms apart, held back ~400 ms).
        for (let k = 1; k < starts.length; k++) assert.ok(starts[k]! - starts[k - 1]! >= 320, `jobs on one box started ${starts[k]! - starts[k - 1]!} ms apart: ${starts}`);
        const other = firstSend.get(byOrigin.get('https://d.test')![0]!)!;
        assert.ok(other - starts[0]! < 200, `the other box's job waited ${other - starts[0]!} ms behind the first box's spacing`);
      } finally {
        imports.stop();
      }
    });

    test('a job left running by a node that stopped mid-transfer is resumed by the next start; the PACS keeps one copy', async () => {
      const remote = { instances: (t: { studyUid: string; seriesUid: string }) => (async function* () { yield* await store.index.listInstances(t); })() } as unknown as RemoteExamCache;
      const make = () => new PacsImports({ db: store.database.db, dialect: store.database.dialect, identities: new LocalIdentities(store.database.db, 'CABINET-B'), remote, blobs: store.blobs, pacs, workDir: path.join(work, 'tmp'), audit, log: createLogger('silent'), retryBaseMs: 50 });
      const series = await Promise.all(study.seriesUids.map(async (seriesUid) => ({ seriesUid, instances: (await store.index.listInstances({ seriesUid })).map((i) => ({ sopClassUid: i.sopClassUid, sopUid: i.sopUid })) })));
      const first = make();
      const id = await first.enqueue({ studyUid: study.studyUid, series, patient: { ins: INS, oid: '1.2.250.1.213.1.4.10' }, professional: { id: '8899700218896' } });
      for (let i = 0; i < 200 && (await first.get(id))?.status !== 'done'; i++) await new Promise((r) => setTimeout(r, 25));
      first.stop();
      // As if the node died after sending part of the study: the row says running, 20 minutes ago, 10 sent.
      const sizeBefore = pacsHas.size;
      await store.database.db.updateTable('import_jobs').set({ status: 'running', done: 10, updated_at: new Date(Date.now() - 20 * 60_000).toISOString() }).where('id', '=', id).execute();
      const second = make();
      second.start(50);
      for (let i = 0; i < 200 && (await second.get(id))?.status !== 'done'; i++) await new Promise((r) => setTimeout(r, 25));
      const job = await second.get(id);
      second.stop();
      assert.equal(job?.status, 'done', job?.error);
      assert.equal(job?.report?.inPacs, 60);
      assert.equal(pacsHas.size, sizeBefore, 'instances sent again replace themselves: no duplicate in the PACS');
    });

    test('a resumed import fetches and sends only what the PACS does not hold yet (instance granularity)', async () => {
      const fetched: string[] = [];
      const remote = {
        instances: (t: { studyUid: string; seriesUid: string; sopUid?: string }) =>
          (async function* () {
            for (const i of await store.index.listInstances(t)) {
              fetched.push(i.sopUid);
              yield i;
            }
          })(),
      } as unknown as RemoteExamCache;
      const make = () => new PacsImports({ db: store.database.db, dialect: store.database.dialect, identities: new LocalIdentities(store.database.db, 'CABINET-B'), remote, blobs: store.blobs, pacs: pacsWithPresence, workDir: path.join(work, 'tmp'), audit, log: createLogger('silent'), retryBaseMs: 50 });
      const series = await Promise.all(study.seriesUids.map(async (seriesUid) => ({ seriesUid, instances: (await store.index.listInstances({ seriesUid })).map((i) => ({ sopClassUid: i.sopClassUid, sopUid: i.sopUid })) })));
      // The PACS holds the first series whole and 20 of the second's 30 instances (a transfer cut short).
      pacsHas.clear();
      const second = series[1]!.instances.map((i) => i.sopUid);
      for (const i of [...series[0]!.instances.map((x) => x.sopUid), ...second.slice(0, 20)]) pacsHas.set(i, 'IPP-RESUME');
      await new LocalIdentities(store.database.db, 'CABINET-B').record(INS, '1.2.250.1.213.1.4.10', 'IPP-RESUME', 'test');
      const importer = make();
      importer.stop();
      try {
        // A job that had sent part of the study when its node stopped: it resumes on this node.
        const id = await importer.enqueue({ studyUid: study.studyUid, series, patient: { ins: INS, oid: '1.2.250.1.213.1.4.10' }, professional: { id: '8899700218896' } });
        await store.database.db.updateTable('import_jobs').set({ done: 50 }).where('id', '=', id).execute();
        importer.start(20);
        for (let i = 0; i < 200 && (await importer.get(id))?.status !== 'done'; i++) await new Promise((r) => setTimeout(r, 25));
        const job = await importer.get(id);
        assert.equal(job?.status, 'done', job?.error);
        assert.deepEqual(fetched.sort(), second.slice(20).sort(), 'only the 10 missing instances were fetched');
        assert.equal((job?.report as { alreadyInPacs?: number }).alreadyInPacs, 50);
        assert.equal(job?.report?.inPacs, 60);
      } finally {
        importer.stop();
      }
    });
  });
}
