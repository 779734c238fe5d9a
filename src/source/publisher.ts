import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { Logger } from '../common/log.js';
import type { DB, PublicationTable } from '../store/db.js';
import type { DocumentEntry } from '../xds/metadata.js';
import type { XdsClient } from '../xds/client.js';
import { FrOid, INS_OIDS, Status } from '../xds/vocabulary.js';
import { CdaError, readImagingReport, type ImagingExam, type ImagingOrder, type ImagingReport } from './cda.js';
import { buildSubmission, buildSubmissionSet, confidentialityCodes, sha1, type ExamToPublish, type SubmissionContext, type Visibility } from './dmp-submission.js';
import { buildManifest, contentDigest, personName, type StudyContent } from './manifest.js';
import type { PacsGateway } from './pacs.js';
import { decidePublication } from './publication-identity.js';
import { PublicationQueue, type QueueEntry, type QueueOptions, type WorkResult } from './publication-queue.js';

/** A report to publish or withdraw, as the RIS sent it (any transport). */
export interface ReportRequest {
  cda?: Buffer;
  /** Patient identifiers from the message (PID-3): the INS among them is authoritative for the DMP. */
  patientIds: { id: string; oid: string; namespace?: string; type: string }[];
  /** PID-32: only a qualified identity (VALI, QUAL) may be sent to the DMP. */
  identityReliability: string[];
  /** OBR-18 (accession number): the fallback when the CDA names none. */
  accessionNumber?: string;
  visibility: Visibility;
  toDmp: boolean;
  /** Who sent it (RIS application / address), for the audit trail. */
  sender: string;
  senderAddress?: string;
  controlId?: string;
}

export class PublishError extends Error {
  override name = 'PublishError';
  constructor(
    message: string,
    /** Where the problem is in the request, e.g. "PID-3" or "OBX-5". */
    readonly location: string,
    /** true when retrying later may succeed (the exam is not in the PACS yet, the DMP is unreachable). */
    readonly transient = false,
  ) {
    super(message);
  }
}

export interface PublishOutcome {
  result: 'queued' | 'not-for-dmp' | 'published' | 'replaced' | 'unchanged' | 'visibility-updated' | 'withdrawn' | 'manifest-replaced' | 'not-published';
  setId?: string;
  studyUids?: string[];
  instances?: number;
  queueId?: number;
}

export interface SourceSettings extends SubmissionContext {
  retrieveAeTitle: string;
  retrieveLocationUid: string;
  wadoRsBase: string;
  viewerUrlTemplate?: string;
}

/** What is kept of each publication to replace, update or withdraw it later. */
interface PublicationState {
  report: ImagingReport;
  visibility: Visibility;
  ins: { id: string; oid: string; issuer: string };
  exam?: ImagingExam;
  order?: ImagingOrder;
  reportEntry: DocumentEntry;
  manifestEntry: DocumentEntry;
}

interface ReportPayload extends Omit<ReportRequest, 'cda'> {
  cda?: string;
}

const ISSUER: Record<string, string> = { [FrOid.insNir]: 'ASIP-SANTE-INS-NIR', [FrOid.insNia]: 'ASIP-SANTE-INS-NIA', [FrOid.insNirTest]: 'ASIP-SANTE-INS-NIR' };
const QUALIFIED = ['VALI', 'QUAL'];
const KOS = '1.2.840.10008.5.1.4.1.1.88.59';

/** An exam of a report as the CDA (or, failing it, OBR-18) names it: its study, accession and order. */
interface NamedExam {
  exam?: ImagingExam;
  order?: ImagingOrder;
  studyUid?: string;
  accession?: string;
}

/**
 * The DRIMbox source function. A signed report becomes, in one XDS submission, the CDA and one manifest (KOS) per
 * exam as the local PACS holds it; a corrected report, a change of visibility, a change of exam content or a
 * withdrawal replaces, updates or deprecates what was published. Requests are checked and written to a durable
 * queue before the RIS is acknowledged (AA = the DRIMbox takes responsibility), then published in the background.
 */
export class ReportPublisher {
  readonly queue: PublicationQueue;

