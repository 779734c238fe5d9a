import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { DB, Dialect } from '../store/db.js';
import type { Logger } from '../common/log.js';

export type ActorType = 'dicom-ae' | 'http-client' | 'practitioner' | 'patient' | 'drimbox' | 'system';
export type Outcome = 'success' | 'failure' | 'refused';

export interface AuditEvent {
  actorType: ActorType;
  /** AE title, RPPS number, patient identifier, DRIMbox domain, or the client address when nothing better is known. */
  actorId: string;
  actorAddress?: string;
  /** What was done, e.g. dicom.store, dicom.find, dicomweb.retrieve. */
  action: string;
  patientId?: string;
  studyUid?: string;
  outcome: Outcome;
  detail?: Record<string, unknown>;
}

export interface AuditRecord extends Required<Omit<AuditEvent, 'detail' | 'actorAddress' | 'patientId' | 'studyUid'>> {
  id: number;
  at: string;
  actorAddress: string | null;
  patientId: string | null;
  studyUid: string | null;
  detail: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export const GENESIS = '0'.repeat(64);

/** The hash of a record: SHA-256 over the previous hash and the record's fields in a fixed order. */
export function recordHash(prevHash: string, r: { id: number; at: string; actorType: string; actorId: string; actorAddress: string | null; action: string; patientId: string | null; studyUid: string | null; outcome: string; detail: string }): string {
  const canonical = JSON.stringify([r.id, r.at, r.actorType, r.actorId, r.actorAddress, r.action, r.patientId, r.studyUid, r.outcome, r.detail]);
  return createHash('sha256').update(prevHash).update('\n').update(canonical).digest('hex');
}

export interface VerifyResult {
  ok: boolean;
  records: number;
  lastHash: string;
  /** The first record that does not chain: edited, inserted, or following deleted records. */
  brokenAt?: number;
  reason?: string;
}

/**
 * Append-only, tamper-evident audit trail (IHE ATNA in spirit): each record carries the hash of the one before,
 * so editing or deleting any record breaks the chain from there on, which `verify` reports. Appends are
 * serialised (in process, and across nodes sharing PostgreSQL with an advisory lock).
 */
export class AuditTrail {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly listeners: Array<(r: AuditRecord) => void> = [];

  /** Called with each record once it is in the trail (e.g. the ATNA exporter). */
  onRecorded(l: (r: AuditRecord) => void): void {
    this.listeners.push(l);
  }

  constructor(
    private readonly db: Kysely<DB>,
    private readonly dialect: Dialect,
    private readonly log: Logger,
  ) {}

  /** Events the database could not take yet (a full disk, an outage): kept, in order, and written once it can. */
  private readonly backlog: Array<AuditEvent & { at: string }> = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private lost = 0;
  /** Past this many waiting events the oldest are written to the log in full (never dropped without a trace). */
  static readonly MAX_BACKLOG = 100_000;

  get backlogSize(): number {
    return this.backlog.length;
  }

  /**
   * Records an event. Never throws: when the database cannot take it, the event is kept in memory in order and
   * retried every few seconds (its time is the time it happened), and the failure is logged loudly and counted.
   */
  record(e: AuditEvent): Promise<void> {
    const event = { ...e, at: new Date().toISOString() };
    const p = this.chain
      .then(() => (this.backlog.length ? Promise.reject(new Error('earlier records are still waiting')) : this.append(event)))
      .catch((err: Error) => this.keep(event, err));
    this.chain = p;
    return p;
  }

  private keep(event: AuditEvent & { at: string }, err: Error): void {
    this.backlog.push(event);
    if (this.backlog.length > AuditTrail.MAX_BACKLOG) {
      const oldest = this.backlog.shift()!;
      this.lost++;
      this.log.fatal({ record: oldest, lostSoFar: this.lost }, 'AUDIT BACKLOG FULL: the oldest waiting record is written here in full instead of to the trail');
    }
    if (this.backlog.length === 1 || this.backlog.length % 1000 === 0) this.log.error({ err, action: event.action, waiting: this.backlog.length }, 'audit records cannot be written to the trail yet: kept in memory and retried');
    this.retryTimer ??= setTimeout(() => {
      this.retryTimer = undefined;
      this.chain = this.chain.then(() => this.writeBacklog());
    }, 5000);
    this.retryTimer.unref();
  }

