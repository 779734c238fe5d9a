import { arr, parseXml, text, XmlError } from '../xds/xml.js';
import { FrOid, INS_OIDS } from '../xds/vocabulary.js';

/** A coded value as the CDA carries it (code, codeSystem OID, displayName). */
export interface CdaCode {
  code: string;
  scheme: string;
  display?: string;
}

/**
 * One exam a report documents (documentationOf/serviceEvent, CI-SIS IMG-CR-IMG): the study, the act and its
 * translations (CCAM act, acquisition modalities, anatomical regions), when it was performed and by whom.
 */
export interface ImagingExam {
  /** serviceEvent/id: root = StudyInstanceUID (an extension, when present, carries it instead). */
  studyUid?: string;
  /** serviceEvent/code: the act (LOINC in the ANS reports). */
  act?: CdaCode;
  /** The CCAM act (1.2.250.1.213.2.5): the code itself or one of its translations. */
  ccam?: CdaCode;
  /** Translations qualified 121139 "Modality" (DCM codes). */
  modalities: CdaCode[];
  /** Translations qualified 39111-0 "Body site" (SNOMED CT, JDV_RegionAnatomique_CISIS). */
  regions: CdaCode[];
  serviceStart?: string;
  serviceStop?: string;
  performer?: Practitioner;
}

/** One order a report fulfils (inFulfillmentOf/order): the placer order number and the accession number. */
export interface ImagingOrder {
  /** order/id: the placer order number ("numéro de la demande"), root = its assigning authority. */
  placerOrderNumber?: { id: string; root?: string };
  /** order/ps3-20:accessionNumber (DICOM PS3.20), root = the Issuer of Accession Number. */
  accessionNumber?: { id: string; root?: string };
}

/** What the source function needs from a CI-SIS imaging report (CDA R2 level 1, LOINC 18748-4) header. */
export interface ImagingReport {
  /** ClinicalDocument/id: root, or root^extension. */
  uniqueId: string;
  setId: string;
  version: number;
  title: string;
  code: CdaCode;
  /** CDA effectiveTime (HL7 TS with offset). */
  effectiveTime: string;
  confidentiality: string;
  patient: { ins?: { id: string; oid: string }; ipp?: { id: string; oid: string }; family?: string; given?: string; birthDate?: string; sex?: string };
  author?: Practitioner;
  legalAuthenticator?: Practitioner;
  organisation?: { finess?: string; name?: string };
  /** Every exam the report documents, in document order (a report may cover several studies). */
  exams: ImagingExam[];
  /** Every order it fulfils, in document order. */
  orders: ImagingOrder[];
  /** componentOf/encompassingEncounter/location/healthCareFacility/code (TRE_R02 SecteurActivite). */
  healthcareFacilityType?: CdaCode;
  /** standardIndustryClassCode of the author's (else the legal authenticator's) organisation. */
  practiceSetting?: CdaCode;
}

export interface Practitioner {
  rpps?: string;
  family?: string;
  given?: string;
  specialty?: CdaCode;
  organisation?: { finess?: string; name?: string; practiceSetting?: CdaCode };
}

export class CdaError extends Error {
  override name = 'CdaError';
}

const attr = (n: any, a: string): string | undefined => (n?.[`@_${a}`] !== undefined ? String(n[`@_${a}`]) : undefined);
const cdaCode = (n: any): CdaCode | undefined => (attr(n, 'code') ? { code: attr(n, 'code')!, scheme: attr(n, 'codeSystem') ?? '', display: attr(n, 'displayName') } : undefined);
const instanceId = (n: any): { id: string; root?: string } | undefined => (attr(n, 'extension') ? { id: attr(n, 'extension')!, root: attr(n, 'root') } : undefined);
const present = <T>(v: T | undefined): v is T => v !== undefined;

const CCAM = '1.2.250.1.213.2.5';
const DCM = '1.2.840.10008.2.16.4';
const SNOMED = '2.16.840.1.113883.6.96';

