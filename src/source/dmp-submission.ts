import { createHash, randomUUID } from 'node:crypto';
import { cx, xdsTime, type Association, type Author, type Code, type DocumentEntry, type SubmissionSet } from '../xds/metadata.js';
import { AssociationType, FrOid } from '../xds/vocabulary.js';
import type { ImagingReport, Practitioner } from './cda.js';
import { tsToUtcDtm } from './cda.js';
import type { StudyContent } from './manifest.js';

/**
 * DMP metadata for an imaging exam, following the CI-SIS / DRIM-M conventions: the report (CDA level 1,
 * LOINC 18748-4, class "Compte rendu") and the manifest (KOS, type IMG-KOS, class "Imagerie médicale"),
 * with the modalities and the exam region as event codes and the visibility flags as confidentiality codes.
 */

export interface Visibility {
  hiddenFromProfessionals: boolean;
  invisibleToPatient: boolean;
  invisibleToLegalRepresentatives: boolean;
}

export interface SubmissionContext {
  sourceOid: string;
  organisation: { finess: string; name: string };
  healthcareFacilityTypeCode: Code;
  practiceSettingCode: Code;
  viewerUrl?: string;
}

const MODALITY_SCHEME = '1.2.250.1.213.1.1.5.618';

function xcn(p: Practitioner | undefined): string | undefined {
  if (!p?.rpps) return undefined;
  // The national PS identifier (IDNPS: "8" + RPPS) in XCN form, as the DMP expects.
  const idnps = p.rpps.length === 11 ? `8${p.rpps}` : p.rpps;
  return `${idnps}^${p.family ?? ''}^${p.given ?? ''}^^^^^^&${FrOid.rpps}&ISO^D^^^IDNPS`;
}

function xon(org: { finess?: string; name?: string } | undefined): string | undefined {
  if (!org?.name) return undefined;
  return `${org.name}^^^^^&${FrOid.finess}&ISO^IDNST^^^${org.finess ? `3${org.finess}` : ''}`;
}

function authorOf(report: ImagingReport, ctx: SubmissionContext): Author {
  const p = report.author ?? report.legalAuthenticator;
  return {
    person: xcn(p),
    institutions: [xon(p?.organisation ?? report.organisation ?? ctx.organisation)!].filter(Boolean),
    specialties: p?.specialty?.code ? [`${p.specialty.code}^${p.specialty.display ?? ''}^${p.specialty.scheme}`] : undefined,
  };
}

function confidentiality(report: ImagingReport, v: Visibility): Code[] {
  const codes: Code[] = [{ code: report.confidentiality || 'N', scheme: FrOid.confidentiality, display: report.confidentiality === 'N' || !report.confidentiality ? 'Normal' : report.confidentiality }];
  if (v.hiddenFromProfessionals) codes.push({ code: 'MASQUE_PS', scheme: FrOid.dmpConfidentiality, display: 'Masqué aux professionnels de santé' });
  if (v.invisibleToPatient) codes.push({ code: 'INVISIBLE_PATIENT', scheme: FrOid.dmpConfidentiality, display: 'Non visible par le patient' });
  if (v.invisibleToLegalRepresentatives) codes.push({ code: 'INVISIBLE_REPRESENTANTS_LEGAUX', scheme: FrOid.dmpConfidentiality, display: 'Non visible par les représentants légaux du patient' });
  return codes;
}

function eventCodes(report: ImagingReport, study: StudyContent): Code[] {
  const modalities = [...new Set(study.series.map((s) => s.modality).filter((m): m is string => Boolean(m) && m !== 'KO' && m !== 'PR' && m !== 'SR'))];
  const codes: Code[] = modalities.map((m) => ({ code: m, scheme: MODALITY_SCHEME, display: m }));
  if (report.exam) codes.push({ code: report.exam.code, scheme: report.exam.scheme, display: report.exam.display });
  return codes;
}

export interface SubmissionInput {
  report: ImagingReport;
  cda: Buffer;
  study: StudyContent;
  manifest: { sopInstanceUid: string; part10: Buffer };
  patientId: string;
  sourcePatientId?: string;
  visibility: Visibility;
  /** Entries this submission replaces (RPLC), by role. */
  replaces?: { report?: string; manifest?: string };
  /** Submit only the manifest (exam content changed, report unchanged). */
  manifestOnly?: boolean;
}

/** A submission set for this structure and patient (also used alone, for ITI-57 status updates). */
export function buildSubmissionSet(report: ImagingReport, patientId: string, ctx: SubmissionContext): SubmissionSet {
  return {
    entryUUID: `urn:uuid:${randomUUID()}`,
    uniqueId: `${ctx.sourceOid}.${Date.now()}.${Math.floor(Math.random() * 1e9)}`,
    sourceId: ctx.sourceOid,
    patientId,
    submissionTime: xdsTime(),
    contentTypeCode: { code: report.code.code || '18748-4', scheme: report.code.scheme || FrOid.loinc, display: report.code.display ?? "CR d'imagerie médicale" },
    title: report.title,
    authors: [authorOf(report, ctx)],
  };
}

