import type { Kysely } from 'kysely';
import { AsyncQueue } from '../common/async-queue.js';
import type { Logger } from '../common/log.js';
import type { DB } from '../store/db.js';
import type { BlobStore } from '../store/blobs.js';
import type { Ingestor, IngestResult } from '../store/ingest.js';
import type { StoredInstance, StudyIndex } from '../store/study-index.js';
import type { PacsGateway } from './pacs.js';

export type PacsRetrieve = 'C-GET' | 'C-MOVE';

export interface CacheLimits {
  /** Cached studies are evicted, least recently used first, while they take more than this. */
  maxBytes: number;
  /** A cached study not asked for during this long is evicted. */
  maxAgeMs: number;
  /**
   * A study used this recently is never evicted, whatever the limits: it may be streaming now, on this node
   * or on another node sharing the database and storage.
   */
  minResidencyMs: number;
}

export interface CacheTarget {
  studyUid: string;
  seriesUid?: string;
  sopUid?: string;
}

/** The exam cannot be served: the PACS did not answer and nothing is cached. */
export class StudyUnavailableError extends Error {
  override name = 'StudyUnavailableError';
}

/** A series to bring from the PACS, with the SOP classes to negotiate for C-GET. */
interface Fetch {
  seriesUid: string;
  sopUid?: string;
  sopClasses: string[];
}

/**
 * The images this box serves to other DRIMboxes: the local store acts as a cache in front of the local PACS.
 * What is not here yet is retrieved on demand (C-GET, or C-MOVE to this node) and handed to the caller as each
 * instance is stored, not after the whole study; studies brought this way are recorded and evicted by size and
 * age. Studies that reached the store otherwise (sent by a modality, imported) are served but never evicted.
 */
