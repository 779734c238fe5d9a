import type { Kysely } from 'kysely';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { Logger } from '../common/log.js';
import type { DB, PublicationTable } from '../store/db.js';
import { cx, xdsTime, type DocumentEntry } from '../xds/metadata.js';
import type { XdsClient } from '../xds/client.js';
import { FrOid, INS_OIDS, Status } from '../xds/vocabulary.js';
import { CdaError, readImagingReport, type ImagingReport } from './cda.js';
import { buildSubmission, buildSubmissionSet, type SubmissionContext, type Visibility } from './dmp-submission.js';
import { buildManifest, contentDigest, type StudyContent } from './manifest.js';
import type { PacsGateway } from './pacs.js';

/** A report to publish or withdraw, as the RIS sent it (any transport). */
export interface ReportRequest {
  cda?: Buffer;
  /** Patient identifiers from the message (PID-3): the INS among them is authoritative for the DMP. */
  patientIds: { id: string; oid: string; namespace?: string; type: string }[];
  accessionNumber?: string;
  visibility: Visibility;
  toDmp: boolean;
  /** Who sent it (RIS application / address), for the audit trail. */
  sender: string;
  senderAddress?: string;
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
  result: 'published' | 'replaced' | 'already-published' | 'not-for-dmp' | 'withdrawn' | 'manifest-replaced' | 'unchanged' | 'not-published';
  setId?: string;
  studyUid?: string;
  instances?: number;
}

export interface SourceSettings extends SubmissionContext {
  retrieveAeTitle: string;
  retrieveLocationUid: string;
  wadoRsBase: string;
  viewerUrlTemplate?: string;
}

interface PublicationState {
  report: ImagingReport;
  visibility: Visibility;
  patientId: string;
  sourcePatientId?: string;
  insIssuer: string;
  reportEntry: DocumentEntry;
  manifestEntry: DocumentEntry;
}

const ISSUER: Record<string, string> = { [FrOid.insNir]: 'ASIP-SANTE-INS-NIR', [FrOid.insNia]: 'ASIP-SANTE-INS-NIA', [FrOid.insNirTest]: 'ASIP-SANTE-INS-NIR' };

/**
 * The DRIMbox source function: a signed report becomes, in one XDS submission, the CDA and a manifest (KOS) of
 * the exam as the local PACS holds it; an amended report, a change of exam content or a withdrawal replaces or
 * deprecates what was published. What was published is kept so that each later step knows what to replace.
 */
export class ReportPublisher {
  constructor(
    private readonly deps: { db: Kysely<DB>; pacs: PacsGateway; xds: XdsClient; audit: AuditTrail; log: Logger; settings: SourceSettings },
  ) {}

  async publish(req: ReportRequest): Promise<PublishOutcome> {
    if (!req.toDmp) return { result: 'not-for-dmp' };
    if (!req.cda) throw new PublishError('the message carries no CDA report', 'OBX-5');
    let report: ImagingReport;
    try {
      report = readImagingReport(req.cda);
    } catch (e) {
      throw new PublishError((e as CdaError).message, 'OBX-5');
    }
    const ins = this.ins(req, report);
    const existing = await this.deps.db.selectFrom('publications').selectAll().where('set_id', '=', report.setId).executeTakeFirst();
    if (existing && existing.status === 'published' && existing.report_version >= report.version) {
      return { result: 'already-published', setId: report.setId, studyUid: existing.study_uid };
    }
    const studyUid = await this.locate({ studyUid: report.studyUid, accessionNumber: report.accessionNumber ?? req.accessionNumber });
    const study = await this.content(studyUid);
    const previous = existing?.status === 'published' ? (JSON.parse(existing.metadata) as PublicationState) : undefined;
    const ipp = req.patientIds.find((p) => p.type === 'PI' && p.oid);
    const state: Omit<PublicationState, 'reportEntry' | 'manifestEntry'> = {
      report,
      visibility: req.visibility,
      patientId: cx(ins.id, ins.oid),
      sourcePatientId: ipp ? cx(ipp.id, ipp.oid) : undefined,
      insIssuer: ins.namespace ?? ISSUER[ins.oid] ?? 'INS',
    };
    const sub = await this.submit(state, study, { replaces: previous ? { report: previous.reportEntry.entryUUID, manifest: previous.manifestEntry.entryUUID } : undefined }, req.cda);
    await this.save(report.setId, study, state, sub, existing !== undefined);
    const result = previous ? 'replaced' : 'published';
    await this.deps.audit.record({ actorType: 'system', actorId: req.sender, actorAddress: req.senderAddress, action: previous ? 'source.report.replace' : 'source.report.publish', patientId: state.patientId, studyUid: study.studyUid, outcome: 'success', detail: { setId: report.setId, version: report.version, instances: sub.instances } });
    this.deps.log.info({ setId: report.setId, studyUid: study.studyUid, instances: sub.instances, result }, 'report and manifest published to the DMP');
    return { result, setId: report.setId, studyUid: study.studyUid, instances: sub.instances };
  }

