import type { Kysely, Selectable } from 'kysely';
import type { Logger } from '../common/log.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { Professional } from '../auth/professional-token.js';
import type { AppointmentTable, DB } from '../store/db.js';
import type { DmpExams, Exam } from '../consumer/dmp-exams.js';
import { readManifest, type ManifestSeries } from '../consumer/manifest-reader.js';
import type { PacsImports } from '../consumer/pacs-import.js';
import type { Settable } from '../dicom/patient-rewrite.js';
import type { LocalIdentities } from '../identity/local-identities.js';
import { INS_OIDS } from '../identity/ins.js';
import { dueAt, ruleFor, selectPriors, withinHours, type PrefetchRule } from './rules.js';

export type PrefetchState = 'waiting' | 'searching' | 'fetching' | 'ready' | 'nothing' | 'failed' | 'cancelled' | 'no-rule';

/** An appointment as the schedule gives it (from an SIU message or a worklist entry). */
export interface AppointmentInput {
  event: 'new' | 'rescheduled' | 'modified' | 'cancelled';
  appointmentId: string;
  controlId?: string;
  patient: { ins: string; oid: string; ipp?: string; name?: string };
  start?: string;
  modality?: string;
  procedure?: { code: string; text?: string };
  /** The radiologist named in the appointment, national id ("8" + RPPS). */
  practitioner?: Professional;
}

export interface AppointmentView {
  appointmentId: string;
  patientIns: string;
  patientName?: string;
  start: string;
  modality?: string;
  procedure?: string;
  rule?: string;
  state: PrefetchState;
  dueAt: string;
  priors: Array<{ studyUid: string; date?: string; description?: string; instances: number; alreadyThere: boolean }>;
  done: number;
  total: number;
  error?: string;
  readyAt?: string;
}

export class AppointmentError extends Error {
  override name = 'AppointmentError';
}

/** Where prefetch checks whether a prior is already in the local PACS. */
export type LocalStudyCount = (studyUid: string) => Promise<number>;

const MAX_ATTEMPTS = 5;
/** Due appointments taken per pass; a pass that takes this many is followed at once by another. */
const DUE_PER_PASS = 50;

/**
 * Prefetch of priors for scheduled patients. Appointments (from the RIS) are kept in the database with their
 * state; when one falls due (its rule's lead time before the start, within the rule's allowed hours) the
 * patient's exams are searched in the DMP by INS, the relevant priors chosen by the rule, those not already in
 * the local PACS handed to the import queue (identity, fetch from the source box, rewrite, send, verify), and the
 * appointment is ready when every import is done. A cancelled appointment cancels its imports not yet started.
 */
/**
 * What the prefetcher asks of a prior source other than the DMP ("pacs:AE", "box:URL"): the patient's studies
 * there (by INS), and one study's series and instances, in the name of the professional.
 */
export interface PeerPacsSearch {
  studies(source: string, patient: { ins: string; oid: string }, professional: Professional): Promise<Exam[]>;
  series(source: string, studyUid: string, patient: { ins: string; oid: string }, professional: Professional): Promise<ManifestSeries[]>;
}

export class Prefetcher {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  /** A kick came during a pass. */
  private again = false;
  private stopped = false;

