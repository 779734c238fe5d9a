import { sql, type Kysely, type Selectable } from 'kysely';
import type { Logger } from '../common/log.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { OutboundInstance } from '../dicom/scu.js';
import type { DB, Dialect, RouteTransferTable } from '../store/db.js';
import { JobLeases } from '../store/job-leases.js';
import type { RouteDestination } from './destinations.js';

export type RouteTransfer = Selectable<RouteTransferTable>;
export type TransferStatus = 'queued' | 'sending' | 'done' | 'failed';

/** The study's instances as local files, fetched first if need be (from the PACS into the local cache). */
export type StudyFiles = (studyUid: string) => Promise<OutboundInstance[]>;

/**
 * The routing outbox: a durable transfer per study and destination. Queued twice while not yet sent, a study is
 * sent once (de-duplication); a study that grows after it was sent is queued again and the receiver drops the
 * instances it already has. Failures are retried with exponential backoff up to `maxAttempts`, then the
 * transfer waits for a person (retry button). Several nodes sharing PostgreSQL claim with SKIP LOCKED.
 */
export class RouteOutbox {
  private timer: NodeJS.Timeout | undefined;
  private running = 0;
  private stopped = false;
  private readonly leases: JobLeases;
  private get nodeId(): string {
    return this.leases.nodeId;
  }
  constructor(
    private readonly deps: {
      db: Kysely<DB>;
      dialect: Dialect;
      destinations: Map<string, RouteDestination>;
      files: StudyFiles;
      audit: AuditTrail;
      log: Logger;
      maxAttempts: number;
      parallel?: number;
      baseDelayMs?: number;
      /** Stable across restarts (host and data directory): the node takes back its own claims when it starts. */
      nodeId?: string;
      leaseMs?: number;
    },
  ) {
    this.leases = new JobLeases({ db: deps.db, table: 'route_transfers', running: 'sending', queued: 'queued', log: deps.log, nodeId: deps.nodeId, leaseMs: deps.leaseMs });
  }

  /** Queues the study for the destination unless a transfer of it there is already waiting or under way. */
  async enqueue(studyUid: string, destination: string, rule: string): Promise<number | undefined> {
    const { db } = this.deps;
    const pending = await db.selectFrom('route_transfers').select('id').where('study_uid', '=', studyUid).where('destination', '=', destination).where('status', 'in', ['queued', 'sending']).executeTakeFirst();
    if (pending) return undefined;
    const now = new Date().toISOString();
    const r = await db.insertInto('route_transfers').values({ study_uid: studyUid, destination, rule, status: 'queued', next_attempt_at: now, claimed_by: null, error: null, created_at: now, updated_at: now }).returning('id').executeTakeFirstOrThrow();
    this.kick();
    return Number(r.id);
  }

  async list(filter: { status?: string; studyUid?: string } = {}, limit = 200): Promise<RouteTransfer[]> {
    let q = this.deps.db.selectFrom('route_transfers').selectAll().orderBy('id', 'desc').limit(limit);
    if (filter.status) q = q.where('status', '=', filter.status);
    if (filter.studyUid) q = q.where('study_uid', '=', filter.studyUid);
    return q.execute();
  }

