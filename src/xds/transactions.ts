import { randomUUID } from 'node:crypto';
import { associationXml, documentEntryXml, MetadataError, parseRegistryObjectList, registryObjectListXml, submissionSetXml, type DocumentEntry, type RegistryObjects, type SubmissionSet } from './metadata.js';
import { documentBytes } from './soap.js';
import { AssociationType, ResponseStatus, StoredQuery, type XdsErrorCode } from './vocabulary.js';
import { arr, text, xmlEscape as esc } from './xml.js';

/** Bodies of the XDS.b transactions used by a DRIMbox: ITI-41, ITI-18, ITI-43, ITI-57 (both sides). */

export interface RegistryError {
  code: XdsErrorCode | string;
  context: string;
  location?: string;
  severity?: 'Error' | 'Warning';
}

export interface RegistryResponse {
  status: string;
  errors: RegistryError[];
}

export class XdsError extends Error {
  override name = 'XdsError';
  constructor(
    readonly errors: RegistryError[],
    message = errors.map((e) => `${e.code}: ${e.context}`).join('; '),
  ) {
    super(message);
  }
}

export function registryErrorListXml(errors: RegistryError[]): string {
  if (!errors.length) return '';
  const sev = (s?: string) => `urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:${s ?? 'Error'}`;
  const highest = errors.some((e) => (e.severity ?? 'Error') === 'Error') ? 'Error' : 'Warning';
  return `<rs:RegistryErrorList highestSeverity="${sev(highest)}">${errors.map((e) => `<rs:RegistryError errorCode="${esc(e.code)}" codeContext="${esc(e.context)}" location="${esc(e.location ?? '')}" severity="${sev(e.severity)}"/>`).join('')}</rs:RegistryErrorList>`;
}

export function registryResponseXml(errors: RegistryError[] = []): string {
  const status = errors.some((e) => (e.severity ?? 'Error') === 'Error') ? ResponseStatus.failure : ResponseStatus.success;
  return `<rs:RegistryResponse status="${status}">${registryErrorListXml(errors)}</rs:RegistryResponse>`;
}

function parseErrors(node: any): RegistryError[] {
  return arr(node?.RegistryErrorList?.RegistryError).map((e: any) => ({
    code: String(e['@_errorCode'] ?? ''),
    context: String(e['@_codeContext'] ?? ''),
    location: e['@_location'] ? String(e['@_location']) : undefined,
    severity: String(e['@_severity'] ?? '').endsWith('Warning') ? 'Warning' : 'Error',
  }));
}

export function parseRegistryResponse(node: any): RegistryResponse {
  return { status: String(node?.['@_status'] ?? ''), errors: parseErrors(node) };
}

/** Throws XdsError unless the response says Success (warnings are allowed). */
export function ensureSuccess(r: RegistryResponse): void {
  if (r.status !== ResponseStatus.success) throw new XdsError(r.errors.length ? r.errors : [{ code: 'XDSRegistryError', context: `registry answered ${r.status || 'without a status'}` }]);
}

// ---- ITI-41 Provide and Register Document Set-b ----

export interface ProvideAndRegister {
  objects: RegistryObjects;
  /** Content by document entryUUID. */
  documents: Map<string, Buffer>;
}

export function provideAndRegisterXml(req: ProvideAndRegister, cidFor: (entryUUID: string) => string): string {
  return (
    `<xdsb:ProvideAndRegisterDocumentSetRequest><lcm:SubmitObjectsRequest>${registryObjectListXml(req.objects)}</lcm:SubmitObjectsRequest>` +
    [...req.documents.keys()].map((id) => `<xdsb:Document id="${esc(id)}"><xop:Include href="cid:${esc(cidFor(id))}"/></xdsb:Document>`).join('') +
    `</xdsb:ProvideAndRegisterDocumentSetRequest>`
  );
}