  /** De-publication: the report and its manifest become Deprecated in the DMP (ITI-57). */
  async withdraw(req: ReportRequest): Promise<PublishOutcome> {
    let pub: PublicationTable | undefined;
    if (req.cda) {
      try {
        const r = readImagingReport(req.cda);
        pub = await this.deps.db.selectFrom('publications').selectAll().where('set_id', '=', r.setId).executeTakeFirst();
      } catch (e) {
        throw new PublishError((e as CdaError).message, 'OBX-5');
      }
    }
    if (!pub && req.accessionNumber) pub = await this.deps.db.selectFrom('publications').selectAll().where('accession_number', '=', req.accessionNumber).where('status', '=', 'published').executeTakeFirst();
    if (!pub) throw new PublishError('no published report matches this withdrawal (CDA setId or accession number)', req.cda ? 'OBX-5' : 'OBR-18');
    if (pub.status === 'withdrawn') return { result: 'withdrawn', setId: pub.set_id, studyUid: pub.study_uid };
    const state = JSON.parse(pub.metadata) as PublicationState;
    const ss = buildSubmissionSet(state.report, state.patientId, this.deps.settings);
    await this.call(() =>
      this.deps.xds.updateStatus(ss, [
        { entryUUID: pub!.report_entry_uuid, from: Status.approved, to: Status.deprecated },
        { entryUUID: pub!.kos_entry_uuid, from: Status.approved, to: Status.deprecated },
      ]),
    );
    await this.deps.db.updateTable('publications').set({ status: 'withdrawn', updated_at: new Date().toISOString() }).where('set_id', '=', pub.set_id).execute();
    await this.deps.audit.record({ actorType: 'system', actorId: req.sender, actorAddress: req.senderAddress, action: 'source.report.withdraw', patientId: state.patientId, studyUid: pub.study_uid, outcome: 'success', detail: { setId: pub.set_id } });
    this.deps.log.info({ setId: pub.set_id, studyUid: pub.study_uid }, 'report and manifest withdrawn from the DMP');
    return { result: 'withdrawn', setId: pub.set_id, studyUid: pub.study_uid };
  }

