import type { XdsClient } from '../xds/client.js';
import { dmpPatientId, type Code, type DocumentEntry } from '../xds/metadata.js';
import { Status } from '../xds/vocabulary.js';

/** The DICOM modality code scheme used in DMP eventCodeList. */
const MODALITY_SCHEME = '1.2.250.1.213.1.1.5.618';
const KOS_FORMAT = '1.2.840.10008.5.1.4.1.1.88.59';

export interface PatientRef {
  ins: string;
  /** INS OID: 1.2.250.1.213.1.4.8 (NIR), .9 (NIA), .10 (test NIR). */
  oid: string;
}

export interface DocumentRef {
  entryUUID: string;
  uniqueId: string;
  repositoryUniqueId: string;
}

/** One imaging exam as the DMP knows it: its report and its manifest, paired by Study Instance UID. */
export interface Exam {
  studyUid?: string;
  /** YYYY-MM-DD. */
  date?: string;
  modalities: string[];
  /** The exam / region code of the report (serviceEvent code). */
  regions: Code[];
  description?: string;
  author?: string;
  institution?: string;
  report?: DocumentRef & { title?: string; confidentiality: string[] };
  manifest?: DocumentRef;
  /** Found outside the DMP (prefetch sources): "pacs:AE" by C-FIND, or "box:URL" by QIDO-RS at a peer box. */
  foundIn?: string;
}

export interface ExamFilter {
  modality?: string;
  /** Matches a region code or a word of its label. */
  region?: string;
  /** YYYY-MM-DD, inclusive. */
  from?: string;
  to?: string;
}

const ref = (d: DocumentEntry): DocumentRef => ({ entryUUID: d.entryUUID, uniqueId: d.uniqueId, repositoryUniqueId: d.repositoryUniqueId ?? '' });
/** Every study an entry references (a report may document several exams, each with its own manifest). */
const studiesOf = (d: DocumentEntry) => (d.referenceIdList ?? []).map((r) => /^([0-9.]+)\^.*studyInstanceUID$/i.exec(r)?.[1]).filter((s): s is string => Boolean(s));
const dateOf = (d: DocumentEntry) => {
  const t = d.serviceStartTime ?? d.creationTime;
  return t && t.length >= 8 ? `${t.slice(0, 4)}-${t.slice(4, 6)}-${t.slice(6, 8)}` : undefined;
};
/** XCN "id^FAMILY^Given^…" → "Given FAMILY". */
const personName = (xcn: string | undefined) => {
  if (!xcn) return undefined;
  const [, family, given] = xcn.split('^');
  return [given, family].filter(Boolean).join(' ') || undefined;
};
const normalise = (s: string) => s.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase();

/**
 * The patient's imaging exams in the DMP (ITI-18 FindDocuments by INS), reports and KOS manifests paired by
 * study, newest first, with the filters a requesting physician uses.
 */
export class DmpExams {
  constructor(private readonly xds: XdsClient) {}

  async list(patient: PatientRef, filter: ExamFilter = {}): Promise<Exam[]> {
    const res = await this.xds.findDocuments({ patientId: dmpPatientId({ id: patient.ins, oid: patient.oid }), status: [Status.approved] });
    const byStudy = new Map<string, Exam>();
    const loose: Exam[] = [];
    for (const d of res.objects.documents) {
      const studies = studiesOf(d);
      for (const studyUid of studies.length ? studies : [undefined]) {
        let exam = studyUid ? byStudy.get(studyUid) : undefined;
        if (!exam) {
          exam = { studyUid, modalities: [], regions: [] };
          if (studyUid) byStudy.set(studyUid, exam);
          else loose.push(exam);
        }
        // A report of several exams carries all their codes: each exam takes its codes from its own manifest first.
        if (d.mimeType === 'application/dicom' || studies.length <= 1 || !exam.manifest) {
          for (const c of d.eventCodes) {
            if (c.scheme === MODALITY_SCHEME) {
              if (!exam.modalities.includes(c.code)) exam.modalities.push(c.code);
            } else if (!exam.regions.some((r) => r.code === c.code)) exam.regions.push(c);
          }
        }
        exam.date ??= dateOf(d);
        const author = d.authors[0];
        if (d.mimeType !== 'application/dicom') {
          exam.author ??= personName(author?.person);
          exam.institution ??= author?.institutions?.[0]?.split('^')[0];
        }
        if (d.formatCode.code === KOS_FORMAT || d.mimeType === 'application/dicom') exam.manifest = ref(d);
        else {
          exam.report = { ...ref(d), title: d.title, confidentiality: d.confidentialityCodes.map((c) => c.code) };
          exam.description = d.title;
          exam.date = dateOf(d) ?? exam.date;
        }
      }
    }
    // The manifests' author is the publishing box: the institution is the one it publishes for.
    for (const e of [...byStudy.values(), ...loose]) {
      if (!e.institution) {
        const kos = res.objects.documents.find((d) => d.entryUUID === e.manifest?.entryUUID);
        e.institution = kos?.authors[0]?.institutions?.[0]?.split('^')[0];
      }
    }
    const all = [...byStudy.values(), ...loose];
    return all.filter((e) => examMatches(e, filter)).sort((a, b) => (b.date ?? '').localeCompare(a.date ?? ''));
  }

  /** Exams of the same kind as a planned one within the look-back window: the exam may already exist. */
  async similar(patient: PatientRef, planned: { modality: string; region?: string }, windowDays: number, today = new Date()): Promise<Exam[]> {
    const from = new Date(today.getTime() - windowDays * 86400_000).toISOString().slice(0, 10);
    return this.list(patient, { modality: planned.modality, region: planned.region, from });
  }

  async retrieve(doc: DocumentRef): Promise<Buffer> {
    const [d] = await this.xds.retrieve([{ repositoryUniqueId: doc.repositoryUniqueId, documentUniqueId: doc.uniqueId }]);
    if (!d) throw new Error(`the DMP returned no document for ${doc.uniqueId}`);
    return d.content;
  }
}

/** Whether an exam passes the filters a physician set (modality, region word or code, date range). */
export function examMatches(e: Exam, f: ExamFilter): boolean {
  if (f.modality && !e.modalities.includes(f.modality.toUpperCase())) return false;
  if (f.from && (!e.date || e.date < f.from)) return false;
  if (f.to && (!e.date || e.date > f.to)) return false;
  if (f.region) {
    const q = normalise(f.region.trim());
    if (q && !e.regions.some((r) => normalise(r.code) === q || normalise(r.display ?? '').includes(q)) && !normalise(e.description ?? '').includes(q)) return false;
  }
  return true;
}