export function parseProvideAndRegister(body: any, attachments: Map<string, Buffer>): ProvideAndRegister {
  const sor = body?.SubmitObjectsRequest;
  if (!sor) throw new MetadataError('ProvideAndRegisterDocumentSetRequest without a SubmitObjectsRequest');
  const objects = parseRegistryObjectList(sor.RegistryObjectList);
  const documents = new Map<string, Buffer>();
  for (const d of arr(body.Document)) {
    const id = String(d['@_id'] ?? '');
    const bytes = documentBytes(d, attachments);
    if (!id || !bytes) throw new MetadataError(`xds:Document ${id || '(no id)'} has no content (missing MTOM part or base64 text)`);
    documents.set(id, bytes);
  }
  return { objects, documents };
}

// ---- ITI-18 Registry Stored Query ----

export interface FindDocumentsQuery {
  patientId: string;
  status?: string[];
  classCodes?: { code: string; scheme: string }[];
  typeCodes?: { code: string; scheme: string }[];
  formatCodes?: { code: string; scheme: string }[];
  eventCodes?: { code: string; scheme: string }[];
  creationTimeFrom?: string;
  creationTimeTo?: string;
  serviceStartTimeFrom?: string;
  serviceStartTimeTo?: string;
  serviceStopTimeFrom?: string;
  serviceStopTimeTo?: string;
}

export interface StoredQueryRequest {
  queryId: string;
  returnType: 'LeafClass' | 'ObjectRef';
  params: Record<string, string[]>;
}

const quote = (v: string) => `'${v.replace(/'/g, "''")}'`;
const list = (vs: string[]) => `(${vs.map(quote).join(',')})`;
const codes = (cs: { code: string; scheme: string }[]) => list(cs.map((c) => `${c.code}^^${c.scheme}`));

export function findDocumentsParams(q: FindDocumentsQuery): Record<string, string[]> {
  const p: Record<string, string[]> = {
    $XDSDocumentEntryPatientId: [quote(q.patientId)],
    $XDSDocumentEntryStatus: [list(q.status ?? ['urn:oasis:names:tc:ebxml-regrep:StatusType:Approved'])],
  };
  if (q.classCodes?.length) p.$XDSDocumentEntryClassCode = [codes(q.classCodes)];
  if (q.typeCodes?.length) p.$XDSDocumentEntryTypeCode = [codes(q.typeCodes)];
  if (q.formatCodes?.length) p.$XDSDocumentEntryFormatCode = [codes(q.formatCodes)];
  if (q.eventCodes?.length) p.$XDSDocumentEntryEventCodeList = [codes(q.eventCodes)];
  if (q.creationTimeFrom) p.$XDSDocumentEntryCreationTimeFrom = [q.creationTimeFrom];
  if (q.creationTimeTo) p.$XDSDocumentEntryCreationTimeTo = [q.creationTimeTo];
  if (q.serviceStartTimeFrom) p.$XDSDocumentEntryServiceStartTimeFrom = [q.serviceStartTimeFrom];
  if (q.serviceStartTimeTo) p.$XDSDocumentEntryServiceStartTimeTo = [q.serviceStartTimeTo];
  if (q.serviceStopTimeFrom) p.$XDSDocumentEntryServiceStopTimeFrom = [q.serviceStopTimeFrom];
  if (q.serviceStopTimeTo) p.$XDSDocumentEntryServiceStopTimeTo = [q.serviceStopTimeTo];
  return p;
}

export function storedQueryXml(q: StoredQueryRequest): string {
  const slots = Object.entries(q.params)
    .map(([k, vs]) => `<rim:Slot name="${esc(k)}"><rim:ValueList>${vs.map((v) => `<rim:Value>${esc(v)}</rim:Value>`).join('')}</rim:ValueList></rim:Slot>`)
    .join('');
  return `<query:AdhocQueryRequest><query:ResponseOption returnType="${q.returnType}" returnComposedObjects="true"/><rim:AdhocQuery id="${esc(q.queryId)}">${slots}</rim:AdhocQuery></query:AdhocQueryRequest>`;
}