  /**
   * The exam changed (series added or removed in the PACS, instances rejected): if its manifest no longer lists
   * exactly what is there, a new manifest replaces it. The report is left as it is.
   */
  async refreshStudy(ref: { studyUid?: string; accessionNumber?: string }, actor = 'system'): Promise<PublishOutcome> {
    let q = this.deps.db.selectFrom('publications').selectAll().where('status', '=', 'published');
    if (ref.studyUid) q = q.where('study_uid', '=', ref.studyUid);
    else if (ref.accessionNumber) q = q.where('accession_number', '=', ref.accessionNumber);
    else return { result: 'not-published' };
    const pubs = await q.execute();
    if (!pubs.length) return { result: 'not-published', studyUid: ref.studyUid };
    let outcome: PublishOutcome = { result: 'unchanged' };
    for (const pub of pubs) {
      const study = await this.content(pub.study_uid);
      if (contentDigest(study) === pub.content_digest) {
        outcome = { result: 'unchanged', setId: pub.set_id, studyUid: pub.study_uid, instances: pub.kos_instances };
        continue;
      }
      const state = JSON.parse(pub.metadata) as PublicationState;
      const sub = await this.submit(state, study, { replaces: { manifest: pub.kos_entry_uuid }, manifestOnly: true });
      await this.save(pub.set_id, study, { ...state }, { ...sub, reportEntry: state.reportEntry }, true);
      await this.deps.audit.record({ actorType: 'system', actorId: actor, action: 'source.manifest.replace', patientId: state.patientId, studyUid: pub.study_uid, outcome: 'success', detail: { setId: pub.set_id, instances: sub.instances, previousInstances: pub.kos_instances } });
      this.deps.log.info({ setId: pub.set_id, studyUid: pub.study_uid, instances: sub.instances, before: pub.kos_instances }, 'exam content changed: manifest replaced in the DMP');
      outcome = { result: 'manifest-replaced', setId: pub.set_id, studyUid: pub.study_uid, instances: sub.instances };
    }
    return outcome;
  }

  /** IOCM: instances rejected by a rejection note are left out of manifests from now on. */
  async rejectInstances(studyUid: string, sopUids: string[], reason: string, actor: string): Promise<PublishOutcome> {
    const at = new Date().toISOString();
    for (const sop of sopUids) {
      const known = await this.deps.db.selectFrom('rejected_instances').select('sop_uid').where('sop_uid', '=', sop).executeTakeFirst();
      if (!known) await this.deps.db.insertInto('rejected_instances').values({ sop_uid: sop, study_uid: studyUid, reason, at }).execute();
    }
    return this.refreshStudy({ studyUid }, actor);
  }

  private ins(req: ReportRequest, report: ImagingReport): { id: string; oid: string; namespace?: string } {
    const fromPid = req.patientIds.find((p) => p.type === 'INS' && INS_OIDS.includes(p.oid)) ?? req.patientIds.find((p) => INS_OIDS.includes(p.oid));
    const fromCda = report.patient.ins?.id ? report.patient.ins : undefined;
    if (fromPid && fromCda && (fromPid.id !== fromCda.id || fromPid.oid !== fromCda.oid)) {
      throw new PublishError(`the INS in PID-3 (${fromPid.id}) differs from the one in the CDA recordTarget (${fromCda.id})`, 'PID-3');
    }
    const ins = fromPid ?? (fromCda ? { ...fromCda, namespace: undefined } : undefined);
    if (!ins) throw new PublishError(`no INS (assigning authority ${INS_OIDS.join(' or ')}) in PID-3 or in the CDA: the DMP needs the patient's INS`, 'PID-3');
    return ins;
  }

  private async locate(ref: { studyUid?: string; accessionNumber?: string }): Promise<string> {
    if (!ref.studyUid && !ref.accessionNumber) throw new PublishError('the report names no study (CDA documentationOf/serviceEvent/id) and no accession number', 'OBR-18');
    let uid: string | undefined;
    try {
      uid = await this.deps.pacs.locate(ref);
    } catch (e) {
      throw new PublishError(`the local PACS (${this.deps.pacs.aeTitle}) could not be queried: ${(e as Error).message}`, 'OBR-18', true);
    }
    if (!uid) throw new PublishError(`the exam (study ${ref.studyUid ?? '-'}, accession ${ref.accessionNumber ?? '-'}) is not in the local PACS ${this.deps.pacs.aeTitle}`, 'OBR-18', true);
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
    // Rejection notes and presentation states are not images a consumer should fetch as the exam.
    const KOS = '1.2.840.10008.5.1.4.1.1.88.59';
    study.series = study.series
      .map((s) => ({ ...s, instances: s.instances.filter((i) => !rejected.has(i.sopInstanceUid) && i.sopClassUid !== KOS) }))
      .filter((s) => s.instances.length > 0);
    if (!study.series.length) throw new PublishError(`study ${studyUid} has no instance to reference in the local PACS`, 'OBR-18', true);
    return study;
  }