function practitioner(assigned: any): Practitioner | undefined {
  if (!assigned) return undefined;
  const id = arr(assigned.id).find((i) => attr(i, 'root') === FrOid.rpps) ?? arr(assigned.id)[0];
  const person = assigned.assignedPerson ?? assigned.assignedAuthor?.assignedPerson;
  const name = arr(person?.name)[0];
  const org = assigned.representedOrganization;
  const orgId = arr(org?.id).find((i) => attr(i, 'root') === FrOid.finess);
  return {
    rpps: attr(id, 'extension'),
    family: text(arr(name?.family)[0]) || undefined,
    given: text(arr(name?.given)[0]) || undefined,
    specialty: cdaCode(assigned.code),
    organisation: org ? { finess: attr(orgId, 'extension'), name: text(arr(org.name)[0]) || undefined, practiceSetting: cdaCode(org.standardIndustryClassCode) } : undefined,
  };
}

/** A serviceEvent, its translations told apart by their qualifier first (the CI-SIS way), by code system second. */
function readExam(event: any): ImagingExam {
  const id = arr(event?.id)[0];
  const code = event?.code;
  const translations = arr(code?.translation);
  const qualifier = (t: any) => attr(arr(arr(t?.qualifier)[0]?.name)[0], 'code');
  const isModality = (t: any) => qualifier(t) === '121139' || (!qualifier(t) && attr(t, 'codeSystem') === DCM);
  const isRegion = (t: any) => qualifier(t) === '39111-0' || (!qualifier(t) && attr(t, 'codeSystem') === SNOMED);
  return {
    studyUid: id ? (attr(id, 'extension') ?? attr(id, 'root')) : undefined,
    act: cdaCode(code),
    ccam: attr(code, 'codeSystem') === CCAM ? cdaCode(code) : cdaCode(translations.find((t) => attr(t, 'codeSystem') === CCAM)),
    modalities: translations.filter(isModality).map(cdaCode).filter(present),
    regions: translations.filter(isRegion).map(cdaCode).filter(present),
    serviceStart: attr(event?.effectiveTime?.low, 'value'),
    serviceStop: attr(event?.effectiveTime?.high, 'value'),
    performer: practitioner(arr(event?.performer)[0]?.assignedEntity),
  };
}

/** Reads the header of a CDA document (hardened XML parsing: no DTD, bounded size and depth). */
export function readImagingReport(xml: string | Buffer): ImagingReport {
  let doc: Record<string, any>;
  try {
    doc = parseXml(typeof xml === 'string' ? xml : xml.toString('utf8'), { maxBytes: 64 * 1024 * 1024, maxDepth: 200 });
  } catch (e) {
    throw new CdaError(`the CDA report is not readable XML: ${(e as XmlError).message}`);
  }
  const cd = doc.ClinicalDocument;
  if (!cd) throw new CdaError('the document is not a CDA ClinicalDocument');
  const id = arr(cd.id)[0];
  const root = attr(id, 'root');
  if (!root) throw new CdaError('ClinicalDocument/id has no root');
  const setIdNode = arr(cd.setId)[0] ?? cd.setId;
  const setId = attr(setIdNode, 'root');
  if (!setId) throw new CdaError('ClinicalDocument/setId is missing');
  const code = cd.code;
  if (!code) throw new CdaError('ClinicalDocument/code is missing');
  const effective = attr(cd.effectiveTime, 'value');
  if (!effective) throw new CdaError('ClinicalDocument/effectiveTime is missing');

  const role = cd.recordTarget?.patientRole;
  if (!role) throw new CdaError('recordTarget/patientRole is missing');
  const ids = arr(role.id);
  const insId = ids.find((i) => INS_OIDS.includes(attr(i, 'root') ?? ''));
  const ippId = ids.find((i) => i !== insId && attr(i, 'extension'));
  const names = arr(role.patient?.name)[0];
  const birthFamily = arr(names?.family).find((f) => attr(f, 'qualifier') === 'BR') ?? arr(names?.family)[0];
  const birthGiven = arr(names?.given).find((g) => attr(g, 'qualifier') === 'BR') ?? arr(names?.given)[0];

  const custodian = cd.custodian?.assignedCustodian?.representedCustodianOrganization;
  const facility = cd.componentOf?.encompassingEncounter?.location?.healthCareFacility;
  const author = practitioner(arr(cd.author)[0]?.assignedAuthor);
  const legal = practitioner(cd.legalAuthenticator?.assignedEntity);
  return {
    uniqueId: attr(id, 'extension') ? `${root}^${attr(id, 'extension')}` : root,
    setId: attr(setIdNode, 'extension') ? `${setId}^${attr(setIdNode, 'extension')}` : setId,
    version: Number(attr(cd.versionNumber, 'value') ?? '1') || 1,
    title: text(cd.title) || attr(code, 'displayName') || "Compte rendu d'imagerie",
    code: { code: attr(code, 'code') ?? '', scheme: attr(code, 'codeSystem') ?? '', display: attr(code, 'displayName') },
    effectiveTime: effective,
    confidentiality: attr(cd.confidentialityCode, 'code') ?? 'N',
    patient: {
      ins: insId ? { id: attr(insId, 'extension') ?? '', oid: attr(insId, 'root')! } : undefined,
      ipp: ippId ? { id: attr(ippId, 'extension')!, oid: attr(ippId, 'root') ?? '' } : undefined,
      family: text(birthFamily) || undefined,
      given: text(birthGiven) || undefined,
      birthDate: attr(role.patient?.birthTime, 'value'),
      sex: attr(role.patient?.administrativeGenderCode, 'code'),
    },
    author,
    legalAuthenticator: legal,
    organisation: custodian ? { finess: attr(arr(custodian.id).find((i) => attr(i, 'root') === FrOid.finess), 'extension'), name: text(arr(custodian.name)[0]) || undefined } : author?.organisation,
    exams: arr(cd.documentationOf).map((d) => d?.serviceEvent).filter(Boolean).map(readExam),
    orders: arr(cd.inFulfillmentOf)
      .map((f) => f?.order)
      .filter(Boolean)
      .map((o) => ({ placerOrderNumber: instanceId(arr(o.id)[0]), accessionNumber: instanceId(arr(o.accessionNumber)[0]) })),
    healthcareFacilityType: cdaCode(facility?.code),
    practiceSetting: author?.organisation?.practiceSetting ?? legal?.organisation?.practiceSetting,
  };
}