  async get(id: number): Promise<RouteTransfer | undefined> {
    return this.deps.db.selectFrom('route_transfers').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /** A failed (or waiting) transfer tried again now, with a fresh attempt budget. */
  async retry(id: number, by: string): Promise<boolean> {
    const r = await this.deps.db.updateTable('route_transfers').set({ status: 'queued', attempts: 0, next_attempt_at: new Date().toISOString(), updated_at: new Date().toISOString() }).where('id', '=', id).where('status', 'in', ['failed', 'queued']).executeTakeFirst();
    if (!Number(r.numUpdatedRows)) return false;
    await this.deps.audit.record({ actorType: 'practitioner', actorId: by, action: 'routing.retry', outcome: 'success', detail: { transfer: id } });
    this.kick();
    return true;
  }

  start(pollMs = 2000): void {
    this.stopped = false;
    // Transfers this node held when it was stopped, and those whose node died (lease run out), go back to the queue.
    this.leases.start();
    this.timer = setInterval(() => this.kick(), pollMs);
    this.timer.unref();
  }

  /** No new transfer is claimed after this (those in flight finish): a stopping node leaves the rest to others. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.leases.stop();
  }

  /** Runs due transfers up to the parallel limit; safe to call at any time. */
  kick(): void {
    void this.drain().catch((e: Error) => this.deps.log.error({ err: e }, 'routing outbox failed'));
  }

  private async drain(): Promise<void> {
    while (!this.stopped && this.running < (this.deps.parallel ?? 2)) {
      const t = await this.claim();
      if (!t) return;
      this.running++;
      void this.run(t).finally(() => {
        this.running--;
        this.kick();
      });
    }
  }

  private async claim(): Promise<RouteTransfer | undefined> {
    const { db, dialect } = this.deps;
    const now = new Date().toISOString();
    if (dialect === 'postgres') {
      const r = await sql<{ id: number }>`update route_transfers set status = 'sending', claimed_by = ${this.nodeId}, updated_at = ${now}
        where id = (select id from route_transfers where status = 'queued' and next_attempt_at <= ${now} order by id limit 1 for update skip locked)
        returning id`.execute(db);
      const id = r.rows[0]?.id;
      return id === undefined ? undefined : this.get(Number(id));
    }
    const next = await db.selectFrom('route_transfers').select('id').where('status', '=', 'queued').where('next_attempt_at', '<=', now).orderBy('id').limit(1).executeTakeFirst();
    if (!next) return undefined;
    const r = await db.updateTable('route_transfers').set({ status: 'sending', claimed_by: this.nodeId, updated_at: now }).where('id', '=', next.id).where('status', '=', 'queued').executeTakeFirst();
    return Number(r.numUpdatedRows) ? this.get(Number(next.id)) : this.claim();
  }

  private async update(id: number, set: Partial<Pick<RouteTransfer, 'status' | 'total' | 'sent' | 'attempts' | 'next_attempt_at' | 'error' | 'claimed_by'>>): Promise<void> {
    await this.deps.db.updateTable('route_transfers').set({ ...set, updated_at: new Date().toISOString() }).where('id', '=', id).execute();
  }

  private async run(t: RouteTransfer): Promise<void> {
    const { destinations, files, audit, log } = this.deps;
    const id = Number(t.id);
    const destination = destinations.get(t.destination);
    const started = Date.now();
    this.leases.hold(id);
    try {
      if (!destination) throw new Error(`destination ${t.destination} is no longer configured`);
      const instances = await files(t.study_uid);
      if (!instances.length) throw new Error('the study has no instance available to send');
      await this.update(id, { total: instances.length, sent: 0 });
      let last = 0;
      const r = await destination.send(instances, (sent) => {
        // Progress is written at most every half second: a status page, not a transaction log.
        if (Date.now() - last < 500 && sent < instances.length) return;
        last = Date.now();
        void this.update(id, { sent });
      });
      if (r.failed > 0 || r.sent < instances.length) throw new Error(`${r.sent} of ${instances.length} instance(s) accepted by ${destination.describe}${r.error ? `: ${r.error}` : ''}`);
      await this.update(id, { status: 'done', sent: r.sent, error: null, claimed_by: null });
      await audit.record({ actorType: 'system', actorId: `routing:${t.rule}`, action: 'routing.send', studyUid: t.study_uid, outcome: 'success', detail: { transfer: id, destination: destination.describe, instances: r.sent, seconds: (Date.now() - started) / 1000 } });
      log.info({ transfer: id, study: t.study_uid, destination: t.destination, instances: r.sent, ms: Date.now() - started }, 'study routed');
    } catch (e) {
      const attempts = Number(t.attempts) + 1;
      const final = attempts >= this.deps.maxAttempts;
      const delay = Math.min(3600_000, (this.deps.baseDelayMs ?? 10_000) * 2 ** (attempts - 1));
      await this.update(id, { status: final ? 'failed' : 'queued', attempts, error: (e as Error).message, next_attempt_at: new Date(Date.now() + delay).toISOString(), claimed_by: null });
      await audit.record({ actorType: 'system', actorId: `routing:${t.rule}`, action: 'routing.send', studyUid: t.study_uid, outcome: 'failure', detail: { transfer: id, destination: t.destination, attempts, final, error: (e as Error).message } });
      log.warn({ transfer: id, attempts, final, err: (e as Error).message }, 'routing attempt failed');
    } finally {
      this.leases.release(id);
    }
  }
}