  constructor(
    private readonly deps: {
      db: Kysely<DB>;
      pacs: PacsGateway;
      xds: XdsClient;
      audit: AuditTrail;
      log: Logger;
      settings: SourceSettings;
      queue?: QueueOptions;
      onOutcome?: (outcome: string) => void;
      nodeId?: string;
    },
  ) {
    this.queue = new PublicationQueue({ db: deps.db, log: deps.log, work: (e) => this.work(e), onFailed: (e, error) => this.failed(e, error), nodeId: deps.nodeId }, deps.queue);
  }

  // ---- receipt: everything that can be decided before the acknowledgement ----

  /** Checks a report message and queues it; throws PublishError (AE) when it can never be published, audited. */
  async accept(req: ReportRequest, kind: 'report' | 'withdrawal'): Promise<PublishOutcome> {
    try {
      return await this.check(req, kind);
    } catch (e) {
      if (e instanceof PublishError) {
        const ins = req.patientIds.find((p) => INS_OIDS.includes(p.oid));
        await this.deps.audit.record({ actorType: 'system', actorId: req.sender, actorAddress: req.senderAddress, action: `source.${kind}.refused`, patientId: ins ? `${ins.id}^^^&${ins.oid}&ISO^NH` : undefined, outcome: 'failure', detail: { controlId: req.controlId, location: e.location, reason: e.message } });
        this.deps.onOutcome?.('refused');
      }
      throw e;
    }
  }

  private async check(req: ReportRequest, kind: 'report' | 'withdrawal'): Promise<PublishOutcome> {
    if (kind === 'report' && !req.toDmp) return { result: 'not-for-dmp' };
    if (!req.cda && kind === 'report') throw new PublishError('the message carries no CDA report', 'OBX-5');
    const report = req.cda ? this.read(req.cda) : undefined;
    const named = report ? this.exams(report, req.accessionNumber) : [{ accession: req.accessionNumber }];
    if (!named.some((e) => e.studyUid || e.accession)) throw new PublishError('the report names no study (documentationOf/serviceEvent/id) and no accession number (inFulfillmentOf/order/accessionNumber, OBR-18)', 'OBR-18');
    const examKey = named[0]!.studyUid ?? named[0]!.accession!;
    const studies = named.map((e) => e.studyUid).filter((s): s is string => Boolean(s));
    if (kind === 'withdrawal') {
      const published = report ? await this.publishedOf(report, studies) : await this.publishedByAccession(named.map((e) => e.accession!).filter(Boolean));
      const queued = report ? await this.queue.pending({ documentId: report.uniqueId }) : [];
      if (!published.length && !queued.some((q) => q.kind === 'report')) {
        throw new PublishError(`no report of this exam (document ${report?.uniqueId ?? '-'}, study ${studies.join(', ') || '-'}, accession ${named.map((e) => e.accession).filter(Boolean).join(', ') || '-'}) was published by this DRIMbox: nothing to withdraw`, report ? 'OBX-5' : 'OBR-18');
      }
    } else {
      this.ins(req, report!);
      this.qualified(req);
      const hash = sha1(req.cda!);
      const decision = await this.decide(report!, hash, req.visibility, studies);
      if (decision.action === 'refused') throw new PublishError(`${decision.field}: ${decision.reason}`, 'OBX-5');
      if (decision.action === 'unchanged') return { result: 'unchanged', setId: report!.setId, studyUids: decision.rows.map((r) => r.study_uid) };
      // A RIS that sends the same message again before it is published gets the same answer, queued once.
      const same = (await this.queue.pending({ documentId: report!.uniqueId })).find((q) => q.kind === 'report' && sha1(Buffer.from((JSON.parse(q.payload) as ReportPayload).cda ?? '', 'base64')) === hash);
      if (same) return { result: 'queued', queueId: same.id, setId: report!.setId };
    }
    const payload: ReportPayload = { ...req, cda: req.cda?.toString('base64') };
    const queueId = await this.queue.enqueue({ kind, examKey, documentId: report?.uniqueId, payload, sender: req.sender, controlId: req.controlId });
    return { result: 'queued', queueId, setId: report?.setId, studyUids: studies };
  }