  /** Writes the waiting events in order; stops at the first failure and tries again later. */
  private async writeBacklog(): Promise<void> {
    while (this.backlog.length) {
      try {
        await this.append(this.backlog[0]!);
      } catch (err) {
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = undefined;
          this.chain = this.chain.then(() => this.writeBacklog());
        }, 5000);
        this.retryTimer.unref();
        return;
      }
      this.backlog.shift();
      if (!this.backlog.length) this.log.warn('waiting audit records written to the trail');
    }
  }

  private async append(e: AuditEvent & { at?: string }): Promise<void> {
    const record = await this.db.transaction().execute(async (trx) => {
      if (this.dialect === 'postgres') await sql`select pg_advisory_xact_lock(4242001)`.execute(trx);
      const last = await trx.selectFrom('audit_events').select(['id', 'hash']).orderBy('id', 'desc').limit(1).executeTakeFirst();
      const prevHash = last?.hash ?? GENESIS;
      const row = {
        at: e.at ?? new Date().toISOString(),
        actor_type: e.actorType,
        actor_id: e.actorId,
        actor_address: e.actorAddress ?? null,
        action: e.action,
        patient_id: e.patientId || null,
        study_uid: e.studyUid || null,
        outcome: e.outcome,
        detail: JSON.stringify(e.detail ?? {}),
        prev_hash: prevHash,
        hash: 'pending',
      };
      // Ids are given here, one after the other under the lock, never by a sequence that a failed insert would
      // leave a hole in: a missing id then always means a removed record.
      const { id } = await trx.insertInto('audit_events').values({ ...row, id: Number(last?.id ?? 0) + 1 }).returning('id').executeTakeFirstOrThrow();
      const hash = recordHash(prevHash, { id: Number(id), at: row.at, actorType: row.actor_type, actorId: row.actor_id, actorAddress: row.actor_address, action: row.action, patientId: row.patient_id, studyUid: row.study_uid, outcome: row.outcome, detail: row.detail });
      await trx.updateTable('audit_events').set({ hash }).where('id', '=', Number(id)).execute();
      return toRecord({ ...row, id: Number(id), hash });
    });
    for (const l of this.listeners) {
      try {
        l(record);
      } catch (err) {
        this.log.error({ err }, 'audit listener failed');
      }
    }
  }

  /** Waits for the records queued so far (tests, shutdown); waiting records get one more try, then go to the log. */
  async flush(final = false): Promise<void> {
    await this.chain;
    if (this.backlog.length) {
      this.chain = this.chain.then(() => this.writeBacklog());
      await this.chain;
    }
    if (final && this.backlog.length) {
      if (this.retryTimer) clearTimeout(this.retryTimer);
      for (const record of this.backlog.splice(0)) this.log.fatal({ record }, 'AUDIT RECORD NOT WRITTEN at shutdown: written here in full');
    }
  }

  async search(q: { patientId?: string; actorId?: string; action?: string; studyUid?: string; from?: string; to?: string; limit?: number; offset?: number }): Promise<AuditRecord[]> {
    let query = this.db.selectFrom('audit_events').selectAll();
    if (q.patientId) query = query.where('patient_id', '=', q.patientId);
    if (q.actorId) query = query.where('actor_id', '=', q.actorId);
    if (q.action) query = query.where('action', '=', q.action);
    if (q.studyUid) query = query.where('study_uid', '=', q.studyUid);
    if (q.from) query = query.where('at', '>=', q.from);
    if (q.to) query = query.where('at', '<=', q.to);
    const rows = await query.orderBy('id', 'desc').limit(Math.min(q.limit ?? 100, 1000)).offset(q.offset ?? 0).execute();
    return rows.map(toRecord);
  }

  /** Re-computes the chain from the first record; reports the first record that does not fit. */
  async verify(): Promise<VerifyResult> {
    let prevHash = GENESIS;
    let prevId = 0;
    let count = 0;
    for (let after = 0; ; ) {
      const rows = await this.db.selectFrom('audit_events').selectAll().where('id', '>', after).orderBy('id').limit(1000).execute();
      for (const row of rows) {
        const r = toRecord(row);
        count++;
        // Records are numbered 1, 2, 3…: a gap is a removed record even when the chain was recomputed after it.
        if (r.id !== prevId + 1) return { ok: false, records: count, lastHash: prevHash, brokenAt: r.id, reason: r.id > prevId + 1 ? `record${r.id - prevId > 2 ? `s ${prevId + 1}–${r.id - 1} are` : ` ${prevId + 1} is`} missing` : 'records out of sequence' };
        if (r.prevHash !== prevHash) return { ok: false, records: count, lastHash: prevHash, brokenAt: r.id, reason: prevId && r.id !== prevId + 1 ? `records ${prevId + 1}–${r.id - 1} are missing` : 'previous-hash link does not match: a record before it was altered or removed' };
        const expected = recordHash(prevHash, { ...r, detail: row.detail });
        if (expected !== r.hash) return { ok: false, records: count, lastHash: prevHash, brokenAt: r.id, reason: 'record content does not match its hash: it was altered' };
        prevHash = r.hash;
        prevId = r.id;
      }
      if (rows.length < 1000) break;
      after = Number(rows[rows.length - 1]!.id);
    }
    return { ok: true, records: count, lastHash: prevHash };
  }

  /** Events per day and action, for the programme's activity reporting (CSV). */
  /** Records counted per day, action and outcome: what both CSV exports are made of. */
  private perDay() {
    return this.db
      .selectFrom('audit_events')
      .select([sql<string>`substr(at, 1, 10)`.as('day'), 'action', 'outcome', (eb) => eb.fn.countAll().as('n')])
      .groupBy([sql`substr(at, 1, 10)`, 'action', 'outcome'])
      .orderBy(sql`substr(at, 1, 10)`)
      .orderBy('action')
      .execute();
  }

  async dailyStatsCsv(): Promise<string> {
    const rows = await this.perDay();
    return ['day,action,outcome,count', ...rows.map((r) => `${r.day},${r.action},${r.outcome},${Number(r.n)}`)].join('\n') + '\n';
  }

  /** One line per day with the programme's indicators (KPI_COLUMNS), for the DRIM-M reporting. */
  async kpiCsv(): Promise<string> {
    const rows = await this.perDay();
    const days = new Map<string, number[]>();
    for (const r of rows) {
      const line = days.get(r.day) ?? KPI_COLUMNS.map(() => 0);
      KPI_COLUMNS.forEach(([, matches], i) => {
        if (matches(r.action, r.outcome)) line[i]! += Number(r.n);
      });
      days.set(r.day, line);
    }
    return [['day', ...KPI_COLUMNS.map(([name]) => name)].join(','), ...[...days].map(([day, v]) => [day, ...v].join(','))].join('\n') + '\n';
  }
}

