import { AssociationType, ObjectType, Scheme, Status } from './vocabulary.js';
import { arr, text, xmlEscape as esc } from './xml.js';

/** A coded value: code, its coding scheme (an OID for French codes) and display name. */
export interface Code {
  code: string;
  scheme: string;
  display?: string;
}

/** XDS author: person (XCN), institutions (XON), roles and specialties. */
export interface Author {
  person?: string;
  institutions?: string[];
  roles?: string[];
  specialties?: string[];
  telecom?: string[];
}

export interface DocumentEntry {
  entryUUID: string;
  uniqueId: string;
  /** CX form: `id^^^&OID&ISO`. */
  patientId: string;
  sourcePatientId?: string;
  sourcePatientInfo?: string[];
  mimeType: string;
  title?: string;
  comments?: string;
  classCode: Code;
  typeCode: Code;
  formatCode: Code;
  healthcareFacilityTypeCode: Code;
  practiceSettingCode: Code;
  confidentialityCodes: Code[];
  eventCodes: Code[];
  languageCode: string;
  creationTime: string;
  serviceStartTime?: string;
  serviceStopTime?: string;
  authors: Author[];
  legalAuthenticator?: string;
  hash?: string;
  size?: number;
  repositoryUniqueId?: string;
  referenceIdList?: string[];
  availabilityStatus?: string;
  /** Registry version of this entry (rim:VersionInfo), set by the registry. */
  version?: string;
  lid?: string;
  /** Any other slots, kept as given. */
  extraSlots?: Record<string, string[]>;
}

export interface SubmissionSet {
  entryUUID: string;
  uniqueId: string;
  sourceId: string;
  patientId: string;
  submissionTime: string;
  contentTypeCode: Code;
  title?: string;
  authors: Author[];
  availabilityStatus?: string;
  extraSlots?: Record<string, string[]>;
}

export interface Association {
  id: string;
  type: string;
  sourceObject: string;
  targetObject: string;
  slots?: Record<string, string[]>;
}

export interface RegistryObjects {
  documents: DocumentEntry[];
  submissionSets: SubmissionSet[];
  associations: Association[];
}

const slot = (name: string, values: (string | undefined)[] | undefined) => {
  const vs = (values ?? []).filter((v): v is string => v !== undefined && v !== '');
  return vs.length ? `<rim:Slot name="${esc(name)}"><rim:ValueList>${vs.map((v) => `<rim:Value>${esc(v)}</rim:Value>`).join('')}</rim:ValueList></rim:Slot>` : '';
};
const name = (v?: string) => (v ? `<rim:Name><rim:LocalizedString value="${esc(v)}"/></rim:Name>` : '');
const description = (v?: string) => (v ? `<rim:Description><rim:LocalizedString value="${esc(v)}"/></rim:Description>` : '');
let idCounter = 0;
const localId = (prefix: string) => `${prefix}${++idCounter}`;

function classification(scheme: string, object: string, c: Code): string {
  return `<rim:Classification id="${localId('cl')}" objectType="${ObjectType.classification}" classificationScheme="${scheme}" classifiedObject="${esc(object)}" nodeRepresentation="${esc(c.code)}">${slot('codingScheme', [c.scheme])}${name(c.display)}</rim:Classification>`;
}

function authorXml(scheme: string, object: string, a: Author): string {
  return `<rim:Classification id="${localId('au')}" objectType="${ObjectType.classification}" classificationScheme="${scheme}" classifiedObject="${esc(object)}" nodeRepresentation="">${slot('authorPerson', [a.person])}${slot('authorInstitution', a.institutions)}${slot('authorRole', a.roles)}${slot('authorSpecialty', a.specialties)}${slot('authorTelecommunication', a.telecom)}</rim:Classification>`;
}

function externalId(scheme: string, object: string, value: string, label: string): string {
  return `<rim:ExternalIdentifier id="${localId('ei')}" objectType="${ObjectType.externalIdentifier}" identificationScheme="${scheme}" registryObject="${esc(object)}" value="${esc(value)}">${name(label)}</rim:ExternalIdentifier>`;
}

