import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from '../common/log.js';
import { clientAddress } from '../common/access.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import { peerAccessGuard, type PeerRequest } from '../auth/peer-access.js';
import type { TrustList } from '../auth/trust-list.js';
import { HttpError, UID, wadoRoutes, type WadoParams } from '../dicomweb/wado.js';
import type { Metrics } from '../ops/metrics.js';
import type { BlobStore } from '../store/blobs.js';
import type { StudyIndex } from '../store/study-index.js';
import { StudyUnavailableError, type StudyCache } from '../source/study-cache.js';
import type { Ingestor, IngestResult } from '../store/ingest.js';
import { stowRoutes } from '../dicomweb/stow.js';
import { clientMessage } from '../common/errors.js';

export interface ExchangeServerOptions {
  host: string;
  port: number;
  tls: { cert: Buffer; key: Buffer; ca: Buffer };
  /** Base URL other boxes use (…:8443); undefined: derived from the address listened on. */
  publicUrl?: string;
  trustList: TrustList;
  maxTokenLifetimeSeconds: number;
  cache: StudyCache;
  index: StudyIndex;
  blobs: BlobStore;
  audit: AuditTrail;
  metrics: Metrics;
  log: Logger;
  /**
   * QIDO-RS of a patient's studies for other boxes (their prefetch), answered from the PACS; only for the
   * patient the professional token names. Undefined: not offered.
   */
  search?: (ins: string) => Promise<Array<{ studyUid: string; date?: string; description?: string; modalities: string[] }>>;
  /** Studies other boxes may push here (STOW-RS on /dicom-web/studies, automatic routing), when configured. */
  inbound?: { from: string[]; ingestor: Ingestor; maxBytes: number; onStored: (fromDomain: string, result: IngestResult) => Promise<void>; space?: { low: boolean } };
}

type ExchangeRequest = PeerRequest & { instancesSent?: number };

/**
 * The DRIMbox-to-DRIMbox port: this box's exams as WADO-RS (RAD-107) for other DRIMboxes. Separate from the
 * node's own HTTP port so that it alone faces the inter-box network, always asks for a client certificate, and
 * answers nothing to a caller that is not a trusted box acting for an identified professional.
 */
export class ExchangeServer {
  readonly app: FastifyInstance;
  private base = '';

