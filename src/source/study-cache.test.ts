import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { generateStudy, type GeneratedStudy } from '../../test/harness/gen-study.js';
import { testDatabases } from '../../test/harness/databases.js';
import { createLogger } from '../common/log.js';
import { parseHeader, str } from '../dicom/part10.js';
import type { InstanceSink, Level, RetrieveOutcome } from '../dicom/scu.js';
import { openStore } from '../store/open-store.js';
import { loadConfig } from '../config/config.js';
import { StudyCache, StudyUnavailableError } from './study-cache.js';
import type { PacsGateway } from './pacs.js';

/** A PACS holding generated files, answering the queries and C-GETs the cache makes, and counting them. */
class FakePacs {
  readonly files: Array<{ file: string; seriesUid: string; sopUid: string; sopClassUid: string }>;
  gets: Array<{ level: Level; keys: Record<string, string> }> = [];
  down = false;
  constructor(private readonly study: GeneratedStudy) {
    this.files = study.files.map((file) => {
      const ds = parseHeader(readFileSync(file), true).dataset;
      return { file, seriesUid: str(ds, '0020000E'), sopUid: str(ds, '00080018'), sopClassUid: str(ds, '00080016') };
    });
  }
  aeTitle = 'FAKEPACS';
  async seriesCounts(studyUid: string, seriesUid?: string) {
    if (this.down) throw new Error('connection refused');
    const m = new Map<string, number | undefined>();
    if (studyUid !== this.study.studyUid) return m;
    for (const f of this.files) if (!seriesUid || f.seriesUid === seriesUid) m.set(f.seriesUid, (m.get(f.seriesUid) ?? 0) + 1);
    return m;
  }
  async seriesInstances(studyUid: string, seriesUid?: string, sopUid?: string) {
    if (this.down) throw new Error('connection refused');
    if (studyUid !== this.study.studyUid) return [];
    return this.files.filter((f) => (!seriesUid || f.seriesUid === seriesUid) && (!sopUid || f.sopUid === sopUid));
  }
  async get(level: Level, keys: Record<string, string>, _classes: string[], open: (i: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string }) => InstanceSink): Promise<RetrieveOutcome> {
    this.gets.push({ level, keys });
    let completed = 0;
    for (const f of this.files.filter((f) => f.seriesUid === keys.SeriesInstanceUID && (!keys.SOPInstanceUID || f.sopUid === keys.SOPInstanceUID))) {
      const sink = open({ sopClassUid: f.sopClassUid, sopInstanceUid: f.sopUid, transferSyntaxUid: '1.2.840.10008.1.2.1' });
      await pipeline(createReadStream(f.file), sink.writable);
      await sink.commit();
      completed++;
    }
    return { status: 0, completed, failed: 0, warning: 0 };
  }
}