function extra(slots?: Record<string, string[]>): string {
  return Object.entries(slots ?? {}).map(([k, v]) => slot(k, v)).join('');
}

export function documentEntryXml(d: DocumentEntry): string {
  const id = d.entryUUID;
  return (
    `<rim:ExtrinsicObject id="${esc(id)}" objectType="${ObjectType.documentEntryStable}" mimeType="${esc(d.mimeType)}" status="${d.availabilityStatus ?? Status.approved}"${d.lid ? ` lid="${esc(d.lid)}"` : ''}>` +
    slot('creationTime', [d.creationTime]) +
    slot('languageCode', [d.languageCode]) +
    slot('serviceStartTime', [d.serviceStartTime]) +
    slot('serviceStopTime', [d.serviceStopTime]) +
    slot('sourcePatientId', [d.sourcePatientId]) +
    slot('sourcePatientInfo', d.sourcePatientInfo) +
    slot('legalAuthenticator', [d.legalAuthenticator]) +
    slot('hash', [d.hash]) +
    slot('size', [d.size === undefined ? undefined : String(d.size)]) +
    slot('repositoryUniqueId', [d.repositoryUniqueId]) +
    slot('urn:ihe:iti:xds:2013:referenceIdList', d.referenceIdList) +
    extra(d.extraSlots) +
    name(d.title) +
    description(d.comments) +
    (d.version ? `<rim:VersionInfo versionName="${esc(d.version)}"/>` : '') +
    d.authors.map((a) => authorXml(Scheme.documentAuthor, id, a)).join('') +
    classification(Scheme.classCode, id, d.classCode) +
    d.confidentialityCodes.map((c) => classification(Scheme.confidentialityCode, id, c)).join('') +
    d.eventCodes.map((c) => classification(Scheme.eventCode, id, c)).join('') +
    classification(Scheme.formatCode, id, d.formatCode) +
    classification(Scheme.healthcareFacilityTypeCode, id, d.healthcareFacilityTypeCode) +
    classification(Scheme.practiceSettingCode, id, d.practiceSettingCode) +
    classification(Scheme.typeCode, id, d.typeCode) +
    externalId(Scheme.documentPatientId, id, d.patientId, 'XDSDocumentEntry.patientId') +
    externalId(Scheme.documentUniqueId, id, d.uniqueId, 'XDSDocumentEntry.uniqueId') +
    `</rim:ExtrinsicObject>`
  );
}

export function submissionSetXml(s: SubmissionSet): string {
  const id = s.entryUUID;
  return (
    `<rim:RegistryPackage id="${esc(id)}" objectType="${ObjectType.registryPackage}"${s.availabilityStatus ? ` status="${s.availabilityStatus}"` : ''}>` +
    slot('submissionTime', [s.submissionTime]) +
    extra(s.extraSlots) +
    name(s.title) +
    s.authors.map((a) => authorXml(Scheme.submissionAuthor, id, a)).join('') +
    classification(Scheme.contentTypeCode, id, s.contentTypeCode) +
    externalId(Scheme.submissionUniqueId, id, s.uniqueId, 'XDSSubmissionSet.uniqueId') +
    externalId(Scheme.submissionSourceId, id, s.sourceId, 'XDSSubmissionSet.sourceId') +
    externalId(Scheme.submissionPatientId, id, s.patientId, 'XDSSubmissionSet.patientId') +
    `</rim:RegistryPackage>` +
    `<rim:Classification id="${localId('ss')}" objectType="${ObjectType.classification}" classifiedObject="${esc(id)}" classificationNode="${ObjectType.submissionSet}"/>`
  );
}

export function associationXml(a: Association): string {
  return `<rim:Association id="${esc(a.id)}" objectType="${ObjectType.association}" associationType="${esc(a.type)}" sourceObject="${esc(a.sourceObject)}" targetObject="${esc(a.targetObject)}">${extra(a.slots)}</rim:Association>`;
}

export function registryObjectListXml(o: RegistryObjects): string {
  return `<rim:RegistryObjectList>${o.submissionSets.map(submissionSetXml).join('')}${o.documents.map(documentEntryXml).join('')}${o.associations.map(associationXml).join('')}</rim:RegistryObjectList>`;
}

