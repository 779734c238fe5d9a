import { hostname } from 'node:os';
import { sql, type Kysely } from 'kysely';
import type { Logger } from '../common/log.js';
import type { DB, PublicationQueueTable } from '../store/db.js';

export type QueueKind = 'report' | 'withdrawal' | 'exam-change';
export type QueueEntry = Omit<PublicationQueueTable, 'id'> & { id: number };

/** What working an entry came to: done (with what happened), to be retried later, or failed for good. */
export type WorkResult = { status: 'done'; outcome: string } | { status: 'retry'; error: string } | { status: 'failed'; error: string };

export interface QueueOptions {
  /** First retry delay; doubles with each attempt up to maxDelayMs. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** An entry still not published this long after it was received fails (shown to administrators). */
  giveUpAfterMs?: number;
  /** How long a claim holds while its node works (renewed by a node that is alive). */
  leaseMs?: number;
  pollMs?: number;
}

/**
 * The source function's durable queue: what the RIS (or the PACS) asked for is written here before it is
 * acknowledged, then worked through in arrival order per exam, retried with exponential backoff while the PACS or
 * the DMP cannot take it. A DMP outage delays publications; it never loses one. Entries are claimed with a lease, so
 * several nodes share the queue and a node that died leaves nothing stuck once its lease has run out; a node that
 * restarts under the same identity takes its own claims back at once.
 */
export class PublicationQueue {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = true;
  private readonly opts: Required<QueueOptions>;

  constructor(
    private readonly deps: { db: Kysely<DB>; log: Logger; work: (e: QueueEntry) => Promise<WorkResult>; onFailed?: (e: QueueEntry, error: string) => Promise<void>; nodeId?: string },
    opts: QueueOptions = {},
  ) {
    this.opts = { baseDelayMs: 1000, maxDelayMs: 5 * 60_000, giveUpAfterMs: 24 * 3600_000, leaseMs: 5 * 60_000, pollMs: 1000, ...opts };
  }

  private get nodeId(): string {
    return this.deps.nodeId ?? `${hostname()}:source`;
  }

  /** Durably records a request; the caller acknowledges only once this has returned. */
  async enqueue(e: { kind: QueueKind; examKey: string; documentId?: string; payload: unknown; sender: string; controlId?: string }): Promise<number> {
    const now = new Date().toISOString();
    const row = await this.deps.db
      .insertInto('publication_queue')
      .values({ kind: e.kind, exam_key: e.examKey, document_id: e.documentId ?? null, payload: JSON.stringify(e.payload), status: 'pending', attempts: 0, next_attempt_at: now, claimed_by: null, lease_until: null, outcome: null, error: null, sender: e.sender, control_id: e.controlId ?? null, received_at: now, updated_at: now })
      .returning('id')
      .executeTakeFirstOrThrow();
    this.kick();
    return Number(row.id);
  }

  async pending(where: { documentId?: string; examKey?: string }): Promise<QueueEntry[]> {
    let q = this.deps.db.selectFrom('publication_queue').selectAll().where('status', '=', 'pending');
    if (where.documentId) q = q.where('document_id', '=', where.documentId);
    if (where.examKey) q = q.where('exam_key', '=', where.examKey);
    return (await q.orderBy('id').execute()) as QueueEntry[];
  }

  async list(opts: { status?: string; limit?: number } = {}): Promise<QueueEntry[]> {
    let q = this.deps.db.selectFrom('publication_queue').selectAll();
    if (opts.status) q = q.where('status', '=', opts.status);
    return (await q.orderBy('id', 'desc').limit(opts.limit ?? 200).execute()) as QueueEntry[];
  }