  constructor(
    private readonly deps: {
      db: Kysely<DB>;
      rules: PrefetchRule[];
      defaultLeadHours: number;
      onBehalfOf: Professional;
      tags?: Settable;
      exams: DmpExams;
      imports: PacsImports;
      identities: LocalIdentities;
      localCount: LocalStudyCount;
      /** Peer PACS as prior sources (rules' `pacs:AE`): the patient's studies there, and a study's series. */
      peers?: PeerPacsSearch;
      /** Appointments searched at once (default 4). */
      searchConcurrency?: number;
      audit: AuditTrail;
      log: Logger;
      now?: () => Date;
    },
  ) {}

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  /** Records what the schedule says; idempotent for a message received twice. */
  async onAppointment(a: AppointmentInput): Promise<void> {
    const { db, identities, imports, audit, log } = this.deps;
    if (!INS_OIDS.includes(a.patient.oid)) throw new AppointmentError(`the patient has no INS (OID ${a.patient.oid || 'missing'}): priors are searched in the DMP by INS`);
    const existing = await db.selectFrom('appointments').selectAll().where('appointment_id', '=', a.appointmentId).executeTakeFirst();
    if (existing && a.controlId && existing.last_control_id === a.controlId) return;
    const now = this.now().toISOString();
    if (a.patient.ipp) await identities.record(a.patient.ins, a.patient.oid, a.patient.ipp, 'hl7-schedule');
    if (a.event === 'cancelled') {
      if (!existing) return;
      const ids = JSON.parse(existing.import_ids) as number[];
      const cancelled = await imports.cancel(ids, 'prefetch');
      await db.updateTable('appointments').set({ status: 'cancelled', state: existing.state === 'ready' ? 'ready' : 'cancelled', last_control_id: a.controlId ?? null, updated_at: now }).where('appointment_id', '=', a.appointmentId).execute();
      await audit.record({ actorType: 'system', actorId: 'prefetch', action: 'prefetch.cancel', patientId: a.patient.ins, outcome: 'success', detail: { appointment: a.appointmentId, importsCancelled: cancelled } });
      log.info({ appointment: a.appointmentId, importsCancelled: cancelled }, 'appointment cancelled');
      return;
    }
    if (!a.start) throw new AppointmentError('the appointment has no start time');
    const start = new Date(a.start);
    const rule = ruleFor(this.deps.rules, { modality: a.modality, procedureCode: a.procedure?.code, start });
    const due = rule ? dueAt(rule, start, this.deps.defaultLeadHours).toISOString() : a.start;
    // A moved appointment keeps the priors already brought; one not yet processed waits for its new due time.
    const keepState = existing && existing.status === 'booked' && ['ready', 'fetching', 'searching', 'nothing'].includes(existing.state);
    const state: PrefetchState = !rule ? 'no-rule' : keepState ? (existing!.state as PrefetchState) : 'waiting';
    const row = {
      patient_ins: a.patient.ins,
      patient_oid: a.patient.oid,
      ipp: a.patient.ipp ?? null,
      patient_name: a.patient.name ?? null,
      start_at: start.toISOString(),
      modality: a.modality ?? null,
      procedure_code: a.procedure?.code ?? null,
      procedure_text: a.procedure?.text ?? null,
      practitioner: a.practitioner ? JSON.stringify(a.practitioner) : null,
      status: 'booked',
      rule: rule?.name ?? null,
      due_at: due,
      state,
      last_control_id: a.controlId ?? null,
      updated_at: now,
    };
    if (existing) await db.updateTable('appointments').set({ ...row, ...(keepState ? {} : { attempts: 0, next_attempt_at: now, error: null }) }).where('appointment_id', '=', a.appointmentId).execute();
    else await db.insertInto('appointments').values({ appointment_id: a.appointmentId, ...row, priors: '[]', import_ids: '[]', done: 0, total: 0, attempts: 0, next_attempt_at: now, created_at: now }).execute();
    log.info({ appointment: a.appointmentId, event: a.event, rule: rule?.name, due, state }, 'appointment recorded');
    this.kick();
  }