// ---- parsing (from fast-xml-parser output, namespace prefixes removed) ----

function slots(node: any): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const s of arr(node?.Slot)) out[s['@_name']] = arr(s.ValueList?.Value).map(text);
  return out;
}

function localized(node: any): string | undefined {
  const v = arr(node?.LocalizedString)[0]?.['@_value'];
  return v === undefined ? undefined : String(v);
}

function codeOf(c: any): Code {
  const s = slots(c);
  return { code: String(c['@_nodeRepresentation'] ?? ''), scheme: s.codingScheme?.[0] ?? '', display: localized(c.Name) };
}

function authorOf(c: any): Author {
  const s = slots(c);
  return { person: s.authorPerson?.[0], institutions: s.authorInstitution, roles: s.authorRole, specialties: s.authorSpecialty, telecom: s.authorTelecommunication };
}

const KNOWN_DOC_SLOTS = new Set(['creationTime', 'languageCode', 'serviceStartTime', 'serviceStopTime', 'sourcePatientId', 'sourcePatientInfo', 'legalAuthenticator', 'hash', 'size', 'repositoryUniqueId', 'urn:ihe:iti:xds:2013:referenceIdList']);

export class MetadataError extends Error {
  override name = 'MetadataError';
}

function required<T>(v: T | undefined, what: string): T {
  if (v === undefined || v === '') throw new MetadataError(`missing ${what}`);
  return v;
}

export function parseDocumentEntry(eo: any): DocumentEntry {
  const id = String(eo['@_id'] ?? '');
  const s = slots(eo);
  const cls = arr(eo.Classification);
  const byScheme = (scheme: string) => cls.filter((c) => c['@_classificationScheme'] === scheme);
  const one = (scheme: string, what: string) => {
    const c = byScheme(scheme)[0];
    if (!c) throw new MetadataError(`document ${id}: missing ${what} classification`);
    return codeOf(c);
  };
  const ext = (scheme: string) => arr(eo.ExternalIdentifier).find((e) => e['@_identificationScheme'] === scheme)?.['@_value'] as string | undefined;
  const extraSlots: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(s)) if (!KNOWN_DOC_SLOTS.has(k)) extraSlots[k] = v;
  return {
    entryUUID: id,
    lid: eo['@_lid'],
    uniqueId: required(ext(Scheme.documentUniqueId), `document ${id}: XDSDocumentEntry.uniqueId`),
    patientId: required(ext(Scheme.documentPatientId), `document ${id}: XDSDocumentEntry.patientId`),
    mimeType: required(eo['@_mimeType'], `document ${id}: mimeType`),
    availabilityStatus: eo['@_status'],
    version: eo.VersionInfo?.['@_versionName'],
    title: localized(eo.Name),
    comments: localized(eo.Description),
    creationTime: required(s.creationTime?.[0], `document ${id}: creationTime slot`),
    languageCode: required(s.languageCode?.[0], `document ${id}: languageCode slot`),
    serviceStartTime: s.serviceStartTime?.[0],
    serviceStopTime: s.serviceStopTime?.[0],
    sourcePatientId: s.sourcePatientId?.[0],
    sourcePatientInfo: s.sourcePatientInfo,
    legalAuthenticator: s.legalAuthenticator?.[0],
    hash: s.hash?.[0],
    size: s.size?.[0] !== undefined ? Number(s.size[0]) : undefined,
    repositoryUniqueId: s.repositoryUniqueId?.[0],
    referenceIdList: s['urn:ihe:iti:xds:2013:referenceIdList'],
    classCode: one(Scheme.classCode, 'classCode'),
    typeCode: one(Scheme.typeCode, 'typeCode'),
    formatCode: one(Scheme.formatCode, 'formatCode'),
    healthcareFacilityTypeCode: one(Scheme.healthcareFacilityTypeCode, 'healthcareFacilityTypeCode'),
    practiceSettingCode: one(Scheme.practiceSettingCode, 'practiceSettingCode'),
    confidentialityCodes: byScheme(Scheme.confidentialityCode).map(codeOf),
    eventCodes: byScheme(Scheme.eventCode).map(codeOf),
    authors: byScheme(Scheme.documentAuthor).map(authorOf),
    extraSlots: Object.keys(extraSlots).length ? extraSlots : undefined,
  };
}

