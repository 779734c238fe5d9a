import { createHash, randomUUID } from 'node:crypto';
import { dmpPatientId, xdsTime, type Association, type Author, type Code, type DocumentEntry, type SubmissionSet } from '../xds/metadata.js';
import { AssociationType, FrOid } from '../xds/vocabulary.js';
import type { CdaCode, ImagingExam, ImagingOrder, ImagingReport, Practitioner } from './cda.js';
import { tsToUtcDtm } from './cda.js';
import type { StudyContent } from './manifest.js';

/**
 * DMP metadata for an imaging exam as the ANS models it (DRIM-M_DATA "Validateur XDS" sample, CI-SIS XDS-I):
 * the report (CDA level 1, LOINC 18748-4, class "Compte rendu") and one manifest per exam (KOS, type IMG-KOS,
 * class "Imagerie médicale"). Every value that the report carries comes from the report; configuration is only
 * the fallback. The mapping is written out in docs/ihe-integration.md.
 */

export interface Visibility {
  hiddenFromProfessionals: boolean;
  invisibleToPatient: boolean;
  invisibleToLegalRepresentatives: boolean;
}

/** The publishing software, author of the manifests and of the submission set (XCN with identifier type EI). */
export interface PublishingDevice {
  id: string;
  name: string;
  given?: string;
  /** Assigning authority of the id (the ANS model uses the RPPS OID). */
  authority: string;
}

export interface SubmissionContext {
  sourceOid: string;
  organisation: { finess: string; name: string };
  healthcareFacilityTypeCode: Code;
  practiceSettingCode: Code;
  /** Submission set contentTypeCode (TRE_R209 TypeActivite, 1.2.250.1.213.2.2). */
  contentTypeCode: Code;
  device: PublishingDevice;
}

/** An exam of the report as it will be published: what the report says of it and what the PACS holds. */
export interface ExamToPublish {
  exam?: ImagingExam;
  order?: ImagingOrder;
  study: StudyContent;
  manifest: { sopInstanceUid: string; part10: Buffer };
}

const MODALITY_SCHEME = '1.2.250.1.213.1.1.5.618';
/** JDV_ModaliteAcquisition_CISIS display names of the usual modalities (the DICOM code meanings). */
const MODALITY_NAMES: Record<string, string> = {
  CR: 'Computed Radiography', CT: 'Computed Tomography', DX: 'Digital Radiography', MG: 'Mammography', MR: 'Magnetic Resonance', NM: 'Nuclear Medicine',
  PT: 'Positron emission tomography', RF: 'Radio Fluoroscopy', US: 'Ultrasound', XA: 'X-Ray Angiography', OT: 'Other', IO: 'Intra-oral Radiography', PX: 'Panoramic X-Ray',
};

/** IDNPS: an 11-digit RPPS number gets the "8" prefix; an ADELI or an already prefixed id is kept. */
function idnps(rpps: string): string {
  return /^\d{11}$/.test(rpps) ? `8${rpps}` : rpps;
}

function xcn(p: Practitioner | undefined): string | undefined {
  if (!p?.rpps) return undefined;
  return `${idnps(p.rpps)}^${p.family ?? ''}^${p.given ?? ''}^^^^^^&${FrOid.rpps}&ISO^D^^^IDNPS`;
}

/**
 * IDNST, the national structure identifier of an XON: "1" + FINESS for a 9-character FINESS (2A/2B for Corsica);
 * an identifier that already carries its type prefix (1 FINESS, 3 SIRET, 4 RPPS cabinet) is kept as it is.
 */
export function idnst(id: string): string {
  return /^(?:[0-9]{2}|2[AB])[0-9]{7}$/i.test(id) ? `1${id}` : id;
}

function xon(org: { finess?: string; name?: string } | undefined): string | undefined {
  if (!org?.name) return undefined;
  return `${org.name}^^^^^&${FrOid.finess}&ISO^IDNST^^^${org.finess ? idnst(org.finess) : ''}`;
}

const code = (c: CdaCode | Code): Code => ({ code: c.code, scheme: c.scheme, display: c.display });

function reportAuthor(report: ImagingReport, ctx: SubmissionContext): Author {
  const p = report.author ?? report.legalAuthenticator;
  return {
    person: xcn(p),
    institutions: [xon(p?.organisation ?? report.organisation ?? ctx.organisation)!].filter(Boolean),
    specialties: p?.specialty?.code ? [`${p.specialty.code}^${p.specialty.display ?? ''}^${p.specialty.scheme}`] : undefined,
  };
}

/** The manifests' author as in the ANS model: the publishing DRIMbox, for the report's structure. */
function deviceAuthor(report: ImagingReport, ctx: SubmissionContext): Author {
  const d = ctx.device;
  const p = report.author ?? report.legalAuthenticator;
  return { person: `${d.id}^${d.name}^${d.given ?? ''}^^^^^^&${d.authority}&ISO^U^^^EI`, institutions: [xon(p?.organisation ?? report.organisation ?? ctx.organisation)!].filter(Boolean) };
}