  constructor(private readonly opts: ExchangeServerOptions) {
    // The TLS layer asks for a client certificate but lets the request through, so that a missing, foreign or
    // untrusted certificate gets an explained and audited refusal instead of a bare handshake failure.
    this.app = Fastify({
      https: { cert: opts.tls.cert, key: opts.tls.key, ca: opts.tls.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' },
      loggerInstance: opts.log.child({}, { level: 'warn' }) as any,
      bodyLimit: 64 * 1024,
    });
  }

  /** The base URL of the WADO-RS service, as written in manifests. */
  get wadoRsBase(): string {
    return `${this.base}/dicom-web`;
  }

  get port(): number {
    const a = this.app.server.address();
    return typeof a === 'object' && a ? a.port : this.opts.port;
  }

  async listen(): Promise<this> {
    const { app, opts } = this;
    const origins = () => [new URL(this.base).origin];
    app.addHook('onSend', async (_req, reply) => {
      reply.header('X-Content-Type-Options', 'nosniff');
      reply.header('Cache-Control', 'no-store');
      reply.header('Strict-Transport-Security', 'max-age=31536000');
    });
    // The audience is only known once listening (ephemeral port, derived URL), hence a function.
    const inbound = opts.inbound;
    app.addHook(
      'onRequest',
      peerAccessGuard({
        trustList: opts.trustList,
        audience: origins,
        maxTokenLifetimeSeconds: opts.maxTokenLifetimeSeconds,
        log: opts.log,
        boxRequest: { matches: (req) => req.method === 'POST', boxAllowed: (domain) => Boolean(inbound?.from.includes(domain)), what: 'push studies (incoming.acceptFromBoxes)' },
      }),
    );
    app.addHook('onResponse', async (req, reply) => this.auditRequest(req as ExchangeRequest, reply.statusCode));
    app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
      const status = err instanceof HttpError ? err.status : err instanceof StudyUnavailableError ? 502 : (err.statusCode ?? 500);
      if (status >= 500) {
        opts.metrics.errors.inc({ component: 'exchange' });
        opts.log.error({ err, url: req.url, reqId: req.id }, 'DRIMbox exchange request failed');
      }
      reply.code(status).type('application/json').send({ error: clientMessage(status, err, req.id) });
    });
    await app.register(wadoRoutes, {
      prefix: '/dicom-web',
      provider: opts.cache,
      index: opts.index,
      blobs: opts.blobs,
      baseUrl: () => this.wadoRsBase,
      onInstanceSent: (req: FastifyRequest) => {
        const r = req as ExchangeRequest;
        r.instancesSent = (r.instancesSent ?? 0) + 1;
        opts.metrics.instancesSent.inc({ protocol: 'wado-rs-exchange' });
      },
    });
    const search = opts.search;
    if (search) {
      app.get<{ Querystring: Record<string, string> }>('/dicom-web/studies', async (req, reply) => {
        const caller = (req as ExchangeRequest).peerCaller!;
        const ins = req.query.PatientID ?? req.query['00100020'];
        if (!ins) throw new HttpError(400, 'a box may only search one patient: give PatientID (the INS)');
        if (caller.token.patient !== ins) throw new HttpError(403, `the professional token names ${caller.token.patient ? `patient ${caller.token.patient}` : 'no patient'}: a box may search only the patient its professional acts for`);
        (req as ExchangeRequest & { searchedPatient?: string }).searchedPatient = ins;
        const da = (d?: string) => (d ? d.replace(/-/g, '') : undefined);
        const rows = (await search(ins)).map((st) => ({
          '00080020': { vr: 'DA', ...(st.date ? { Value: [da(st.date)] } : {}) },
          '00080061': { vr: 'CS', Value: st.modalities },
          '00081030': { vr: 'LO', ...(st.description ? { Value: [st.description] } : {}) },
          '00081190': { vr: 'UR', Value: [`${this.wadoRsBase}/studies/${st.studyUid}`] },
          '00100020': { vr: 'LO', Value: [ins] },
          '0020000D': { vr: 'UI', Value: [st.studyUid] },
        }));
        return reply.type('application/dicom+json').send(JSON.stringify(rows));
      });
    }
    if (inbound) {
      await app.register(stowRoutes, {
        prefix: '/dicom-web',
        ingestor: inbound.ingestor,
        metrics: opts.metrics,
        log: opts.log,
        maxBytes: inbound.maxBytes,
        space: inbound.space,
        baseUrl: () => this.wadoRsBase,
        onStored: (req, result) => inbound.onStored((req as ExchangeRequest).peerBox!.box.domain, result),
      });
    }
    await app.listen({ host: opts.host, port: opts.port });
    this.base = (opts.publicUrl ?? `https://${opts.host === '0.0.0.0' || opts.host === '::' ? 'localhost' : opts.host}:${this.port}`).replace(/\/$/, '');
    return this;
  }

  /** One audit record per request: the professional, through which box, which patient and study, and the outcome. */
  private async auditRequest(req: ExchangeRequest, status: number): Promise<void> {
    const params = (req.params ?? {}) as WadoParams;
    const pushed = (req as ExchangeRequest & { auditDetail?: Record<string, unknown> }).auditDetail;
    const studyUid = params.study && UID.test(params.study) ? params.study : (pushed?.studyUid as string | undefined);
    const patientId = studyUid ? await this.opts.index.patientOfStudy(studyUid).catch(() => undefined) : (req as ExchangeRequest & { searchedPatient?: string }).searchedPatient;
    const caller = req.peerCaller;
    if (req.peerBox) {
      await this.opts.audit.record({ actorType: 'drimbox', actorId: req.peerBox.box.domain, actorAddress: clientAddress(req), action: 'exchange.store', studyUid, patientId, outcome: status < 400 ? 'success' : 'failure', detail: { status, certificateDn: req.peerBox.certificateDn, ...pushed } });
      return;
    }
    const refusal = req.peerRefusal;
    const outcome = status < 400 ? 'success' : status === 401 || status === 403 ? 'refused' : 'failure';
    await this.opts.audit.record({
      actorType: caller ? 'practitioner' : 'drimbox',
      actorId: caller ? caller.token.professional.id : (refusal?.box ?? refusal?.certificateDn ?? clientAddress(req)),
      actorAddress: clientAddress(req),
      action: req.routeOptions.url === '/dicom-web/studies' ? 'exchange.search' : /\/metadata$/.test(req.routeOptions.url ?? '') ? 'exchange.metadata' : 'exchange.retrieve',
      studyUid,
      patientId,
      outcome,
      detail: {
        route: req.routeOptions.url ?? req.url.slice(0, 200),
        status,
        series: params.series,
        instance: params.instance,
        instancesSent: req.instancesSent ?? 0,
        ...(caller
          ? { box: caller.box.domain, certificateDn: caller.certificateDn, professional: caller.token.professional, patientClaimed: caller.token.patient, tokenId: caller.token.jti }
          : { reason: refusal?.reason, certificateDn: refusal?.certificateDn }),
      },
    });
  }

  async close(): Promise<void> {
    await this.app.close();
  }
}