  async counts(): Promise<Record<string, number>> {
    const rows = await this.deps.db.selectFrom('publication_queue').select(['status', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('status').execute();
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

  /** A failed entry is tried again at once (after someone fixed the data or the DMP's refusal). */
  async retry(id: number): Promise<boolean> {
    const now = new Date().toISOString();
    const r = await this.deps.db.updateTable('publication_queue').set({ status: 'pending', attempts: 0, next_attempt_at: now, received_at: now, error: null, updated_at: now }).where('id', '=', id).where('status', '=', 'failed').executeTakeFirst();
    this.kick();
    return Number(r.numUpdatedRows) > 0;
  }

  /**
   * Resolves once nothing is being worked on and no entry waits for its first attempt (with `delayed`, until no
   * entry is pending at all, retries included). Tests and the demo wait on it.
   */
  async settled(opts: { timeoutMs?: number; delayed?: boolean } = {}): Promise<void> {
    const until = Date.now() + (opts.timeoutMs ?? 30_000);
    for (;;) {
      let q = this.deps.db.selectFrom('publication_queue').select((eb) => eb.fn.countAll<number>().as('n')).where('status', '=', 'pending');
      if (!opts.delayed) q = q.where('attempts', '=', 0);
      const pending = Number((await q.executeTakeFirstOrThrow()).n);
      if (!pending && !this.running) return;
      if (Date.now() > until) throw new Error(`publication queue not settled after ${opts.timeoutMs ?? 30_000} ms (${pending} pending)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  start(): void {
    this.stopped = false;
    // Claims this node held before it restarted are its own: take them back now rather than after the lease
    // (only those made before this start: one made since is this run's, at work).
    const startedAt = new Date().toISOString();
    void this.deps.db.updateTable('publication_queue').set({ claimed_by: null, lease_until: null }).where('claimed_by', '=', this.nodeId).where('status', '=', 'pending').where('updated_at', '<', startedAt).execute().then(() => this.kick(), (e) => this.deps.log.error({ err: e }, 'publication queue: could not release previous claims'));
    this.timer = setInterval(() => this.kick(), this.opts.pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    while (this.running) await new Promise((r) => setTimeout(r, 20));
  }

  /** Works through due entries now (also called by the timer); one pass at a time. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.drain()
      .catch((e) => this.deps.log.error({ err: e }, 'publication queue pass failed'))
      .finally(() => {
        this.running = false;
        if (this.again && !this.stopped) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Runs until no entry is due; resolves when the queue has nothing to do right now (tests use it). */
  async drain(): Promise<void> {
    for (;;) {
      if (this.stopped && this.timer) return;
      const entry = await this.claim();
      if (!entry) return;
      await this.run(entry);
    }
  }

  /** The oldest due entry whose exam has no older unfinished entry, claimed for this node. */
  private async claim(): Promise<QueueEntry | undefined> {
    const now = new Date().toISOString();
    const candidates = (await sql<QueueEntry>`select q.* from publication_queue q
      where q.status = 'pending' and q.next_attempt_at <= ${now} and (q.lease_until is null or q.lease_until < ${now})
        and not exists (select 1 from publication_queue o where o.exam_key = q.exam_key and o.status = 'pending' and o.id < q.id)
      order by q.id limit 5`.execute(this.deps.db)).rows;
    for (const c of candidates) {
      const lease = new Date(Date.now() + this.opts.leaseMs).toISOString();
      const r = await this.deps.db
        .updateTable('publication_queue')
        .set({ claimed_by: this.nodeId, lease_until: lease, updated_at: now })
        .where('id', '=', c.id)
        .where('status', '=', 'pending')
        .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) === 1) return { ...c, id: Number(c.id) };
    }
    return undefined;
  }

  private async run(entry: QueueEntry): Promise<void> {
    let result: WorkResult;
    try {
      result = await this.deps.work(entry);
    } catch (e) {
      result = { status: 'retry', error: (e as Error).message };
    }
    const now = new Date();
    const set: Partial<Omit<PublicationQueueTable, 'id'>> = { claimed_by: null, lease_until: null, updated_at: now.toISOString(), attempts: entry.attempts + 1 };
    if (result.status === 'done') Object.assign(set, { status: 'done', outcome: result.outcome, error: null });
    else if (result.status === 'failed' || now.getTime() - Date.parse(entry.received_at) > this.opts.giveUpAfterMs) Object.assign(set, { status: 'failed', error: result.error });
    else {
      const delay = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** entry.attempts);
      Object.assign(set, { error: result.error, next_attempt_at: new Date(now.getTime() + delay).toISOString() });
      this.deps.log.warn({ id: entry.id, kind: entry.kind, attempt: entry.attempts + 1, retryInMs: delay, reason: result.error }, 'publication delayed; it will be retried');
    }
    await this.deps.db.updateTable('publication_queue').set(set).where('id', '=', entry.id).execute();
    if (set.status === 'failed') await this.deps.onFailed?.({ ...entry, ...set } as QueueEntry, (set.error ?? '') as string);
  }
}