  /** The exam's content changed (OMI^O23, IOCM rejection note): its manifests are checked and replaced if needed. */
  async acceptExamChange(ref: { studyUid?: string; accessionNumber?: string; rejected?: { sopUids: string[]; reason: string } }, sender: string, controlId?: string): Promise<PublishOutcome> {
    const key = ref.studyUid ?? ref.accessionNumber;
    if (!key) throw new PublishError('the message names neither a study nor an accession number', 'IPC-1');
    const queueId = await this.queue.enqueue({ kind: 'exam-change', examKey: key, payload: ref, sender, controlId });
    return { result: 'queued', queueId };
  }

  private read(cda: Buffer): ImagingReport {
    try {
      return readImagingReport(cda);
    } catch (e) {
      throw new PublishError((e as CdaError).message, 'OBX-5');
    }
  }

  /**
   * The report's exams: each serviceEvent with the order of the same rank (or the only order); the accession
   * number is the order's ps3-20:accessionNumber, OBR-18 only when the CDA has none and names a single exam.
   */
  private exams(report: ImagingReport, obrAccession?: string): NamedExam[] {
    const events: (ImagingExam | undefined)[] = report.exams.length ? report.exams : [undefined];
    return events.map((exam, i) => {
      const order = report.orders[i] ?? (report.orders.length === 1 ? report.orders[0] : undefined);
      const accession = order?.accessionNumber?.id ?? (events.length === 1 ? obrAccession : undefined);
      return { exam, order, studyUid: exam?.studyUid, accession };
    });
  }

  private ins(req: ReportRequest, report: ImagingReport): { id: string; oid: string; issuer: string } {
    const fromPid = req.patientIds.find((p) => p.type === 'INS' && INS_OIDS.includes(p.oid)) ?? req.patientIds.find((p) => INS_OIDS.includes(p.oid));
    const fromCda = report.patient.ins?.id ? report.patient.ins : undefined;
    if (fromPid && fromCda && (fromPid.id !== fromCda.id || fromPid.oid !== fromCda.oid)) {
      throw new PublishError(`the INS in PID-3 (${fromPid.id}) differs from the one in the CDA recordTarget (${fromCda.id})`, 'PID-3');
    }
    const ins = fromPid ?? (fromCda ? { ...fromCda, namespace: undefined } : undefined);
    if (!ins) throw new PublishError(`no INS (assigning authority ${INS_OIDS.join(' or ')}) in PID-3 or in the CDA: the DMP needs the patient's INS`, 'PID-3');
    return { id: ins.id, oid: ins.oid, issuer: ins.namespace ?? ISSUER[ins.oid] ?? 'INS' };
  }

  /** RNIV: only a qualified identity is shared; PID-32 says whether the RIS checked the INS with INSi. */
  private qualified(req: ReportRequest): void {
    if (!req.identityReliability.some((c) => QUALIFIED.includes(c))) {
      throw new PublishError(`the patient's identity is not qualified (PID-32 = ${req.identityReliability.join('~') || 'empty'}): only an INS of a qualified identity (VALI) is published to the DMP`, 'PID-32');
    }
  }

  private async decide(report: ImagingReport, hash: string, visibility: Visibility, studies: string[]) {
    const sameDocument = await this.deps.db.selectFrom('report_publications').selectAll().where('report_unique_id', '=', report.uniqueId).execute();
    const sameChain = studies.length ? await this.deps.db.selectFrom('report_publications').selectAll().where('set_id', '=', report.setId).where('study_uid', 'in', studies).where('status', '=', 'published').execute() : [];
    return decidePublication(report, hash, visibility, studies, sameDocument, sameChain);
  }

  private async publishedOf(report: ImagingReport, studies: string[]): Promise<PublicationTable[]> {
    const byDocument = await this.deps.db.selectFrom('report_publications').selectAll().where('report_unique_id', '=', report.uniqueId).where('status', '=', 'published').execute();
    if (byDocument.length || !studies.length) return byDocument;
    return this.deps.db.selectFrom('report_publications').selectAll().where('set_id', '=', report.setId).where('study_uid', 'in', studies).where('status', '=', 'published').execute();
  }

  private async publishedByAccession(accessions: string[]): Promise<PublicationTable[]> {
    if (!accessions.length) return [];
    return this.deps.db.selectFrom('report_publications').selectAll().where('accession_number', 'in', accessions).where('status', '=', 'published').execute();
  }

  // ---- processing: the queue's work ----