/**
 * The DRIMbox programme's operating indicators per day, from the audit trail: publications to the DMP,
 * consultations (exams opened by practitioners here, and exams served to other boxes), contextual calls from
 * the RIS/DPI, imports into the PACS, exams routed and received, CDs imported, share-link openings, errors.
 */
export const KPI_COLUMNS: Array<[string, (action: string, outcome: string) => boolean]> = [
  ['publications', (a, o) => (a === 'source.report.publish' || a === 'source.report.replace') && o === 'success'],
  ['consultations', (a, o) => a === 'consumer.open' && o === 'success'],
  ['served_to_boxes', (a, o) => a === 'exchange.retrieve' && o === 'success'],
  ['contextual_calls', (a) => a === 'consumer.launch'],
  ['imports', (a, o) => a === 'consumer.import' && o === 'success'],
  ['routed', (a, o) => a === 'routing.send' && o === 'success'],
  ['received', (a, o) => a === 'incoming.store' && o === 'success'],
  ['cds_imported', (a, o) => a === 'media.import' && o === 'success'],
  ['share_openings', (a, o) => a === 'share.open' && o === 'success'],
  ['refusals', (_a, o) => o === 'refused'],
  ['errors', (_a, o) => o === 'failure'],
];

function toRecord(row: DB['audit_events'] extends infer T ? { [K in keyof T]: T[K] extends import('kysely').Generated<infer U> ? U : T[K] } : never): AuditRecord {
  return {
    id: Number(row.id),
    at: row.at,
    actorType: row.actor_type as ActorType,
    actorId: row.actor_id,
    actorAddress: row.actor_address,
    action: row.action,
    patientId: row.patient_id,
    studyUid: row.study_uid,
    outcome: row.outcome as Outcome,
    detail: JSON.parse(row.detail) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