  start(pollMs: number): void {
    this.stopped = false;
    this.timer = setInterval(() => this.kick(), pollMs);
    this.timer.unref();
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * Looks at due appointments and at the progress of those fetching; one pass at a time. A kick during a pass
   * (an appointment booked meanwhile) runs another pass after it, rather than waiting for the next poll tick.
   */
  kick(): void {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.again = false;
    void this.pass()
      .catch((e) => this.deps.log.error({ err: e }, 'prefetch pass failed'))
      .finally(() => {
        this.busy = false;
        if (this.again && !this.stopped) this.kick();
      });
  }

  async pass(): Promise<void> {
    const { db } = this.deps;
    const now = this.now();
    // A search interrupted by a node that stopped is taken up again.
    await db.updateTable('appointments').set({ state: 'waiting' }).where('state', '=', 'searching').where('updated_at', '<', new Date(now.getTime() - 10 * 60_000).toISOString()).execute();
    const due = await db.selectFrom('appointments').selectAll().where('state', '=', 'waiting').where('status', '=', 'booked').where('due_at', '<=', now.toISOString()).where('next_attempt_at', '<=', now.toISOString()).orderBy('start_at').limit(DUE_PER_PASS).execute();
    const todo = due.flatMap((a) => {
      const rule = this.deps.rules.find((r) => r.name === a.rule);
      return rule && withinHours(rule.allowedHours, now) ? [{ a, rule }] : [];
    });
    // Searches run a few at a time: each is mostly waiting on the DMP (a query, then a manifest per prior) and the
    // local PACS, so one at a time would leave the import queue idle while a full day of appointments falls due.
    const workers = Array.from({ length: Math.min(this.deps.searchConcurrency ?? 4, todo.length) }, async () => {
      for (let next = todo.shift(); next; next = todo.shift()) await this.search(next.a, next.rule);
    });
    await Promise.all(workers);
    const fetching = await db.selectFrom('appointments').selectAll().where('state', '=', 'fetching').execute();
    for (const a of fetching) await this.progress(a);
    // A day booked at once is worked through without waiting for the next tick.
    if (due.length === DUE_PER_PASS) this.again = true;
  }

  private async search(a: Selectable<AppointmentTable>, rule: PrefetchRule): Promise<void> {
    const { db, exams, imports, audit, log, localCount } = this.deps;
    const set = (values: Partial<Selectable<AppointmentTable>>) => db.updateTable('appointments').set({ ...values, updated_at: this.now().toISOString() }).where('appointment_id', '=', a.appointment_id).execute();
    // Claim: with several nodes on one database, only the node that moves it out of "waiting" searches it.
    const claimed = await db.updateTable('appointments').set({ state: 'searching', updated_at: this.now().toISOString() }).where('appointment_id', '=', a.appointment_id).where('state', '=', 'waiting').executeTakeFirst();
    if (!Number(claimed.numUpdatedRows)) return;
    try {
      const professional = a.practitioner ? (JSON.parse(a.practitioner) as Professional) : this.deps.onBehalfOf;
      const patient = { ins: a.patient_ins, oid: a.patient_oid };
      const found: Exam[] = rule.priors.sources.includes('dmp') ? await exams.list(patient) : [];
      // Peer PACS and boxes: a study already found (in the DMP first) is taken from where it was found first.
      for (const src of rule.priors.sources.filter((x) => x !== 'dmp')) {
        if (!this.deps.peers) throw new Error(`prior source ${src} is not available on this node`);
        const known = new Set(found.map((e) => e.studyUid));
        found.push(...(await this.deps.peers.studies(src, patient, professional)).filter((e) => !known.has(e.studyUid)));
      }
      const priors = selectPriors(rule, { modality: a.modality ?? undefined, procedureCode: a.procedure_code ?? undefined, start: new Date(a.start_at) }, found);
      const planned: AppointmentView['priors'] = [];
      const importIds: number[] = [];
      let total = 0;
      for (const p of priors) {
        const manifest = p.manifest ? readManifest(await exams.retrieve(p.manifest)) : { studyUid: p.studyUid!, series: await this.deps.peers!.series(p.foundIn!, p.studyUid!, patient, professional) };
        const instances = manifest.series.reduce((n, s) => n + s.instances.length, 0);
        // Idempotence: a prior the local PACS already holds whole is not fetched again.
        const already = (await localCount(manifest.studyUid)) >= instances;
        planned.push({ studyUid: manifest.studyUid, date: p.date, description: p.description, instances, alreadyThere: already });
        if (already) continue;
        total += instances;
        importIds.push(await imports.enqueue({ studyUid: manifest.studyUid, series: manifest.series, patient: { ins: a.patient_ins, oid: a.patient_oid }, professional, tags: this.deps.tags }));
      }
      const state: PrefetchState = !priors.length ? 'nothing' : importIds.length ? 'fetching' : 'ready';
      await set({ state, priors: JSON.stringify(planned), import_ids: JSON.stringify(importIds), total, done: 0, error: null, ...(state === 'ready' ? { ready_at: this.now().toISOString() } : {}) });
      await audit.record({ actorType: 'system', actorId: 'prefetch', action: 'prefetch.search', patientId: a.patient_ins, outcome: 'success', detail: { appointment: a.appointment_id, rule: rule.name, found: found.length, priors: planned.length, toFetch: importIds.length, onBehalfOf: professional.id } });
      log.info({ appointment: a.appointment_id, priors: planned.length, toFetch: importIds.length, state }, 'priors searched');
    } catch (e) {
      const attempts = Number(a.attempts) + 1;
      const final = attempts >= MAX_ATTEMPTS;
      await set({ state: final ? 'failed' : 'waiting', attempts, error: (e as Error).message, next_attempt_at: new Date(this.now().getTime() + 30_000 * 2 ** (attempts - 1)).toISOString() });
      await audit.record({ actorType: 'system', actorId: 'prefetch', action: 'prefetch.search', patientId: a.patient_ins, outcome: 'failure', detail: { appointment: a.appointment_id, attempts, error: (e as Error).message } });
      log.warn({ appointment: a.appointment_id, attempts, final, err: (e as Error).message }, 'prior search failed');
    }
  }

  /** The appointment's state from its imports: ready when all are done, failed when one failed for good. */
  private async progress(a: Selectable<AppointmentTable>): Promise<void> {
    const ids = JSON.parse(a.import_ids) as number[];
    const jobs = (await Promise.all(ids.map((id) => this.deps.imports.get(id)))).filter((j) => j !== undefined);
    const done = jobs.reduce((n, j) => n + j.done, 0);
    const failed = jobs.find((j) => j.status === 'failed');
    const waiting = jobs.find((j) => j.status === 'waiting-identity');
    const allDone = jobs.length > 0 && jobs.every((j) => j.status === 'done');
    const state: PrefetchState = allDone ? 'ready' : failed ? 'failed' : 'fetching';
    const error = failed?.error ?? waiting?.error ?? null;
    if (state === a.state && done === Number(a.done) && error === a.error) return;
    await this.deps.db
      .updateTable('appointments')
      .set({ state, done, error, ...(allDone ? { ready_at: this.now().toISOString() } : {}), updated_at: this.now().toISOString() })
      .where('appointment_id', '=', a.appointment_id)
      .execute();
  }

  /** Appointments starting in [from, to), with their prefetch state; optionally one modality. */
  async list(q: { from: Date; to: Date; modality?: string }): Promise<AppointmentView[]> {
    let query = this.deps.db.selectFrom('appointments').selectAll().where('start_at', '>=', q.from.toISOString()).where('start_at', '<', q.to.toISOString());
    if (q.modality) query = query.where('modality', '=', q.modality.toUpperCase());
    const rows = await query.orderBy('start_at').limit(2000).execute();
    return rows.map((r) => ({
      appointmentId: r.appointment_id,
      patientIns: r.patient_ins,
      patientName: r.patient_name ?? undefined,
      start: r.start_at,
      modality: r.modality ?? undefined,
      procedure: r.procedure_text ?? r.procedure_code ?? undefined,
      rule: r.rule ?? undefined,
      state: r.state as PrefetchState,
      dueAt: r.due_at,
      priors: JSON.parse(r.priors),
      done: Number(r.done),
      total: Number(r.total),
      error: r.error ?? undefined,
      readyAt: r.ready_at ?? undefined,
    }));
  }

  /** Booked appointments whose ID starts with `prefix` and that start in [from, to). */
  async bookedBetween(prefix: string, from: Date, to: Date): Promise<Array<{ appointmentId: string; patientIns: string; patientOid: string }>> {
    const rows = await this.deps.db
      .selectFrom('appointments')
      .select(['appointment_id', 'patient_ins', 'patient_oid'])
      .where('status', '=', 'booked')
      .where('appointment_id', 'like', `${prefix.replace(/[%_]/g, '')}%`)
      .where('start_at', '>=', from.toISOString())
      .where('start_at', '<', to.toISOString())
      .execute();
    return rows.map((r) => ({ appointmentId: r.appointment_id, patientIns: r.patient_ins, patientOid: r.patient_oid }));
  }

  /** Share of the appointments started in [from, to) whose priors were ready (or there were none) before they began. */
  async readyBeforeStart(from: Date, to: Date): Promise<{ appointments: number; ready: number; share: number }> {
    const rows = await this.deps.db.selectFrom('appointments').select(['start_at', 'ready_at', 'state']).where('status', '=', 'booked').where('start_at', '>=', from.toISOString()).where('start_at', '<', to.toISOString()).execute();
    const relevant = rows.filter((r) => r.state !== 'no-rule');
    const ready = relevant.filter((r) => r.state === 'nothing' || (r.ready_at !== null && r.ready_at <= r.start_at)).length;
    return { appointments: relevant.length, ready, share: relevant.length ? ready / relevant.length : 1 };
  }
}