/** HL7 TS ("20210108111700+0100") → XDS DTM in UTC ("20210108101700"). */
export function tsToUtcDtm(ts: string | undefined): string | undefined {
  if (!ts) return undefined;
  const m = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$/.exec(ts.trim());
  if (!m) return undefined;
  if (!m[7] || !m[4]) return ts.slice(0, 14).replace(/\D.*$/, '');
  const iso = `${m[1]}-${m[2] ?? '01'}-${m[3] ?? '01'}T${m[4]}:${m[5] ?? '00'}:${m[6] ?? '00'}${m[7].slice(0, 3)}:${m[7].slice(3)}`;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return undefined;
  const full = d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return full.slice(0, 8 + (m[4] ? 2 : 0) + (m[5] ? 2 : 0) + (m[6] ? 2 : 0));
}

/**
 * The body of a CDA level 1 report: CI-SIS imaging reports carry a PDF (nonXMLBody, base64); a structured body
 * is returned as its narrative text.
 */
export function readReportBody(xml: string | Buffer): { mediaType: string; data: Buffer } {
  let doc: Record<string, any>;
  try {
    doc = parseXml(typeof xml === 'string' ? xml : xml.toString('utf8'), { maxBytes: 64 * 1024 * 1024, maxDepth: 200 });
  } catch (e) {
    throw new CdaError(`the CDA report is not readable XML: ${(e as XmlError).message}`);
  }
  const components = arr(doc.ClinicalDocument?.component);
  const nonXml = components.find((c) => c?.nonXMLBody)?.nonXMLBody?.text;
  if (nonXml) {
    const mediaType = attr(nonXml, 'mediaType') ?? 'application/octet-stream';
    const b64 = attr(nonXml, 'representation') === 'B64';
    const content = text(nonXml).replace(/\s+/g, '');
    return { mediaType, data: b64 ? Buffer.from(content, 'base64') : Buffer.from(text(nonXml), 'utf8') };
  }
  const sections = arr(components.find((c) => c?.structuredBody)?.structuredBody?.component).map((c) => [text(c?.section?.title), flatten(c?.section?.text)].filter(Boolean).join('\n'));
  if (sections.length) return { mediaType: 'text/plain', data: Buffer.from(sections.join('\n\n'), 'utf8') };
  throw new CdaError('the CDA report has no body');
}

function flatten(n: unknown): string {
  if (n === undefined || n === null) return '';
  if (typeof n !== 'object') return String(n);
  if (Array.isArray(n)) return n.map(flatten).join('\n');
  return Object.entries(n as Record<string, unknown>)
    .filter(([k]) => !k.startsWith('@_'))
    .map(([, v]) => flatten(v))
    .filter(Boolean)
    .join('\n');
}
