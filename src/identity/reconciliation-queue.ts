import { randomInt } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { DB, ReconciliationCaseTable } from '../store/db.js';
import type { PatientDirectory } from './patient-directory.js';
import type { IncomingPatient, ScoredCandidate } from './reconciler.js';

export interface ReconciliationCase {
  id: number;
  origin: string;
  studyUid: string;
  incoming: IncomingPatient;
  candidates: ScoredCandidate[];
  reason: string;
  status: 'open' | 'resolved';
  localId?: string;
  decidedBy?: string;
  decidedAt?: string;
  createdAt: string;
}

export type Decision = { localId: string } | { create: true };

export class DecisionError extends Error {
  override name = 'DecisionError';
}

/**
 * The manual reconciliation queue: incoming patients no rule could match safely, with the candidates shown side
 * by side. A person accepts a candidate, names another local patient, or creates a new local identity.
 */
export class ReconciliationQueue {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly directory: PatientDirectory,
    private readonly newIdPrefix: string,
  ) {}

  /** Opens a case for the study, or refreshes the one already open for it. */
  async open(c: { origin: string; studyUid: string; incoming: IncomingPatient; candidates: ScoredCandidate[]; reason: string }): Promise<number> {
    const existing = await this.db.selectFrom('reconciliation_cases').select('id').where('study_uid', '=', c.studyUid).where('status', '=', 'open').executeTakeFirst();
    const values = { incoming: JSON.stringify(c.incoming), candidates: JSON.stringify(c.candidates), reason: c.reason };
    if (existing) {
      await this.db.updateTable('reconciliation_cases').set(values).where('id', '=', existing.id).execute();
      return Number(existing.id);
    }
    const r = await this.db.insertInto('reconciliation_cases').values({ ...values, origin: c.origin, study_uid: c.studyUid, status: 'open', local_id: null, decided_by: null, decided_at: null, created_at: new Date().toISOString() }).returning('id').executeTakeFirstOrThrow();
    return Number(r.id);
  }

  async list(status: 'open' | 'resolved' = 'open', limit = 200): Promise<ReconciliationCase[]> {
    const rows = await this.db.selectFrom('reconciliation_cases').selectAll().where('status', '=', status).orderBy('created_at').limit(limit).execute();
    return rows.map(toCase);
  }

  async get(id: number): Promise<ReconciliationCase | undefined> {
    const row = await this.db.selectFrom('reconciliation_cases').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toCase(row) : undefined;
  }

  /**
   * Records a person's decision and returns the local identity chosen. Naming a local patient the directory
   * does not know is allowed (it may exist only in the PACS), but must look like an identifier.
   */
  async decide(id: number, decision: Decision, by: string): Promise<{ case: ReconciliationCase; localId: string; created: boolean }> {
    const c = await this.get(id);
    if (!c) throw new DecisionError(`reconciliation case ${id} does not exist`);
    if (c.status !== 'open') throw new DecisionError(`reconciliation case ${id} was already decided (${c.localId} by ${c.decidedBy})`);
    let localId: string;
    let created = false;
    if ('create' in decision) {
      localId = `${this.newIdPrefix}${String(randomInt(0, 1e9)).padStart(9, '0')}`;
      await this.directory.upsert({ localId, demographics: c.incoming.demographics, source: `reconciliation:${by}` });
      created = true;
    } else {
      localId = decision.localId.trim();
      if (!/^[\w.\-]{1,64}$/.test(localId)) throw new DecisionError(`"${decision.localId.slice(0, 70)}" is not a patient identifier (letters, digits, . _ -; at most 64)`);
    }
    const r = await this.db
      .updateTable('reconciliation_cases')
      .set({ status: 'resolved', local_id: localId, decided_by: by, decided_at: new Date().toISOString() })
      .where('id', '=', id)
      .where('status', '=', 'open')
      .executeTakeFirst();
    if (!Number(r.numUpdatedRows)) throw new DecisionError(`reconciliation case ${id} was decided by someone else meanwhile`);
    return { case: (await this.get(id))!, localId, created };
  }
}

function toCase(row: Selectable<ReconciliationCaseTable>): ReconciliationCase {
  return {
    id: Number(row.id),
    origin: row.origin,
    studyUid: row.study_uid,
    incoming: JSON.parse(row.incoming) as IncomingPatient,
    candidates: JSON.parse(row.candidates) as ScoredCandidate[],
    reason: row.reason,
    status: row.status as 'open' | 'resolved',
    localId: row.local_id ?? undefined,
    decidedBy: row.decided_by ?? undefined,
    decidedAt: row.decided_at ?? undefined,
    createdAt: row.created_at,
  };
}