for (const db of await testDatabases()) {
  describe(`study cache in front of the local PACS (${db.name})`, () => {
    let work: string;
    let study: GeneratedStudy;
    let other: GeneratedStudy;
    let store: Awaited<ReturnType<typeof openStore>>;
    let pacs: FakePacs;
    let cache: StudyCache;
    const limits = { maxBytes: 1e12, maxAgeMs: 3600_000, minResidencyMs: 60_000 };

    before(async () => {
      work = mkdtempSync(path.join(tmpdir(), 'study-cache-'));
      study = generateStudy({ out: path.join(work, 'a'), series: 2, slices: 3, rows: 32, cols: 32 });
      other = generateStudy({ out: path.join(work, 'b'), series: 1, slices: 2, rows: 32, cols: 32 });
      const config = loadConfig({ env: {}, overrides: { dataDir: path.join(work, 'data'), ...(db.url ? { databaseUrl: db.url } : {}) } });
      store = await openStore(config, createLogger('silent'));
      pacs = new FakePacs(study);
      cache = new StudyCache({ db: store.database.db, index: store.index, ingestor: store.ingestor, blobs: store.blobs, pacs: pacs as unknown as PacsGateway, retrieve: 'C-GET', aeTitle: 'OPENDRIM', limits, log: createLogger('silent') });
    });
    after(async () => {
      await store.database.close();
      await db.drop();
      rmSync(work, { recursive: true, force: true });
    });

    const collect = async (it: AsyncIterable<{ sopUid: string }>) => {
      const out: string[] = [];
      for await (const i of it) out.push(i.sopUid);
      return out;
    };

    test('a study not stored is fetched series by series and yielded whole; the second request costs no retrieve', async () => {
      const first = await collect(cache.instances({ studyUid: study.studyUid }));
      assert.deepEqual([...first].sort(), [...study.sopUids].sort());
      assert.equal(pacs.gets.length, 2);
      assert.ok(pacs.gets.every((g) => g.level === 'SERIES'));
      const again = await collect(cache.instances({ studyUid: study.studyUid }));
      assert.deepEqual([...again].sort(), [...study.sopUids].sort());
      assert.equal(pacs.gets.length, 2, 'served from the cache');
      const row = await store.database.db.selectFrom('cached_studies').selectAll().where('study_uid', '=', study.studyUid).executeTakeFirstOrThrow();
      assert.equal(Number(row.bytes), study.bytes);
    });

    test('only the series that changed in the PACS is fetched again; an unknown study yields nothing', async () => {
      const removed = pacs.files.find((f) => f.seriesUid === study.seriesUids[1])!;
      const [stored] = await store.index.listInstances({ sopUid: removed.sopUid });
      await store.index.deleteInstance(removed.sopUid);
      await store.blobs.remove(stored!.blobKey);
      pacs.gets = [];
      const got = await collect(cache.instances({ studyUid: study.studyUid }));
      assert.equal(got.length, study.sopUids.length);
      assert.deepEqual(pacs.gets.map((g) => g.keys.SeriesInstanceUID), [study.seriesUids[1]]);
      assert.deepEqual(await collect(cache.instances({ studyUid: '1.2.3.999' })), []);
    });

    test('with the PACS down a cached copy is still served; nothing cached is a clear error', async () => {
      pacs.down = true;
      try {
        assert.equal((await collect(cache.instances({ studyUid: study.studyUid }))).length, study.sopUids.length);
        await assert.rejects(collect(cache.instances({ studyUid: '1.2.3.998' })), (e: Error) => e instanceof StudyUnavailableError && /FAKEPACS: connection refused/.test(e.message));
      } finally {
        pacs.down = false;
      }
    });

    test('eviction: recent or streaming studies stay, idle ones go by age then size; studies not brought by the cache stay', async () => {
      // A study that reached the store otherwise (e.g. sent by a modality) is never evicted.
      for (const f of other.files) {
        const w = store.ingestor.begin();
        await pipeline(createReadStream(f), w);
        await store.ingestor.commit(w);
      }
      const now = Date.now();
      assert.deepEqual(await cache.evict(now), { studies: 0, bytes: 0 }, 'within limits');
      // Over the size limit but used a moment ago: kept.
      const tight = new StudyCache({ db: store.database.db, index: store.index, ingestor: store.ingestor, blobs: store.blobs, pacs: pacs as unknown as PacsGateway, retrieve: 'C-GET', aeTitle: 'OPENDRIM', limits: { ...limits, maxBytes: 1 }, log: createLogger('silent') });
      assert.equal((await tight.evict(now)).studies, 0, 'used within the residency time');
      // Being streamed: kept even when idle long enough.
      const stream = tight.instances({ studyUid: study.studyUid })[Symbol.asyncIterator]();
      await stream.next();
      assert.equal((await tight.evict(now + 2 * 60_000)).studies, 0, 'in use');
      while (!(await stream.next()).done);
      const [inst] = await store.index.listInstances({ studyUid: study.studyUid });
      const freed = await tight.evict(Date.now() + 2 * 60_000);
      assert.deepEqual(freed, { studies: 1, bytes: study.bytes });
      assert.equal((await store.index.listInstances({ studyUid: study.studyUid })).length, 0);
      assert.equal(existsSync(store.blobs.localPath(inst!.blobKey)!), false, 'files removed');
      assert.equal((await store.index.listInstances({ studyUid: other.studyUid })).length, other.sopUids.length, 'not a cached study');
      // Age limit alone: fetch again, then look a day later.
      await collect(cache.instances({ studyUid: study.studyUid }));
      assert.equal((await cache.evict(Date.now() + 24 * 3600_000)).studies, 1);
    });
  });
}