/** Confidentiality codes: the CDA's (HL7 Confidentiality), then the DMP visibility flags of the message. */
export function confidentialityCodes(report: ImagingReport, v: Visibility): Code[] {
  const c = report.confidentiality || 'N';
  const names: Record<string, string> = { N: 'Normal', R: 'Restreint', V: 'Très restreint' };
  const codes: Code[] = [{ code: c, scheme: FrOid.confidentiality, display: names[c] ?? c }];
  if (v.hiddenFromProfessionals) codes.push({ code: 'MASQUE_PS', scheme: FrOid.dmpConfidentiality, display: 'Masqué aux professionnels de santé' });
  if (v.invisibleToPatient) codes.push({ code: 'INVISIBLE_PATIENT', scheme: FrOid.dmpConfidentiality, display: 'Non visible par le patient' });
  if (v.invisibleToLegalRepresentatives) codes.push({ code: 'INVISIBLE_REPRESENTANTS_LEGAUX', scheme: FrOid.dmpConfidentiality, display: 'Non visible par les représentants légaux du patient' });
  return codes;
}

/** eventCodeList: the CCAM act and the anatomical regions of the report, then the modalities the PACS holds. */
function eventCodes(exams: ExamToPublish[]): Code[] {
  const out: Code[] = [];
  const add = (c: Code) => {
    if (!out.some((o) => o.code === c.code && o.scheme === c.scheme)) out.push(c);
  };
  for (const e of exams) {
    if (e.exam?.ccam) add(code(e.exam.ccam));
    for (const r of e.exam?.regions ?? []) add(code(r));
  }
  for (const e of exams) {
    const fromCda = (e.exam?.modalities ?? []).map((m) => m.code);
    const fromPacs = e.study.series.map((s) => s.modality).filter((m): m is string => Boolean(m) && !['KO', 'PR', 'SR', 'SEG'].includes(m!));
    for (const m of [...fromCda, ...fromPacs]) add({ code: m, scheme: MODALITY_SCHEME, display: MODALITY_NAMES[m] ?? m });
  }
  return out;
}

/** referenceIdList (ITI TF-3 4.2.3.2.28): accession with its issuer, study, placer order, each as a CXi. */
function referenceIds(e: ExamToPublish, ctx: SubmissionContext): string[] {
  const accession = e.order?.accessionNumber ?? (e.study.accessionNumber ? { id: e.study.accessionNumber, root: undefined } : undefined);
  return [
    ...(accession ? [`${accession.id}^^^&${accession.root ?? ctx.sourceOid}&ISO^urn:ihe:iti:xds:2013:accession`] : []),
    `${e.study.studyUid}^^^&${ctx.sourceOid}&ISO^urn:ihe:iti:xds:2016:studyInstanceUID`,
    ...(e.order?.placerOrderNumber ? [`${e.order.placerOrderNumber.id}^^^&${e.order.placerOrderNumber.root ?? ctx.sourceOid}&ISO^urn:ihe:iti:xds:2013:order`] : []),
  ];
}

/** A service time: the report's own (UTC), else the study's date and time from the PACS. */
function serviceTimes(exams: ExamToPublish[]): { start?: string; stop?: string } {
  const starts = exams.map((e) => tsToUtcDtm(e.exam?.serviceStart) ?? (e.study.studyDate ? `${e.study.studyDate}${(e.study.studyTime ?? '').slice(0, 6)}`.slice(0, 14) : undefined)).filter((t): t is string => Boolean(t));
  const stops = exams.map((e) => tsToUtcDtm(e.exam?.serviceStop)).filter((t): t is string => Boolean(t));
  return { start: starts.sort()[0], stop: stops.sort().at(-1) };
}

export interface SubmissionInput {
  report: ImagingReport;
  cda: Buffer;
  exams: ExamToPublish[];
  ins: { id: string; oid: string };
  visibility: Visibility;
  /** Entries this submission replaces (RPLC): the report, and each exam's manifest by study UID. */
  replaces?: { report?: string; manifests?: Record<string, string> };
  /** Submit the report too (false when only the exam's content changed). */
  withReport: boolean;
}

/** The entries' common metadata (patient, facility, practice, confidentiality). */
function common(input: SubmissionInput, ctx: SubmissionContext) {
  const { report } = input;
  const given = report.patient.given ?? '';
  return {
    patientId: dmpPatientId(input.ins),
    sourcePatientId: `${input.ins.id}^^^&${input.ins.oid}&ISO^PI`,
    sourcePatientInfo: [
      report.patient.family || given ? `PID-5|${report.patient.family ?? ''}^${given}^^^^^L` : undefined,
      report.patient.birthDate ? `PID-7|${report.patient.birthDate.slice(0, 8)}` : undefined,
      report.patient.sex ? `PID-8|${report.patient.sex}` : undefined,
    ].filter((x): x is string => Boolean(x)),
    healthcareFacilityTypeCode: report.healthcareFacilityType ? code(report.healthcareFacilityType) : ctx.healthcareFacilityTypeCode,
    practiceSettingCode: report.practiceSetting ? code(report.practiceSetting) : ctx.practiceSettingCode,
    confidentialityCodes: confidentialityCodes(report, input.visibility),
    languageCode: 'fr-FR',
    legalAuthenticator: xcn(report.legalAuthenticator),
  };
}