export function parseStoredQuery(body: any): StoredQueryRequest {
  const aq = body?.AdhocQuery;
  if (!aq) throw new MetadataError('AdhocQueryRequest without an AdhocQuery');
  const params: Record<string, string[]> = {};
  for (const s of arr(aq.Slot)) params[String(s['@_name'])] = arr(s.ValueList?.Value).map(text);
  const rt = String(body.ResponseOption?.['@_returnType'] ?? 'LeafClass');
  return { queryId: String(aq['@_id'] ?? ''), returnType: rt === 'ObjectRef' ? 'ObjectRef' : 'LeafClass', params };
}

/**
 * Values of a stored-query parameter: each Value may be one quoted string or a parenthesised list of them
 * ("('a','b')"); several Values are ANDed by the caller for code lists, ORed otherwise (ITI TF-2a 3.18.4.1.2.3.5).
 */
export function queryValues(raw: string[] | undefined): string[][] {
  return (raw ?? []).map((v) => {
    const t = v.trim();
    const inner = t.startsWith('(') && t.endsWith(')') ? t.slice(1, -1) : t;
    const out: string[] = [];
    const re = /'((?:[^']|'')*)'|([^,\s][^,]*)/g;
    for (let m = re.exec(inner); m; m = re.exec(inner)) out.push(m[1] !== undefined ? m[1].replace(/''/g, "'") : m[2]!.trim());
    return out;
  });
}

export interface QueryResponse extends RegistryResponse {
  objects: RegistryObjects;
  objectRefs: string[];
}

export function queryResponseXml(objects: RegistryObjects | undefined, objectRefs: string[] = [], errors: RegistryError[] = []): string {
  const status = errors.some((e) => (e.severity ?? 'Error') === 'Error') ? ResponseStatus.failure : ResponseStatus.success;
  const inner = objects ? registryObjectListXml(objects) : `<rim:RegistryObjectList>${objectRefs.map((r) => `<rim:ObjectRef id="${esc(r)}"/>`).join('')}</rim:RegistryObjectList>`;
  return `<query:AdhocQueryResponse status="${status}">${registryErrorListXml(errors)}${inner}</query:AdhocQueryResponse>`;
}

export function parseQueryResponse(body: any): QueryResponse {
  const list = body?.RegistryObjectList;
  return {
    status: String(body?.['@_status'] ?? ''),
    errors: parseErrors(body),
    objects: parseRegistryObjectList(list ?? {}),
    objectRefs: arr(list?.ObjectRef).map((o: any) => String(o['@_id'])),
  };
}

// ---- ITI-43 Retrieve Document Set ----

export interface DocumentRequest {
  repositoryUniqueId: string;
  documentUniqueId: string;
  homeCommunityId?: string;
}

export interface RetrievedDocument extends DocumentRequest {
  mimeType: string;
  content: Buffer;
}

export function retrieveRequestXml(reqs: DocumentRequest[]): string {
  return `<xdsb:RetrieveDocumentSetRequest>${reqs
    .map((r) => `<xdsb:DocumentRequest>${r.homeCommunityId ? `<xdsb:HomeCommunityId>${esc(r.homeCommunityId)}</xdsb:HomeCommunityId>` : ''}<xdsb:RepositoryUniqueId>${esc(r.repositoryUniqueId)}</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>${esc(r.documentUniqueId)}</xdsb:DocumentUniqueId></xdsb:DocumentRequest>`)
    .join('')}</xdsb:RetrieveDocumentSetRequest>`;
}

export function parseRetrieveRequest(body: any): DocumentRequest[] {
  return arr(body?.DocumentRequest).map((d: any) => ({
    repositoryUniqueId: text(d.RepositoryUniqueId),
    documentUniqueId: text(d.DocumentUniqueId),
    homeCommunityId: text(d.HomeCommunityId) || undefined,
  }));
}