export function parseSubmissionSet(rp: any): SubmissionSet {
  const id = String(rp['@_id'] ?? '');
  const s = slots(rp);
  const cls = arr(rp.Classification);
  const ext = (scheme: string) => arr(rp.ExternalIdentifier).find((e) => e['@_identificationScheme'] === scheme)?.['@_value'] as string | undefined;
  const ct = cls.find((c) => c['@_classificationScheme'] === Scheme.contentTypeCode);
  const extraSlots: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(s)) if (k !== 'submissionTime') extraSlots[k] = v;
  return {
    entryUUID: id,
    uniqueId: required(ext(Scheme.submissionUniqueId), `submission set ${id}: XDSSubmissionSet.uniqueId`),
    sourceId: required(ext(Scheme.submissionSourceId), `submission set ${id}: XDSSubmissionSet.sourceId`),
    patientId: required(ext(Scheme.submissionPatientId), `submission set ${id}: XDSSubmissionSet.patientId`),
    submissionTime: required(s.submissionTime?.[0], `submission set ${id}: submissionTime slot`),
    contentTypeCode: ct ? codeOf(ct) : (() => { throw new MetadataError(`submission set ${id}: missing contentTypeCode classification`); })(),
    title: localized(rp.Name),
    authors: cls.filter((c) => c['@_classificationScheme'] === Scheme.submissionAuthor).map(authorOf),
    availabilityStatus: rp['@_status'],
    extraSlots: Object.keys(extraSlots).length ? extraSlots : undefined,
  };
}

/** Reads a rim:RegistryObjectList (as in ITI-41 requests and ITI-18 LeafClass responses). */
export function parseRegistryObjectList(list: any): RegistryObjects {
  const packages = arr(list?.RegistryPackage);
  // A RegistryPackage is a submission set when classified as one (inside it, or by a sibling Classification).
  const ssIds = new Set<string>();
  for (const c of arr(list?.Classification)) if (c['@_classificationNode'] === ObjectType.submissionSet) ssIds.add(c['@_classifiedObject']);
  for (const p of packages) for (const c of arr(p.Classification)) if (c['@_classificationNode'] === ObjectType.submissionSet) ssIds.add(p['@_id']);
  return {
    documents: arr(list?.ExtrinsicObject).map(parseDocumentEntry),
    submissionSets: packages.filter((p) => ssIds.has(p['@_id']) || arr(p.ExternalIdentifier).some((e) => e['@_identificationScheme'] === Scheme.submissionUniqueId)).map(parseSubmissionSet),
    associations: arr(list?.Association).map((a) => ({
      id: String(a['@_id'] ?? ''),
      type: String(a['@_associationType'] ?? ''),
      sourceObject: String(a['@_sourceObject'] ?? ''),
      targetObject: String(a['@_targetObject'] ?? ''),
      slots: Object.keys(slots(a)).length ? slots(a) : undefined,
    })),
  };
}

export { AssociationType };

/** XDS DTM (UTC, to the second): YYYYMMDDhhmmss. */
export function xdsTime(d = new Date()): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/** `id^^^&OID&ISO`, the CX form XDS uses for patient identifiers. */
export function cx(id: string, oid: string): string {
  return `${id}^^^&${oid}&ISO`;
}

/** The DMP's patient identifier: the INS in CX form with identifier type NH (national health number). */
export function dmpPatientId(ins: { id: string; oid: string }): string {
  return `${ins.id}^^^&${ins.oid}&ISO^NH`;
}

/** Reads `id^^^&OID&ISO`, with or without an identifier type (`^NH`, `^PI`). */
export function parseCx(value: string): { id: string; oid: string } | undefined {
  const m = /^([^^]+)\^\^\^&([0-9.]+)&ISO(?:\^[A-Z]{1,5})?$/.exec(value);
  return m ? { id: m[1]!, oid: m[2]! } : undefined;
}