  private async work(e: QueueEntry): Promise<WorkResult> {
    try {
      const payload = JSON.parse(e.payload);
      const outcome = e.kind === 'report' ? await this.publish(payload, e) : e.kind === 'withdrawal' ? await this.withdraw(payload) : await this.refresh(payload, e.sender);
      this.deps.onOutcome?.(outcome.result);
      return { status: 'done', outcome: JSON.stringify(outcome) };
    } catch (err) {
      if (err instanceof PublishError && err.transient) return { status: 'retry', error: err.message };
      return { status: 'failed', error: (err as Error).message };
    }
  }

  private async failed(e: QueueEntry, error: string): Promise<void> {
    this.deps.onOutcome?.('failed');
    const p = JSON.parse(e.payload) as ReportPayload & { studyUid?: string };
    this.deps.log.error({ id: e.id, kind: e.kind, reason: error }, 'publication to the DMP failed: an administrator must look at it (/app/publications)');
    await this.deps.audit.record({ actorType: 'system', actorId: e.sender, actorAddress: p.senderAddress, action: `source.${e.kind}.failed`, studyUid: p.studyUid ?? (e.exam_key.includes('.') ? e.exam_key : undefined), outcome: 'failure', detail: { queueId: e.id, documentId: e.document_id, error } });
  }

  private async publish(p: ReportPayload, entry: QueueEntry): Promise<PublishOutcome> {
    const cda = Buffer.from(p.cda ?? '', 'base64');
    const req: ReportRequest = { ...p, cda };
    const report = this.read(cda);
    const ins = this.ins(req, report);
    const named = this.exams(report, p.accessionNumber);
    const located = await Promise.all(named.map(async (n) => ({ ...n, studyUid: await this.locate(n) })));
    const studies = located.map((n) => n.studyUid);
    if (new Set(studies).size !== studies.length) throw new PublishError(`the report's exams resolve to the same study twice (${studies.join(', ')})`, 'OBX-5');
    const hash = sha1(cda);
    const decision = await this.decide(report, hash, p.visibility, studies);
    if (decision.action === 'refused') throw new PublishError(`${decision.field}: ${decision.reason}`, 'OBX-5');
    if (decision.action === 'unchanged') return { result: 'unchanged', setId: report.setId, studyUids: studies };
    if (decision.action === 'visibility') return this.updateVisibility(decision.rows, report, p.visibility, p.sender);
    const previous = decision.action === 'replace' ? decision.previous : [];
    const exams: ExamToPublish[] = [];
    for (const n of located) {
      const study = await this.content(n.studyUid);
      exams.push({ exam: n.exam, order: n.order, study, manifest: this.manifest(study, report, ins, n) });
    }
    const sub = buildSubmission(
      {
        report,
        cda,
        exams,
        ins,
        visibility: p.visibility,
        withReport: true,
        replaces: previous.length ? { report: previous[0]!.report_entry_uuid, manifests: Object.fromEntries(previous.map((r) => [r.study_uid, r.kos_entry_uuid])) } : undefined,
      },
      this.deps.settings,
    );
    await this.call(() => this.deps.xds.provideAndRegister({ objects: sub.objects, documents: sub.documents }));
    const now = new Date().toISOString();
    await this.deps.db.transaction().execute(async (trx) => {
      // Every earlier version of the chain is superseded, even one whose exam this version no longer names.
      if (previous.length) await trx.updateTable('report_publications').set({ status: 'replaced', updated_at: now }).where('report_unique_id', 'in', [...new Set(previous.map((r) => r.report_unique_id))]).where('status', '=', 'published').execute();
      for (const [i, e] of exams.entries()) {
        const state: PublicationState = { report, visibility: p.visibility, ins, exam: e.exam, order: e.order, reportEntry: sub.reportEntry, manifestEntry: sub.manifestEntries[i]! };
        await trx.insertInto('report_publications').values(this.row(state, e.study, hash, now)).execute();
      }
    });
    const instances = exams.reduce((n, e) => n + e.study.series.reduce((m, s) => m + s.instances.length, 0), 0);
    const replaced = previous.length > 0;
    for (const e of exams) {
      await this.deps.audit.record({ actorType: 'system', actorId: p.sender, actorAddress: p.senderAddress, action: replaced ? 'source.report.replace' : 'source.report.publish', patientId: sub.reportEntry.patientId, studyUid: e.study.studyUid, outcome: 'success', detail: { documentId: report.uniqueId, setId: report.setId, version: report.version, queueId: entry.id, instances: e.study.series.reduce((m, s) => m + s.instances.length, 0) } });
    }
    this.deps.log.info({ documentId: report.uniqueId, setId: report.setId, studies, instances, replaced }, 'report and manifests published to the DMP');
    return { result: replaced ? 'replaced' : 'published', setId: report.setId, studyUids: studies, instances };
  }

