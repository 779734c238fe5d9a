import { hostname } from 'node:os';
import type { Kysely } from 'kysely';
import type { Logger } from '../common/log.js';
import type { DB } from './db.js';

/** Tables of jobs claimed by one node at a time: `claimed_by` names the node, `updated_at` is the lease's last renewal. */
type JobTable = 'route_transfers' | 'import_jobs';

/**
 * Leases on claimed jobs. The node working on a job renews its lease (`updated_at`) every `leaseMs / 4`; a job
 * whose lease is older than `leaseMs` was left by a node that died or hangs, and any node takes it back. A node
 * knows its own identity across restarts (host and data directory), so the jobs it held when it was killed are
 * taken back as soon as it starts again, not after the lease runs out.
 */
export class JobLeases {
  private readonly held = new Set<number>();
  private timer: NodeJS.Timeout | undefined;
  readonly nodeId: string;
  /** When this run of the node began: its own claims older than that are from its previous run. */
  private readonly since = new Date().toISOString();

  constructor(
    private readonly deps: { db: Kysely<DB>; table: JobTable; running: string; queued: string; log: Logger; nodeId?: string; leaseMs?: number },
  ) {
    this.nodeId = deps.nodeId ?? `${hostname()}:${process.pid}`;
  }

  get leaseMs(): number {
    return this.deps.leaseMs ?? 120_000;
  }

  hold(id: number): void {
    this.held.add(id);
  }

  release(id: number): void {
    this.held.delete(id);
  }

  /** Jobs back to the queue: this node's from its previous run (at start), and any whose lease ran out. */
  async reclaim(own: boolean): Promise<number> {
    const { db, table, running, queued } = this.deps;
    const expired = new Date(Date.now() - this.leaseMs).toISOString();
    const held = [...this.held];
    const r = await db
      .updateTable(table)
      .set({ status: queued, claimed_by: null })
      .where('status', '=', running)
      // A claim of this node made before this run began is from the run that was stopped or killed.
      .where((eb) => eb.or([eb('updated_at', '<', expired), ...(own ? [eb.and([eb('claimed_by', '=', this.nodeId), eb('updated_at', '<', this.since)])] : [])]))
      .$if(held.length > 0, (q) => q.where('id', 'not in', held))
      .executeTakeFirst();
    const n = Number(r.numUpdatedRows);
    if (n) this.deps.log.warn({ jobs: n, table, own }, own ? 'jobs this node held when it last stopped are taken back' : 'jobs whose lease ran out (their node died or hangs) are taken back');
    return n;
  }

  start(): void {
    void this.reclaim(true).catch((e) => this.deps.log.error({ err: e }, 'job leases: could not take back earlier claims'));
    this.timer = setInterval(() => void this.renew().catch((e) => this.deps.log.warn({ err: e }, 'job leases: renewal failed')), Math.max(1000, this.leaseMs / 4));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async renew(): Promise<void> {
    const held = [...this.held];
    if (held.length) await this.deps.db.updateTable(this.deps.table).set({ updated_at: new Date().toISOString() }).where('id', 'in', held).where('claimed_by', '=', this.nodeId).execute();
    await this.reclaim(false);
  }
}
