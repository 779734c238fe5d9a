import type { Kysely, Selectable } from 'kysely';
import type { DB, WatchedStudyTable } from '../store/db.js';

export type WatchedStudy = Selectable<WatchedStudyTable>;

/**
 * Studies watched until they are stable: a study is complete when no new instance has come for a while
 * (modalities and PACS send series by series, with pauses). Kept in the database so that a restart loses no
 * study and several nodes see the same arrivals; a claim moves a stable study out of `watching` exactly once.
 * `purpose` separates the watchers ("route": outgoing rules; "inbound": studies pushed by other boxes).
 */
export class StudyWatch {
  constructor(private readonly db: Kysely<DB>) {}

  /** One more instance of the study has arrived: counted, and the stability clock restarts (one statement). */
  async arrived(studyUid: string, purpose: string, origin: string): Promise<void> {
    const now = new Date().toISOString();
    await this.db
      .insertInto('watched_studies')
      .values({ study_uid: studyUid, purpose, origin, instances: 1, changed_at: now, state: 'watching', updated_at: now })
      .onConflict((oc) => oc.columns(['study_uid', 'purpose']).doUpdateSet((eb) => ({ instances: eb('watched_studies.instances', '+', 1), changed_at: now, state: 'watching', updated_at: now })))
      .execute();
  }

  /** The study holds `instances` now (a count seen in the PACS): watched again only if that changed. */
  async observed(studyUid: string, purpose: string, origin: string, instances: number): Promise<boolean> {
    const now = new Date().toISOString();
    const row = await this.db.selectFrom('watched_studies').select(['instances']).where('study_uid', '=', studyUid).where('purpose', '=', purpose).executeTakeFirst();
    if (row && Number(row.instances) === instances) return false;
    await this.db
      .insertInto('watched_studies')
      .values({ study_uid: studyUid, purpose, origin, instances, changed_at: now, state: 'watching', updated_at: now })
      .onConflict((oc) => oc.columns(['study_uid', 'purpose']).doUpdateSet({ instances, changed_at: now, state: 'watching', updated_at: now }))
      .execute();
    return true;
  }

  /** Studies quiet for `stableMs`, each claimed by this caller (moved to `handling`); a newer arrival wins. */
  async claimStable(purpose: string, stableMs: number, claimant: string, limit = 20): Promise<WatchedStudy[]> {
    const before = new Date(Date.now() - stableMs).toISOString();
    const rows = await this.db.selectFrom('watched_studies').selectAll().where('purpose', '=', purpose).where('state', '=', 'watching').where('changed_at', '<=', before).orderBy('changed_at').limit(limit).execute();
    const claimed: WatchedStudy[] = [];
    for (const r of rows) {
      const u = await this.db
        .updateTable('watched_studies')
        .set({ state: 'handling', claimed_by: claimant, updated_at: new Date().toISOString() })
        .where('study_uid', '=', r.study_uid)
        .where('purpose', '=', purpose)
        .where('state', '=', 'watching')
        .where('changed_at', '=', r.changed_at)
        .executeTakeFirst();
      if (Number(u.numUpdatedRows)) claimed.push({ ...r, state: 'handling', claimed_by: claimant });
    }
    return claimed;
  }

  /**
   * Records what became of a claimed study. If instances arrived meanwhile (changed_at moved), the study stays
   * `watching` so that it is handled again once quiet.
   */
  async settle(study: WatchedStudy, state: string, more: { caseId?: number | null; error?: string | null } = {}): Promise<void> {
    await this.db
      .updateTable('watched_studies')
      .set({ state, handled_instances: study.instances, claimed_by: null, updated_at: new Date().toISOString(), ...(more.caseId !== undefined ? { case_id: more.caseId } : {}), ...(more.error !== undefined ? { error: more.error } : {}) })
      .where('study_uid', '=', study.study_uid)
      .where('purpose', '=', study.purpose)
      .where('changed_at', '=', study.changed_at)
      .execute();
  }

  /** A claimed study whose handler crashed with the node goes back to watching after `staleMs`. */
  async releaseStale(staleMs: number): Promise<void> {
    await this.db.updateTable('watched_studies').set({ state: 'watching', claimed_by: null }).where('state', '=', 'handling').where('updated_at', '<', new Date(Date.now() - staleMs).toISOString()).execute();
  }

  async get(studyUid: string, purpose: string): Promise<WatchedStudy | undefined> {
    return this.db.selectFrom('watched_studies').selectAll().where('study_uid', '=', studyUid).where('purpose', '=', purpose).executeTakeFirst();
  }

  async list(purpose: string, limit = 200): Promise<WatchedStudy[]> {
    return this.db.selectFrom('watched_studies').selectAll().where('purpose', '=', purpose).orderBy('updated_at', 'desc').limit(limit).execute();
  }
}