export function buildSubmission(input: SubmissionInput, ctx: SubmissionContext) {
  const { report, study } = input;
  const author = authorOf(report, ctx);
  const common = {
    patientId: input.patientId,
    sourcePatientId: input.sourcePatientId,
    sourcePatientInfo: [
      report.patient.family ? `PID-5|${report.patient.family}^${report.patient.given ?? ''}^^^^^L` : undefined,
      report.patient.birthDate ? `PID-7|${report.patient.birthDate}` : undefined,
      report.patient.sex ? `PID-8|${report.patient.sex}` : undefined,
    ].filter((x): x is string => Boolean(x)),
    healthcareFacilityTypeCode: ctx.healthcareFacilityTypeCode,
    practiceSettingCode: ctx.practiceSettingCode,
    confidentialityCodes: confidentiality(report, input.visibility),
    eventCodes: eventCodes(report, study),
    languageCode: 'fr-FR',
    serviceStartTime: tsToUtcDtm(report.serviceStart) ?? (study.studyDate ? `${study.studyDate}${(study.studyTime ?? '').slice(0, 6)}`.slice(0, 14) : undefined),
    serviceStopTime: tsToUtcDtm(report.serviceStop),
    authors: [author],
    legalAuthenticator: xcn(report.legalAuthenticator),
    referenceIdList: [
      `${study.studyUid}^^^^urn:ihe:iti:xds:2016:studyInstanceUID`,
      ...(study.accessionNumber ? [`${study.accessionNumber}^^^&${ctx.sourceOid}&ISO^urn:ihe:iti:xds:2013:accession`] : []),
    ],
  };
  const reportEntry: DocumentEntry = {
    ...common,
    entryUUID: `urn:uuid:${randomUUID()}`,
    uniqueId: report.uniqueId,
    mimeType: 'text/xml',
    title: report.title,
    comments: ctx.viewerUrl ? `Images : ${ctx.viewerUrl}` : undefined,
    classCode: { code: '10', scheme: FrOid.classCodes, display: 'Compte rendu' },
    typeCode: { code: report.code.code || '18748-4', scheme: report.code.scheme || FrOid.loinc, display: report.code.display ?? "CR d'imagerie médicale" },
    formatCode: { code: 'urn:ihe:iti:xds-sd:pdf:2008', scheme: FrOid.ihePdfFormat, display: 'Document à corps non structuré en Pdf/A-1' },
    creationTime: tsToUtcDtm(report.effectiveTime) ?? xdsTime(),
    hash: createHash('sha1').update(input.cda).digest('hex'),
    size: input.cda.length,
  };
  const manifestEntry: DocumentEntry = {
    ...common,
    entryUUID: `urn:uuid:${randomUUID()}`,
    uniqueId: input.manifest.sopInstanceUid,
    mimeType: 'application/dicom',
    title: "Reference d'objets d'un examen d'imagerie",
    comments: ctx.viewerUrl ? `Images : ${ctx.viewerUrl}` : undefined,
    classCode: { code: '31', scheme: FrOid.classCodes, display: 'Imagerie médicale' },
    typeCode: { code: 'IMG-KOS', scheme: FrOid.typeCodesImg, display: "Reference d'objets d'un examen d'imagerie" },
    formatCode: { code: '1.2.840.10008.5.1.4.1.1.88.59', scheme: FrOid.dicomUid, display: 'Key Object Selection Document' },
    creationTime: xdsTime(),
    hash: createHash('sha1').update(input.manifest.part10).digest('hex'),
    size: input.manifest.part10.length,
  };
  const ss = buildSubmissionSet(report, input.patientId, ctx);
  const docs = input.manifestOnly ? [manifestEntry] : [reportEntry, manifestEntry];
  const associations: Association[] = docs.map((d) => ({ id: `urn:uuid:${randomUUID()}`, type: AssociationType.hasMember, sourceObject: ss.entryUUID, targetObject: d.entryUUID, slots: { SubmissionSetStatus: ['Original'] } }));
  const replace = (source: DocumentEntry, target: string) => associations.push({ id: `urn:uuid:${randomUUID()}`, type: AssociationType.replace, sourceObject: source.entryUUID, targetObject: target });
  if (input.replaces?.report && !input.manifestOnly) replace(reportEntry, input.replaces.report);
  if (input.replaces?.manifest) replace(manifestEntry, input.replaces.manifest);
  const documents = new Map<string, Buffer>();
  if (!input.manifestOnly) documents.set(reportEntry.entryUUID, input.cda);
  documents.set(manifestEntry.entryUUID, input.manifest.part10);
  return { objects: { submissionSets: [ss], documents: docs, associations }, documents, reportEntry, manifestEntry, submissionSet: ss };
}

export { cx };