  private async submit(state: Omit<PublicationState, 'reportEntry' | 'manifestEntry'>, study: StudyContent, opts: { replaces?: { report?: string; manifest?: string }; manifestOnly?: boolean }, cda?: Buffer) {
    const s = this.deps.settings;
    const viewerUrl = s.viewerUrlTemplate?.replace('{studyUid}', encodeURIComponent(study.studyUid)).replace('{accessionNumber}', encodeURIComponent(study.accessionNumber ?? ''));
    const report = state.report;
    const manifest = buildManifest(
      study,
      { ins: state.patientId.split('^')[0]!, insOid: state.patientId.split('&')[1]!, issuer: state.insIssuer, name: report.patient.family ? `${report.patient.family}^${report.patient.given ?? ''}` : undefined, birthDate: report.patient.birthDate?.slice(0, 8), sex: report.patient.sex },
      { retrieveAeTitle: s.retrieveAeTitle, retrieveLocationUid: s.retrieveLocationUid, wadoRsBase: s.wadoRsBase, institutionName: s.organisation.name, viewerUrl },
    );
    const built = buildSubmission(
      { report, cda: cda ?? Buffer.alloc(0), study, manifest, patientId: state.patientId, sourcePatientId: state.sourcePatientId, visibility: state.visibility, replaces: opts.replaces, manifestOnly: opts.manifestOnly },
      { ...s, viewerUrl },
    );
    await this.call(() => this.deps.xds.provideAndRegister({ objects: built.objects, documents: built.documents }));
    return { reportEntry: built.reportEntry, manifestEntry: built.manifestEntry, instances: manifest.instanceCount, digest: contentDigest(study) };
  }

  private async call<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      const msg = (e as Error).message;
      // Connection problems may pass; registry refusals will not until someone fixes the data.
      const transient = /ECONNREFUSED|ETIMEDOUT|ECONNRESET|timed out|socket hang up|XDSRegistryBusy|XDSRepositoryBusy/.test(msg);
      throw new PublishError(`the DMP refused or could not take the submission: ${msg}`, 'OBX-5', transient);
    }
  }

  private async save(setId: string, study: StudyContent, state: Omit<PublicationState, 'reportEntry' | 'manifestEntry'>, sub: { reportEntry: DocumentEntry; manifestEntry: DocumentEntry; instances: number; digest: string }, exists: boolean): Promise<void> {
    const now = new Date().toISOString();
    const row = {
      study_uid: study.studyUid,
      accession_number: study.accessionNumber ?? state.report.accessionNumber ?? null,
      patient_id: state.patientId,
      status: 'published',
      report_version: state.report.version,
      report_entry_uuid: sub.reportEntry.entryUUID,
      report_unique_id: sub.reportEntry.uniqueId,
      kos_entry_uuid: sub.manifestEntry.entryUUID,
      kos_unique_id: sub.manifestEntry.uniqueId,
      kos_instances: sub.instances,
      content_digest: sub.digest,
      metadata: JSON.stringify({ ...state, reportEntry: sub.reportEntry, manifestEntry: sub.manifestEntry } satisfies PublicationState),
      updated_at: now,
    };
    if (exists) await this.deps.db.updateTable('publications').set(row).where('set_id', '=', setId).execute();
    else await this.deps.db.insertInto('publications').values({ ...row, set_id: setId, created_at: now }).execute();
  }
}

export { xdsTime };