  private row(state: PublicationState, study: StudyContent, hash: string, now: string) {
    return {
      report_unique_id: state.report.uniqueId,
      study_uid: study.studyUid,
      set_id: state.report.setId,
      report_version: state.report.version,
      accession_number: state.order?.accessionNumber?.id ?? study.accessionNumber ?? null,
      patient_id: state.reportEntry.patientId,
      status: 'published',
      cda_hash: hash,
      visibility: JSON.stringify(state.visibility),
      report_entry_uuid: state.reportEntry.entryUUID,
      kos_entry_uuid: state.manifestEntry.entryUUID,
      kos_unique_id: state.manifestEntry.uniqueId,
      kos_instances: study.series.reduce((m, s) => m + s.instances.length, 0),
      content_digest: contentDigest(study),
      metadata: JSON.stringify(state),
      created_at: now,
      updated_at: now,
    };
  }

  /**
   * Same document, other DMP flags: the entries get new metadata (ITI-57, a new version of each entry with the
   * same uniqueId), as the content is unchanged and the DMP keeps one uniqueId per document.
   */
  private async updateVisibility(rows: PublicationTable[], report: ImagingReport, visibility: Visibility, sender: string): Promise<PublishOutcome> {
    const states = rows.map((r) => JSON.parse(r.metadata) as PublicationState);
    const ids = [...new Set([rows[0]!.report_entry_uuid, ...rows.map((r) => r.kos_entry_uuid)])];
    const current = (await this.call(() => this.deps.xds.getDocuments(ids))).objects.documents;
    const codes = confidentialityCodes(report, visibility);
    const updates = current.map((d) => ({ entry: { ...d, entryUUID: `urn:uuid:${randomUUID()}`, confidentialityCodes: codes, availabilityStatus: undefined, version: undefined }, previousVersion: d.version ?? '1' }));
    if (updates.length !== ids.length) throw new PublishError(`the DMP returned ${current.length} of the ${ids.length} entries to update`, 'OBX-5', true);
    const ss = buildSubmissionSet(report, states[0]!.ins, this.deps.settings);
    await this.call(() => this.deps.xds.updateMetadata(ss, updates));
    const newId = (old: string) => updates[current.findIndex((d) => d.entryUUID === old)]!.entry.entryUUID;
    const now = new Date().toISOString();
    for (const [i, r] of rows.entries()) {
      const s = states[i]!;
      const state: PublicationState = { ...s, visibility, reportEntry: { ...s.reportEntry, entryUUID: newId(r.report_entry_uuid), confidentialityCodes: codes }, manifestEntry: { ...s.manifestEntry, entryUUID: newId(r.kos_entry_uuid), confidentialityCodes: codes } };
      await this.deps.db.updateTable('report_publications').set({ visibility: JSON.stringify(visibility), report_entry_uuid: state.reportEntry.entryUUID, kos_entry_uuid: state.manifestEntry.entryUUID, metadata: JSON.stringify(state), updated_at: now }).where('report_unique_id', '=', r.report_unique_id).where('study_uid', '=', r.study_uid).execute();
      await this.deps.audit.record({ actorType: 'system', actorId: sender, action: 'source.report.visibility', patientId: r.patient_id, studyUid: r.study_uid, outcome: 'success', detail: { documentId: report.uniqueId, visibility } });
    }
    this.deps.log.info({ documentId: report.uniqueId, visibility }, 'visibility of a published report updated in the DMP');
    return { result: 'visibility-updated', setId: report.setId, studyUids: rows.map((r) => r.study_uid) };
  }