export function retrieveResponseXml(docs: RetrievedDocument[], errors: RegistryError[], cidFor: (i: number) => string): string {
  let status: string = ResponseStatus.success;
  if (errors.length && docs.length) status = ResponseStatus.partialSuccess;
  else if (errors.length) status = ResponseStatus.failure;
  return (
    `<xdsb:RetrieveDocumentSetResponse><rs:RegistryResponse status="${status}">${registryErrorListXml(errors)}</rs:RegistryResponse>` +
    docs
      .map(
        (d, i) =>
          `<xdsb:DocumentResponse>${d.homeCommunityId ? `<xdsb:HomeCommunityId>${esc(d.homeCommunityId)}</xdsb:HomeCommunityId>` : ''}<xdsb:RepositoryUniqueId>${esc(d.repositoryUniqueId)}</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>${esc(d.documentUniqueId)}</xdsb:DocumentUniqueId><xdsb:mimeType>${esc(d.mimeType)}</xdsb:mimeType><xdsb:Document><xop:Include href="cid:${esc(cidFor(i))}"/></xdsb:Document></xdsb:DocumentResponse>`,
      )
      .join('') +
    `</xdsb:RetrieveDocumentSetResponse>`
  );
}

export function parseRetrieveResponse(body: any, attachments: Map<string, Buffer>): { response: RegistryResponse; documents: RetrievedDocument[] } {
  const response = parseRegistryResponse(body?.RegistryResponse);
  const documents = arr(body?.DocumentResponse).map((d: any) => {
    const content = documentBytes(arr(d.Document)[0], attachments);
    if (!content) throw new MetadataError(`DocumentResponse for ${text(d.DocumentUniqueId)} has no content`);
    return { repositoryUniqueId: text(d.RepositoryUniqueId), documentUniqueId: text(d.DocumentUniqueId), homeCommunityId: text(d.HomeCommunityId) || undefined, mimeType: text(d.mimeType), content };
  });
  return { response, documents };
}

// ---- ITI-57 Update Document Set (availability status change only) ----

export function updateStatusXml(ss: SubmissionSet, changes: { entryUUID: string; from: string; to: string }[]): string {
  const assocs = changes.map((c) =>
    associationXml({
      id: `urn:uuid:${randomUUID()}`,
      type: AssociationType.updateAvailabilityStatus,
      sourceObject: ss.entryUUID,
      targetObject: c.entryUUID,
      slots: { OriginalStatus: [c.from], NewStatus: [c.to] },
    }),
  );
  return `<lcm:SubmitObjectsRequest><rim:RegistryObjectList>${submissionSetXml(ss)}${assocs.join('')}</rim:RegistryObjectList></lcm:SubmitObjectsRequest>`;
}

/**
 * ITI-57 metadata update (ITI TF-2b 3.57.4.1.3.3.1): a new version of each DocumentEntry (same logical id and
 * uniqueId), a member of the submission set through a HasMember association naming the version it follows.
 */
export function updateMetadataXml(ss: SubmissionSet, updates: { entry: DocumentEntry; previousVersion: string }[]): string {
  const entries = updates.map((u) => documentEntryXml(u.entry)).join('');
  const assocs = updates.map((u) =>
    associationXml({ id: `urn:uuid:${randomUUID()}`, type: AssociationType.hasMember, sourceObject: ss.entryUUID, targetObject: u.entry.entryUUID, slots: { SubmissionSetStatus: ['Original'], PreviousVersion: [u.previousVersion] } }),
  );
  return `<lcm:SubmitObjectsRequest><rim:RegistryObjectList>${submissionSetXml(ss)}${entries}${assocs.join('')}</rim:RegistryObjectList></lcm:SubmitObjectsRequest>`;
}

export function parseSubmitObjects(body: any): RegistryObjects {
  return parseRegistryObjectList(body?.RegistryObjectList);
}

export { StoredQuery };
