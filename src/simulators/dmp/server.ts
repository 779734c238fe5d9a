import Fastify, { type FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../../common/log.js';
import { openDatabase, type Database } from '../../store/db.js';
import { MetadataError } from '../../xds/metadata.js';
import { faultXml, parseSoap, serialize, SoapError, type SoapMessage } from '../../xds/soap.js';
import {
  parseProvideAndRegister,
  parseRetrieveRequest,
  parseStoredQuery,
  parseSubmitObjects,
  queryResponseXml,
  registryResponseXml,
  retrieveResponseXml,
  type RegistryError,
} from '../../xds/transactions.js';
import { Action } from '../../xds/vocabulary.js';
import { XmlError } from '../../xds/xml.js';
import { DmpRegistry, migrateDmp, RegistryFailure, type DmpDB } from './registry.js';

export interface DmpServerOptions {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl?: string;
  repositoryUniqueId?: string;
  closedPatients?: string[];
  log: Logger;
  maxRequestBytes?: number;
}

/**
 * The DMP stand-in over HTTP: SOAP 1.2 endpoints `/registry` (ITI-18, ITI-57) and `/repository` (ITI-41, ITI-43),
 * as an XDS.b Document Registry and Repository answer them. Separate from product code: OpenDRIM talks to it only
 * through src/xds, exactly as it would talk to the national DMP.
 */
export class DmpServer {
  http!: FastifyInstance;
  registry!: DmpRegistry;
  private database!: Database;

  constructor(private readonly opts: DmpServerOptions) {}

  get url(): string {
    const a = this.http.server.address();
    const port = typeof a === 'object' && a ? a.port : this.opts.port;
    return `http://${this.opts.host}:${port}`;
  }

  async start(): Promise<this> {
    const { log } = this.opts;
    this.database = openDatabase({ databaseUrl: this.opts.databaseUrl, dataDir: this.opts.dataDir });
    const db = this.database.db as unknown as Kysely<DmpDB>;
    await migrateDmp(db, this.database.dialect);
    this.registry = new DmpRegistry(db, { repositoryUniqueId: this.opts.repositoryUniqueId ?? '1.2.250.1.213.1.1.1.99.1', closedPatients: this.opts.closedPatients });
    this.http = Fastify({ bodyLimit: this.opts.maxRequestBytes ?? 256 * 1024 * 1024, loggerInstance: log.child({ component: 'dmp-http' }, { level: 'warn' }) as any });
    this.http.removeAllContentTypeParsers();
    this.http.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    const handle = (allowed: string[]) => async (req: any, reply: any) => {
      let msg: SoapMessage;
      try {
        msg = parseSoap(String(req.headers['content-type'] ?? ''), req.body as Buffer);
      } catch (e) {
        const reason = e instanceof SoapError || e instanceof XmlError ? e.message : 'unreadable request';
        log.warn({ reason }, 'DMP stand-in: malformed SOAP request');
        return this.send(reply, 400, { action: 'http://www.w3.org/2005/08/addressing/soap/fault', bodyXml: faultXml('Sender', reason) });
      }
      if (!allowed.includes(msg.action)) {
        return this.send(reply, 400, { action: 'http://www.w3.org/2005/08/addressing/soap/fault', relatesTo: msg.messageId, bodyXml: faultXml('Sender', `action ${msg.action || '(none)'} is not served at this endpoint (expected ${allowed.join(' or ')})`) });
      }
      const respond = (bodyXml: string, attachments?: Map<string, Buffer>) => this.send(reply, 200, { action: `${msg.action}Response`, relatesTo: msg.messageId, bodyXml, attachments });
      try {
        switch (msg.action) {
          case Action.provideAndRegister: {
            const { objects, documents } = parseProvideAndRegister(msg.body, msg.attachments);
            await this.registry.provideAndRegister(objects, documents);
            log.info({ submission: objects.submissionSets[0]?.uniqueId, documents: objects.documents.map((d) => d.uniqueId) }, 'DMP stand-in: submission registered');
            return respond(registryResponseXml());
          }
          case Action.registryStoredQuery: {
            const q = parseStoredQuery(msg.body);
            const objects = await this.registry.storedQuery(q);
            const refs = [...objects.submissionSets.map((s) => s.entryUUID), ...objects.documents.map((d) => d.entryUUID)];
            return respond(q.returnType === 'ObjectRef' ? queryResponseXml(undefined, refs) : queryResponseXml(objects));
          }
          case Action.retrieveDocumentSet: {
            const { documents, errors } = await this.registry.retrieve(parseRetrieveRequest(msg.body));
            const cids = documents.map(() => `${randomUUID()}@dmp`);
            const attachments = new Map(documents.map((d, i) => [cids[i]!, d.content]));
            return respond(retrieveResponseXml(documents, errors, (i) => cids[i]!), attachments);
          }
          case Action.updateDocumentSet: {
            await this.registry.updateDocumentSet(parseSubmitObjects(msg.body));
            return respond(registryResponseXml());
          }
        }
      } catch (e) {
        let errors: RegistryError[];
        if (e instanceof RegistryFailure) errors = e.errors;
        else if (e instanceof MetadataError) errors = [{ code: msg.action === Action.registryStoredQuery ? 'XDSRegistryError' : 'XDSRegistryMetadataError', context: e.message }];
        else {
          log.error({ err: e }, 'DMP stand-in: internal error');
          errors = [{ code: msg.action === Action.provideAndRegister || msg.action === Action.retrieveDocumentSet ? 'XDSRepositoryError' : 'XDSRegistryError', context: `internal error: ${(e as Error).message}` }];
        }
        log.info({ action: msg.action, errors }, 'DMP stand-in: request refused');
        if (msg.action === Action.registryStoredQuery) return respond(queryResponseXml({ documents: [], submissionSets: [], associations: [] }, [], errors));
        if (msg.action === Action.retrieveDocumentSet) return respond(retrieveResponseXml([], errors, () => ''));
        return respond(registryResponseXml(errors));
      }
    };
    this.http.post('/registry', handle([Action.registryStoredQuery, Action.updateDocumentSet]));
    this.http.post('/repository', handle([Action.provideAndRegister, Action.retrieveDocumentSet]));
    this.http.get('/health', async () => ({ status: 'ok', service: 'DMP stand-in (IHE XDS.b registry + repository)' }));
    await this.http.listen({ host: this.opts.host, port: this.opts.port });
    log.info({ url: this.url }, 'DMP stand-in started: registry at /registry, repository at /repository');
    return this;
  }

  private send(reply: any, status: number, m: Parameters<typeof serialize>[0]) {
    const { contentType, body } = serialize(m);
    return reply.code(status).header('content-type', contentType).send(body);
  }

  async close(): Promise<void> {
    await this.http?.close();
    await this.database?.close();
  }
}