  /** De-publication: exactly the documents of the exams the message names become Deprecated (ITI-57). */
  private async withdraw(p: ReportPayload): Promise<PublishOutcome> {
    const report = p.cda ? this.read(Buffer.from(p.cda, 'base64')) : undefined;
    const named = report ? this.exams(report, p.accessionNumber) : [{ accession: p.accessionNumber }];
    const studies = named.map((e) => e.studyUid).filter((s): s is string => Boolean(s));
    const rows = report ? await this.publishedOf(report, studies) : await this.publishedByAccession(named.map((e) => e.accession!).filter(Boolean));
    if (!rows.length) throw new PublishError('no published report matches this withdrawal', 'OBX-5');
    const state = JSON.parse(rows[0]!.metadata) as PublicationState;
    const entries = [...new Set(rows.flatMap((r) => [r.report_entry_uuid, r.kos_entry_uuid]))];
    const ss = buildSubmissionSet(state.report, state.ins, this.deps.settings);
    await this.call(() => this.deps.xds.updateStatus(ss, entries.map((id) => ({ entryUUID: id, from: Status.approved, to: Status.deprecated }))));
    const now = new Date().toISOString();
    for (const r of rows) {
      await this.deps.db.updateTable('report_publications').set({ status: 'withdrawn', updated_at: now }).where('report_unique_id', '=', r.report_unique_id).where('study_uid', '=', r.study_uid).execute();
      await this.deps.audit.record({ actorType: 'system', actorId: p.sender, actorAddress: p.senderAddress, action: 'source.report.withdraw', patientId: r.patient_id, studyUid: r.study_uid, outcome: 'success', detail: { documentId: r.report_unique_id, setId: r.set_id } });
    }
    this.deps.log.info({ documents: entries.length, studies: rows.map((r) => r.study_uid) }, 'report and manifests withdrawn from the DMP');
    return { result: 'withdrawn', setId: rows[0]!.set_id, studyUids: rows.map((r) => r.study_uid) };
  }

  /**
   * The exam changed (series added or removed in the PACS, instances rejected): a manifest that no longer lists
   * exactly what is there is replaced. The report is left as it is.
   */
  private async refresh(ref: { studyUid?: string; accessionNumber?: string; rejected?: { sopUids: string[]; reason: string } }, actor: string): Promise<PublishOutcome> {
    if (ref.rejected && ref.studyUid) {
      const at = new Date().toISOString();
      for (const sop of ref.rejected.sopUids) {
        const known = await this.deps.db.selectFrom('rejected_instances').select('sop_uid').where('sop_uid', '=', sop).executeTakeFirst();
        if (!known) await this.deps.db.insertInto('rejected_instances').values({ sop_uid: sop, study_uid: ref.studyUid, reason: ref.rejected.reason, at }).execute();
      }
    }
    let q = this.deps.db.selectFrom('report_publications').selectAll().where('status', '=', 'published');
    q = ref.studyUid ? q.where('study_uid', '=', ref.studyUid) : q.where('accession_number', '=', ref.accessionNumber!);
    const rows = await q.execute();
    if (!rows.length) return { result: 'not-published', studyUids: ref.studyUid ? [ref.studyUid] : [] };
    let outcome: PublishOutcome = { result: 'unchanged' };
    for (const r of rows) {
      const study = await this.content(r.study_uid);
      if (contentDigest(study) === r.content_digest) {
        outcome = { result: 'unchanged', setId: r.set_id, studyUids: [r.study_uid], instances: r.kos_instances };
        continue;
      }
      const state = JSON.parse(r.metadata) as PublicationState;
      const manifest = this.manifest(study, state.report, state.ins, { exam: state.exam, order: state.order });
      const sub = buildSubmission({ report: state.report, cda: Buffer.alloc(0), exams: [{ exam: state.exam, order: state.order, study, manifest }], ins: state.ins, visibility: state.visibility, withReport: false, replaces: { manifests: { [r.study_uid]: r.kos_entry_uuid } } }, this.deps.settings);
      await this.call(() => this.deps.xds.provideAndRegister({ objects: sub.objects, documents: sub.documents }));
      const next: PublicationState = { ...state, manifestEntry: sub.manifestEntries[0]! };
      await this.deps.db.updateTable('report_publications').set({ kos_entry_uuid: next.manifestEntry.entryUUID, kos_unique_id: next.manifestEntry.uniqueId, kos_instances: study.series.reduce((m, s) => m + s.instances.length, 0), content_digest: contentDigest(study), metadata: JSON.stringify(next), updated_at: new Date().toISOString() }).where('report_unique_id', '=', r.report_unique_id).where('study_uid', '=', r.study_uid).execute();
      await this.deps.audit.record({ actorType: 'system', actorId: actor, action: 'source.manifest.replace', patientId: r.patient_id, studyUid: r.study_uid, outcome: 'success', detail: { documentId: r.report_unique_id, instances: study.series.reduce((m, s) => m + s.instances.length, 0), previousInstances: r.kos_instances } });
      this.deps.log.info({ studyUid: r.study_uid, before: r.kos_instances }, 'exam content changed: manifest replaced in the DMP');
      outcome = { result: 'manifest-replaced', setId: r.set_id, studyUids: [r.study_uid], instances: study.series.reduce((m, s) => m + s.instances.length, 0) };
    }
    return outcome;
  }