export class StudyCache {
  private readonly inUse = new Map<string, number>();
  /** Series being fetched now, so concurrent requests wait for one transfer instead of starting another. */
  private readonly inFlight = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      db: Kysely<DB>;
      index: StudyIndex;
      ingestor: Ingestor;
      blobs: BlobStore;
      /** The local PACS; without it only what is stored is served. */
      pacs?: PacsGateway;
      retrieve: PacsRetrieve;
      /** Our AE title, the C-MOVE destination. */
      aeTitle: string;
      limits: CacheLimits;
      log: Logger;
      onFetched?: (n: number) => void;
    },
  ) {}

  /** Evicts on a timer (and once now); the timer never keeps the process alive. */
  start(sweepMs: number): void {
    const sweep = () =>
      this.evict().catch((e) => this.deps.log.error({ err: e }, 'study cache eviction failed'));
    void sweep();
    this.timer = setInterval(sweep, sweepMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Resolves once every instance of the target is stored locally. */
  async prepare(target: CacheTarget): Promise<void> {
    for await (const _ of this.instances(target)) {
      // Draining the stream is what fetches; metadata is then read from the index.
    }
  }

  /** The target's instances: those stored first, then each one fetched from the PACS as soon as it is stored. */
  async *instances(target: CacheTarget): AsyncGenerator<StoredInstance> {
    const { index, log } = this.deps;
    this.hold(target.studyUid, +1);
    let plan: Fetch[] = [];
    let studyWasHere = true;
    try {
      const local = await index.listInstances(target);
      try {
        plan = await this.plan(target, local);
      } catch (e) {
        if (!local.length) throw new StudyUnavailableError(`the exam cannot be fetched from the local PACS ${this.deps.pacs?.aeTitle}: ${(e as Error).message}`);
        // The PACS is down but a copy is here: serve it rather than fail; it may lack recent series.
        log.warn({ studyUid: target.studyUid, err: (e as Error).message }, 'local PACS unreachable; serving the cached copy');
        plan = [];
      }
      const sent = new Set<string>();
      for (const i of local) {
        sent.add(i.sopUid);
        yield i;
      }
      studyWasHere = local.length > 0 || (await index.listInstances({ studyUid: target.studyUid })).length > 0;
      for (const f of plan) {
        for await (const i of this.fetchSeries(target.studyUid, f)) {
          if (sent.has(i.sopUid)) continue;
          sent.add(i.sopUid);
          yield i;
        }
      }
    } finally {
      this.hold(target.studyUid, -1);
      // Also when the caller went away mid-study: what was brought must be known to eviction.
      await this.record(target.studyUid, plan.length > 0, studyWasHere).catch((e) => log.error({ err: e }, 'study cache bookkeeping failed'));
    }
  }

  private hold(studyUid: string, delta: number): void {
    const n = (this.inUse.get(studyUid) ?? 0) + delta;
    if (n > 0) this.inUse.set(studyUid, n);
    else this.inUse.delete(studyUid);
  }

  /**
   * What the PACS has that the store lacks, series by series: instance counts first (one query for the study),
   * then the instance list of the series that differ. A series partly here is fetched whole (duplicates are
   * dropped on arrival) rather than relying on UID-list retrieves that not every PACS supports.
   */
  private async plan(target: CacheTarget, local: StoredInstance[]): Promise<Fetch[]> {
    const pacs = this.deps.pacs;
    if (!pacs) return [];
    if (target.sopUid) {
      if (local.length) return [];
      const found = await pacs.seriesInstances(target.studyUid, target.seriesUid, target.sopUid);
      return found.map((i) => ({ seriesUid: i.seriesUid, sopUid: i.sopUid, sopClasses: [i.sopClassUid] }));
    }
    const counts = await pacs.seriesCounts(target.studyUid, target.seriesUid);
    const here = new Map<string, number>();
    for (const i of local) here.set(i.seriesUid, (here.get(i.seriesUid) ?? 0) + 1);
    const out: Fetch[] = [];
    for (const [seriesUid, count] of counts) {
      if (count !== undefined && (here.get(seriesUid) ?? 0) >= count) continue;
      const instances = await pacs.seriesInstances(target.studyUid, seriesUid);
      const localSops = new Set(local.filter((i) => i.seriesUid === seriesUid).map((i) => i.sopUid));
      if (instances.every((i) => localSops.has(i.sopUid))) continue;
      out.push({ seriesUid, sopClasses: [...new Set(instances.map((i) => i.sopClassUid))] });
    }
    return out;
  }

  /** Brings one series (or instance) from the PACS, yielding each instance once stored and indexed. */
  private async *fetchSeries(studyUid: string, f: Fetch): AsyncGenerator<StoredInstance> {
    const { index } = this.deps;
    const key = f.sopUid ?? f.seriesUid;
    const running = this.inFlight.get(key);
    if (running) {
      // Another request is bringing it: wait, then serve what it stored.
      await running.catch(() => undefined);
      yield* await index.listInstances({ studyUid, seriesUid: f.seriesUid, sopUid: f.sopUid });
      return;
    }
    const queue = new AsyncQueue<StoredInstance>();
    const transfer = this.transfer(studyUid, f, queue);
    this.inFlight.set(key, transfer);
    transfer.then(
      () => queue.close(),
      (e: Error) => queue.close(e),
    );
    transfer.finally(() => this.inFlight.delete(key)).catch(() => undefined);
    yield* queue;
  }

  private async transfer(studyUid: string, f: Fetch, queue: AsyncQueue<StoredInstance>): Promise<void> {
    const { pacs, ingestor, index, log, retrieve, aeTitle } = this.deps;
    const level = f.sopUid ? 'IMAGE' : 'SERIES';
    const keys: Record<string, string> = { StudyInstanceUID: studyUid, SeriesInstanceUID: f.seriesUid, ...(f.sopUid ? { SOPInstanceUID: f.sopUid } : {}) };
    const arrived = async (r: IngestResult) => {
      const [i] = await index.listInstances({ sopUid: r.sopUid });
      if (i) queue.push(i);
    };
    const lookups: Array<Promise<void>> = [];
    const started = Date.now();
    let received = 0;
    let outcome;
    if (retrieve === 'C-GET') {
      outcome = await pacs!.get(level, keys, f.sopClasses, (info) => {
        const writer = ingestor.begin();
        return {
          writable: writer,
          commit: async () => {
            const r = await ingestor.commit(writer, { sopInstanceUid: info.sopInstanceUid, sopClassUid: info.sopClassUid, sourceAe: pacs!.aeTitle });
            received++;
            await arrived(r);
          },
          abort: () => writer.discard(),
        };
      });
    } else {
      // Our DICOM service stores what the PACS sends; pick out this series as it is indexed.
      const stop = ingestor.onStored((r) => {
        if (r.studyUid === studyUid && r.seriesUid === f.seriesUid && (!f.sopUid || r.sopUid === f.sopUid)) {
          received++;
          lookups.push(arrived(r));
        }
      });
      try {
        outcome = await pacs!.move(level, keys, aeTitle);
      } finally {
        stop();
      }
    }
    await Promise.all(lookups);
    this.deps.onFetched?.(received);
    log.info({ studyUid, seriesUid: f.seriesUid, retrieve, received, failed: outcome.failed, ms: Date.now() - started }, 'series brought from the local PACS');
    if (outcome.failed > 0 || (outcome.status !== 0 && outcome.status !== 0xb000)) {
      throw new Error(`${retrieve} of series ${f.seriesUid} from ${pacs!.aeTitle} ended with status 0x${outcome.status.toString(16)} (${outcome.completed} sent, ${outcome.failed} failed)`);
    }
  }

  /** Marks a study as used now; records it as cached when this request brought it. */
  private async record(studyUid: string, fetched: boolean, studyWasHere: boolean): Promise<void> {
    const { db, index } = this.deps;
    const now = new Date().toISOString();
    const row = await db.selectFrom('cached_studies').select('study_uid').where('study_uid', '=', studyUid).executeTakeFirst();
    if (row) {
      await db
        .updateTable('cached_studies')
        .set({ last_access: now, ...(fetched ? { bytes: await index.studySize(studyUid) } : {}) })
        .where('study_uid', '=', studyUid)
        .execute();
    } else if (fetched && !studyWasHere) {
      await db
        .insertInto('cached_studies')
        .values({ study_uid: studyUid, bytes: await index.studySize(studyUid), cached_at: now, last_access: now })
        .onConflict((oc) => oc.column('study_uid').doUpdateSet({ last_access: now }))
        .execute();
    }
  }

  /** Evicts cached studies unused for longer than maxAge, then the least recently used while over maxBytes. */
  async evict(now = Date.now()): Promise<{ studies: number; bytes: number }> {
    const { db, index, blobs, limits, log } = this.deps;
    const rows = await db.selectFrom('cached_studies').selectAll().orderBy('last_access').execute();
    let total = rows.reduce((n, r) => n + Number(r.bytes), 0);
    const freed = { studies: 0, bytes: 0 };
    for (const r of rows) {
      const idle = now - new Date(r.last_access).getTime();
      const expired = idle > limits.maxAgeMs;
      if (!expired && total <= limits.maxBytes) continue;
      if (this.inUse.has(r.study_uid) || idle < limits.minResidencyMs) continue;
      const keys = await index.deleteStudy(r.study_uid);
      await db.deleteFrom('cached_studies').where('study_uid', '=', r.study_uid).execute();
      for (const k of keys) await blobs.remove(k).catch((e) => log.warn({ key: k, err: (e as Error).message }, 'cached file could not be removed'));
      total -= Number(r.bytes);
      freed.studies++;
      freed.bytes += Number(r.bytes);
      log.info({ studyUid: r.study_uid, bytes: Number(r.bytes), idleMinutes: Math.round(idle / 60_000), reason: expired ? 'age' : 'size' }, 'cached study evicted');
    }
    return freed;
  }
}
