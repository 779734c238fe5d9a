import http from 'node:http';
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import type { DocumentEntry, SubmissionSet } from './metadata.js';
import { faultReason, parseSoap, serialize, SoapError, type OutgoingSoap, type SoapMessage } from './soap.js';
import {
  ensureSuccess,
  findDocumentsParams,
  parseQueryResponse,
  parseRegistryResponse,
  parseRetrieveResponse,
  provideAndRegisterXml,
  retrieveRequestXml,
  storedQueryXml,
  updateMetadataXml,
  updateStatusXml,
  XdsError,
  type DocumentRequest,
  type FindDocumentsQuery,
  type ProvideAndRegister,
  type QueryResponse,
  type RetrievedDocument,
} from './transactions.js';
import { Action, StoredQuery } from './vocabulary.js';

export interface XdsEndpoints {
  /** Document Registry endpoint (ITI-18, ITI-57). */
  registryUrl: string;
  /** Document Repository endpoint (ITI-41, ITI-43). */
  repositoryUrl: string;
  /** Client certificate for mutual TLS (the DMP authenticates structures by their IGC-Santé certificate). */
  tls?: { cert?: Buffer; key?: Buffer; ca?: Buffer };
  timeoutMs?: number;
  /** Largest response accepted. */
  maxResponseBytes?: number;
}

/** Produces the WS-Security header (e.g. the DMP's VIHF SAML assertion) for a request; none by default. */
export type SecurityHeader = (action: string) => string | undefined;

/** An XDS.b Document Consumer / Document Source / Update client (ITI-18, ITI-41, ITI-43, ITI-57). */
export class XdsClient {
  constructor(
    private readonly ep: XdsEndpoints,
    private readonly security: SecurityHeader = () => undefined,
  ) {}

  async provideAndRegister(req: ProvideAndRegister): Promise<void> {
    const cids = new Map<string, string>();
    for (const id of req.documents.keys()) cids.set(id, `${randomUUID()}@opendrim`);
    const attachments = new Map<string, Buffer>();
    for (const [id, data] of req.documents) attachments.set(cids.get(id)!, data);
    const res = await this.call(this.ep.repositoryUrl, { action: Action.provideAndRegister, bodyXml: provideAndRegisterXml(req, (id) => cids.get(id)!), attachments });
    ensureSuccess(parseRegistryResponse(res.body));
  }

  async findDocuments(q: FindDocumentsQuery, returnType: 'LeafClass' | 'ObjectRef' = 'LeafClass'): Promise<QueryResponse> {
    return this.storedQuery(StoredQuery.findDocuments, findDocumentsParams(q), returnType);
  }

  async getDocuments(entryUUIDs: string[]): Promise<QueryResponse> {
    return this.storedQuery(StoredQuery.getDocuments, { $XDSDocumentEntryEntryUUID: [`(${entryUUIDs.map((u) => `'${u}'`).join(',')})`] });
  }

  async getSubmissionSetAndContents(entryUUID: string): Promise<QueryResponse> {
    return this.storedQuery(StoredQuery.getSubmissionSetAndContents, { $XDSSubmissionSetEntryUUID: [`'${entryUUID}'`] });
  }

  async storedQuery(queryId: string, params: Record<string, string[]>, returnType: 'LeafClass' | 'ObjectRef' = 'LeafClass'): Promise<QueryResponse> {
    const res = await this.call(this.ep.registryUrl, { action: Action.registryStoredQuery, bodyXml: storedQueryXml({ queryId, returnType, params }) });
    const r = parseQueryResponse(res.body);
    ensureSuccess(r);
    return r;
  }

  async retrieve(reqs: DocumentRequest[]): Promise<RetrievedDocument[]> {
    const res = await this.call(this.ep.repositoryUrl, { action: Action.retrieveDocumentSet, bodyXml: retrieveRequestXml(reqs) });
    const { response, documents } = parseRetrieveResponse(res.body, res.attachments);
    if (!documents.length) ensureSuccess(response);
    return documents;
  }

  /** ITI-57 availability status change, e.g. Approved → Deprecated to de-publish. */
  async updateStatus(ss: SubmissionSet, changes: { entryUUID: string; from: string; to: string }[]): Promise<void> {
    const res = await this.call(this.ep.registryUrl, { action: Action.updateDocumentSet, bodyXml: updateStatusXml(ss, changes) });
    ensureSuccess(parseRegistryResponse(res.body));
  }

  /** ITI-57 metadata update: new versions of entries whose content is unchanged (e.g. their confidentiality codes). */
  async updateMetadata(ss: SubmissionSet, updates: { entry: DocumentEntry; previousVersion: string }[]): Promise<void> {
    const res = await this.call(this.ep.registryUrl, { action: Action.updateDocumentSet, bodyXml: updateMetadataXml(ss, updates) });
    ensureSuccess(parseRegistryResponse(res.body));
  }

  private async call(url: string, m: Omit<OutgoingSoap, 'to'>): Promise<SoapMessage> {
    const { contentType, body } = serialize({ ...m, to: url, headerXml: this.security(m.action) });
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const max = this.ep.maxResponseBytes ?? 128 * 1024 * 1024;
    const { status, headers, data } = await new Promise<{ status: number; headers: http.IncomingHttpHeaders; data: Buffer }>((resolve, reject) => {
      const req = lib.request(
        u,
        {
          method: 'POST',
          headers: { 'content-type': contentType, 'content-length': body.length, accept: 'application/soap+xml, multipart/related' },
          timeout: this.ep.timeoutMs ?? 60_000,
          ...(u.protocol === 'https:' ? { cert: this.ep.tls?.cert, key: this.ep.tls?.key, ca: this.ep.tls?.ca, minVersion: 'TLSv1.2' as const } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > max) {
              req.destroy(new Error(`XDS response from ${u.host} larger than ${max} bytes`));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, data: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`XDS request to ${u.host} timed out`)));
      req.on('error', reject);
      req.end(body);
    });
    let msg: SoapMessage;
    try {
      msg = parseSoap(String(headers['content-type'] ?? ''), data);
    } catch (e) {
      throw new XdsError([{ code: 'XDSRegistryError', context: `HTTP ${status} from ${u.host}: unreadable SOAP answer (${(e as Error).message})` }]);
    }
    if (msg.bodyName === 'Fault') throw new SoapError(`SOAP fault from ${u.host}: ${faultReason(msg.body)}`);
    if (status >= 400) throw new XdsError([{ code: 'XDSRegistryError', context: `HTTP ${status} from ${u.host}` }]);
    return msg;
  }
}