  private manifest(study: StudyContent, report: ImagingReport, ins: { id: string; oid: string; issuer: string }, n: { exam?: ImagingExam; order?: ImagingOrder }) {
    const s = this.deps.settings;
    const viewerUrl = s.viewerUrlTemplate?.replace('{studyUid}', encodeURIComponent(study.studyUid)).replace('{accessionNumber}', encodeURIComponent(study.accessionNumber ?? ''));
    return buildManifest(
      study,
      { ins: ins.id, insOid: ins.oid, issuer: ins.issuer, name: personName(report.patient.family, report.patient.given), birthDate: report.patient.birthDate?.slice(0, 8), sex: report.patient.sex },
      { retrieveAeTitle: s.retrieveAeTitle, retrieveLocationUid: s.retrieveLocationUid, wadoRsBase: s.wadoRsBase, institutionName: report.organisation?.name ?? s.organisation.name, viewerUrl },
      { accessionNumber: n.order?.accessionNumber, placerOrderNumber: n.order?.placerOrderNumber, procedureDescription: n.exam?.act?.display },
    );
  }

  private async locate(n: NamedExam): Promise<string> {
    let uid: string | undefined;
    try {
      uid = await this.deps.pacs.locate({ studyUid: n.studyUid, accessionNumber: n.accession });
    } catch (e) {
      throw new PublishError(`the local PACS (${this.deps.pacs.aeTitle}) could not be queried: ${(e as Error).message}`, 'OBR-18', true);
    }
    if (!uid) throw new PublishError(`the exam (study ${n.studyUid ?? '-'}, accession ${n.accession ?? '-'}) is not in the local PACS ${this.deps.pacs.aeTitle} yet`, 'OBR-18', true);
    return uid;
  }

  private async content(studyUid: string): Promise<StudyContent> {
    let study: StudyContent | undefined;
    try {
      study = await this.deps.pacs.content(studyUid);
    } catch (e) {
      throw new PublishError(`the local PACS (${this.deps.pacs.aeTitle}) could not be queried: ${(e as Error).message}`, 'OBR-18', true);
    }
    if (!study) throw new PublishError(`study ${studyUid} is not in the local PACS ${this.deps.pacs.aeTitle}`, 'OBR-18', true);
    const rejected = new Set((await this.deps.db.selectFrom('rejected_instances').select('sop_uid').where('study_uid', '=', studyUid).execute()).map((r) => r.sop_uid));
    // Rejection notes and earlier manifests are not images a consumer should fetch as the exam.
    study.series = study.series.map((s) => ({ ...s, instances: s.instances.filter((i) => !rejected.has(i.sopInstanceUid) && i.sopClassUid !== KOS) })).filter((s) => s.instances.length > 0);
    if (!study.series.length) throw new PublishError(`study ${studyUid} has no instance to reference in the local PACS yet`, 'OBR-18', true);
    return study;
  }

  private async call<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      const msg = (e as Error).message;
      // Connection problems and a busy registry pass; registry refusals will not until someone fixes the data.
      const transient = /ECONNREFUSED|ETIMEDOUT|ECONNRESET|EHOSTUNREACH|ENOTFOUND|timed out|socket hang up|fetch failed|other side closed|HTTP 5\d\d|XDSRegistryBusy|XDSRepositoryBusy|XDSRegistryOutOfResources|XDSRepositoryOutOfResources/.test(msg);
      throw new PublishError(`the DMP refused or could not take the submission: ${msg}`, 'OBX-5', transient);
    }
  }
}