/** SHA-1 as the ANS model writes it (upper-case hexadecimal). */
export const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex').toUpperCase();

/** A submission set for this structure and patient (also used alone, for ITI-57 updates). */
export function buildSubmissionSet(report: ImagingReport, ins: { id: string; oid: string }, ctx: SubmissionContext): SubmissionSet {
  return {
    entryUUID: `urn:uuid:${randomUUID()}`,
    uniqueId: `${ctx.sourceOid}.${Date.now()}.${Math.floor(Math.random() * 1e9)}`,
    sourceId: ctx.sourceOid,
    patientId: dmpPatientId(ins),
    submissionTime: xdsTime(),
    contentTypeCode: ctx.contentTypeCode,
    title: report.title,
    authors: [deviceAuthor(report, ctx)],
  };
}

export function buildSubmission(input: SubmissionInput, ctx: SubmissionContext) {
  const { report } = input;
  const base = common(input, ctx);
  const reportEntry: DocumentEntry = {
    ...base,
    ...((t) => ({ serviceStartTime: t.start, serviceStopTime: t.stop }))(serviceTimes(input.exams)),
    eventCodes: eventCodes(input.exams),
    authors: [reportAuthor(report, ctx)],
    referenceIdList: input.exams.flatMap((e) => referenceIds(e, ctx)),
    entryUUID: `urn:uuid:${randomUUID()}`,
    uniqueId: report.uniqueId,
    mimeType: 'text/xml',
    title: report.title,
    classCode: { code: '10', scheme: FrOid.classCodes, display: 'Compte rendu' },
    typeCode: { code: report.code.code || '18748-4', scheme: report.code.scheme || FrOid.loinc, display: report.code.display ?? "CR d'imagerie médicale" },
    formatCode: { code: 'urn:ihe:iti:xds-sd:pdf:2008', scheme: FrOid.ihePdfFormat, display: 'Document à corps non structuré en Pdf/A-1' },
    creationTime: tsToUtcDtm(report.effectiveTime) ?? xdsTime(),
    hash: sha1(input.cda),
    size: input.cda.length,
  };
  const manifestEntries = input.exams.map((e): DocumentEntry => {
    const t = serviceTimes([e]);
    return {
      ...base,
      serviceStartTime: t.start,
      serviceStopTime: t.stop,
      eventCodes: eventCodes([e]),
      authors: [deviceAuthor(report, ctx)],
      referenceIdList: referenceIds(e, ctx),
      entryUUID: `urn:uuid:${randomUUID()}`,
      uniqueId: e.manifest.sopInstanceUid,
      mimeType: 'application/dicom',
      title: "Reference d'Objets d'un Examen d'Imagerie",
      comments: 'KOS',
      classCode: { code: '31', scheme: FrOid.classCodes, display: 'Imagerie médicale' },
      typeCode: { code: 'IMG-KOS', scheme: FrOid.typeCodesImg, display: "Reference d'objets d'un examen d'imagerie" },
      formatCode: { code: '1.2.840.10008.5.1.4.1.1.88.59', scheme: FrOid.dicomUid, display: "Document de Références d'objets d'imagerie selon profil IHE RAD XDS-I" },
      creationTime: xdsTime(),
      hash: sha1(e.manifest.part10),
      size: e.manifest.part10.length,
    };
  });
  const ss = buildSubmissionSet(report, input.ins, ctx);
  const docs = input.withReport ? [reportEntry, ...manifestEntries] : manifestEntries;
  const associations: Association[] = docs.map((d) => ({ id: `urn:uuid:${randomUUID()}`, type: AssociationType.hasMember, sourceObject: ss.entryUUID, targetObject: d.entryUUID, slots: { SubmissionSetStatus: ['Original'] } }));
  const replace = (source: DocumentEntry, target: string) => associations.push({ id: `urn:uuid:${randomUUID()}`, type: AssociationType.replace, sourceObject: source.entryUUID, targetObject: target });
  if (input.replaces?.report && input.withReport) replace(reportEntry, input.replaces.report);
  input.exams.forEach((e, i) => {
    const previous = input.replaces?.manifests?.[e.study.studyUid];
    if (previous) replace(manifestEntries[i]!, previous);
  });
  const documents = new Map<string, Buffer>();
  if (input.withReport) documents.set(reportEntry.entryUUID, input.cda);
  input.exams.forEach((e, i) => documents.set(manifestEntries[i]!.entryUUID, e.manifest.part10));
  return { objects: { submissionSets: [ss], documents: docs, associations }, documents, reportEntry, manifestEntries, submissionSet: ss };
}
