import { mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { addCidr, auditCheckpointFiles, ConfigError, tlsMaterial, type Config } from '../config/config.js';
import { AuditCheckpoints } from '../audit/checkpoints.js';
import { createLogger, type Logger } from '../common/log.js';
import { DicomServer } from '../dicom/server.js';
import type { Database } from '../store/db.js';
import type { FsBlobStore } from '../store/blobs.js';
import type { StudyIndex } from '../store/study-index.js';
import type { Ingestor } from '../store/ingest.js';
import { openStore } from '../store/open-store.js';
import { recoverTempFiles } from '../store/recover.js';
import { Metrics } from '../ops/metrics.js';
import { StorageSpace } from '../store/space.js';
import { opsRoutes } from '../ops/routes.js';
import { dicomwebRoutes } from '../dicomweb/routes.js';
import { dimseHandlers } from './dimse-service.js';
import { AuditTrail } from '../audit/audit-trail.js';
import { auditRoutes } from '../audit/routes.js';
import { AtnaExporter } from '../audit/atna.js';
import { MllpServer } from '../hl7/mllp.js';
import { SenderList } from '../hl7/senders.js';
import type { Hl7Message } from '../hl7/message.js';
import { XdsClient } from '../xds/client.js';
import { PacsGateway } from '../source/pacs.js';
import { ReportPublisher } from '../source/publisher.js';
import { rejectionNoteListener, sourceHl7Handler } from '../source/triggers.js';
import { publicationApi } from '../source/routes.js';
import { remoteFor } from './peers.js';
import { TrustList } from '../auth/trust-list.js';
import { StudyCache } from '../source/study-cache.js';
import { ExchangeServer } from './exchange-server.js';
import { SourceBoxRetriever } from '../consumer/source-box.js';
import { Bandwidth } from '../common/bandwidth.js';
import { SessionStore } from '../auth/sessions.js';
import { PscLogin } from '../auth/psc-login.js';
import { DmpExams } from '../consumer/dmp-exams.js';
import { RemoteExamCache } from '../consumer/remote-exam-cache.js';
import { webRoutes } from '../web/plugin.js';
import { PacsImports } from '../consumer/pacs-import.js';
import { Prefetcher } from '../prefetch/prefetcher.js';
import { prefetchHl7Handler } from '../prefetch/triggers.js';
import { adtHl7Handler } from '../identity/adt.js';
import { WorklistPoller } from '../prefetch/worklist-poller.js';
import { readWorklistItem, worklistQuery, type WorklistItem } from '../dicom/worklist.js';
import { findWorklist } from '../dicom/scu.js';
import { LocalIdentities } from '../identity/local-identities.js';
import { storeInstances } from '../dicom/scu.js';
import { DicomwebClient } from '../dicomweb/client.js';
import { StudyWatch } from '../routing/study-watch.js';
import { RouteOutbox } from '../routing/outbox.js';
import { Router } from '../routing/router.js';
import { routingApi } from '../routing/routes.js';
import { routingHl7Handler } from '../routing/triggers.js';
import { MediaImport } from '../media/media-import.js';
import { mediaApi } from '../media/routes.js';
import { ShareLinks } from '../share/share-links.js';
import { shareRoutes } from '../share/routes.js';
import { staticAssets } from '../web/static-routes.js';
import type { InstanceProvider } from '../dicomweb/wado.js';
import { DicomDestination, OpendrimDestination, type RouteDestination } from '../routing/destinations.js';
import { IncomingStudies } from '../routing/incoming-studies.js';
import { PatientDirectory } from '../identity/patient-directory.js';
import { IdentityReconciler } from '../identity/reconciler.js';
import { ReconciliationQueue } from '../identity/reconciliation-queue.js';
import { fromPersonName } from '../identity/demographics.js';
import type { OutboundInstance } from '../dicom/scu.js';

export const VERSION = '0.1.0';

/**
 * One OpenDRIM node: the index and storage, the DICOM service and the HTTP service (DICOMweb, operations).
 * Stateless apart from its database and storage, so several nodes can share a PostgreSQL and a bucket.
 */
export class OpenDrimNode {
  readonly log: Logger;
  readonly metrics = new Metrics();
  database!: Database;
  index!: StudyIndex;
  blobs!: FsBlobStore;
  ingestor!: Ingestor;
  audit!: AuditTrail;
  atna: AtnaExporter | undefined;
  dicom!: DicomServer;
  http!: FastifyInstance;
  hl7: MllpServer | undefined;
  publisher: ReportPublisher | undefined;
  /** The DRIMbox-to-DRIMbox port and what it serves from, when `exchange` is configured. */
  exchange: ExchangeServer | undefined;
  studyCache: StudyCache | undefined;
  trustList: TrustList | undefined;
  /** Fetches exams from other DRIMboxes (consumer side), when `exchange` is configured. */
  sourceBoxes: SourceBoxRetriever | undefined;
  private trustListTimer: NodeJS.Timeout | undefined;
  sessions: SessionStore | undefined;
  /** Imports of remote exams into the local PACS, when consumer.import is configured. */
  imports: PacsImports | undefined;
  /** Local identities by INS (import decisions, local PACS, HL7 schedule and ADT), when consumer.import is configured. */
  identities: LocalIdentities | undefined;
  /** Prefetch of priors from the RIS schedule, when `prefetch` is configured. */
  prefetcher: Prefetcher | undefined;
  /** The worklist read for the schedule, when prefetch.worklist is configured. */
  worklist: WorklistPoller | undefined;
  /** Automatic routing to other institutions, when `routing` has rules. */
  router: Router | undefined;
  private routingPacs: PacsGateway | undefined;
  outbox: RouteOutbox | undefined;
  /** Studies from other institutions entering the local PACS through reconciliation, when `incoming` is set. */
  incoming: IncomingStudies | undefined;
  reconciliation: ReconciliationQueue | undefined;
  /** Share links (instead of CDs), when `share` is configured. */
  shareLinks: ShareLinks | undefined;
  /** Import of patients' CDs and archives, when `incoming` is set. */
  media: MediaImport | undefined;
  directory: PatientDirectory | undefined;
  /** Gauges refreshed from the database before each /metrics scrape. */
  private readonly collectors: Array<() => Promise<void>> = [];
  private sessionSweep: NodeJS.Timeout | undefined;
  private tidyTimer: NodeJS.Timeout | undefined;
  private shuttingDown = false;
  /** Who this node is across restarts (host and data directory): jobs it held when stopped are its to take back. */
  get nodeId(): string {
    return `${os.hostname()}:${path.resolve(this.config.dataDir)}`;
  }
  /** Signed checkpoints of the audit trail, written outside the database. */
  checkpoints: AuditCheckpoints | undefined;
  /** Free space of the storage file system, watched while the node runs. */
  space: StorageSpace | undefined;

  constructor(
    readonly config: Config,
    log?: Logger,
  ) {
    this.log = log ?? createLogger(config.logLevel);
  }

  get httpPort(): number {
    const a = this.http.server.address();
    return typeof a === 'object' && a ? a.port : this.config.httpPort;
  }

  get hl7Port(): number | undefined {
    return this.hl7?.port;
  }

  get dicomPort(): number {
    return this.dicom.port;
  }

  async start(): Promise<this> {
    try {
      return await this.startAll();
    } catch (e) {
      // Whatever was started (listeners, database, timers) is stopped before the error goes up: a node that
      // cannot start exits cleanly, saying why.
      this.log.error({ err: e }, 'OpenDRIM node could not start');
      await this.close(1000).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Leftovers of interrupted receives in the temporary directory: whole, synced instances are recovered (they
   * were acknowledged), the rest (cut files, spare empty files) removed once an hour old.
   */
  private async tidyTemporaryFiles(): Promise<void> {
    const { recovered } = await recoverTempFiles(this.blobs, this.ingestor, this.log);
    if (recovered) this.log.warn({ recovered }, 'instances recovered from the temporary directory');
    const swept = await this.blobs.sweepTemp();
    if (swept) this.log.info({ swept }, 'removed temporary files left by an interrupted receive');
  }

  private async startAll(): Promise<this> {
    const { config, log, metrics } = this;
    const store = await openStore(config, log);
    ({ database: this.database, index: this.index, blobs: this.blobs, ingestor: this.ingestor } = store);
    this.space = new StorageSpace(path.join(config.dataDir, 'storage'), config.storage.minFreeMegabytes * 1048576, log.child({ component: 'storage' }));
    await this.space.start();
    await this.tidyTemporaryFiles();
    // Again while the node runs: a node that is never restarted must not keep a crash's leftovers either.
    this.tidyTimer = setInterval(() => void this.tidyTemporaryFiles().catch((e) => log.error({ err: e }, 'temporary files could not be tidied')), 10 * 60_000);
    this.tidyTimer.unref();
    this.audit = new AuditTrail(this.database.db, this.database.dialect, log.child({ component: 'audit' }));
    const audit = this.audit;
    this.collectors.unshift(async () => void metrics.auditBacklog.set(audit.backlogSize));
    this.checkpoints = new AuditCheckpoints({ db: this.database.db, trail: this.audit, ...auditCheckpointFiles(config), log: log.child({ component: 'audit' }), everyMs: config.audit.checkpoints.everyMinutes * 60_000 });
    const syslog = config.audit.syslog;
    if (syslog) {
      const m = tlsMaterial(config);
      this.atna = new AtnaExporter(
        { host: syslog.host, port: syslog.port, tls: syslog.tls && m ? { cert: m.cert, key: m.key, ca: m.ca, rejectUnauthorized: true, minVersion: 'TLSv1.2' } : undefined },
        { aeTitle: config.aeTitle, host: config.publicUrl ? new URL(config.publicUrl).hostname : os.hostname() },
        log.child({ component: 'atna' }),
      );
      const exporter = this.atna;
      this.audit.onRecorded((r) => exporter.export(r));
    }

    const tlsFiles = tlsMaterial(config);
    const tlsServerOptions = tlsFiles ? { cert: tlsFiles.cert, key: tlsFiles.key, ca: tlsFiles.ca, requestCert: tlsFiles.requireClientCert, rejectUnauthorized: tlsFiles.requireClientCert, minVersion: 'TLSv1.2' as const } : undefined;
    this.dicom = new DicomServer({
      tls: tlsServerOptions ? { port: config.dicomTlsPort, options: tlsServerOptions } : undefined,
      aeTitle: config.aeTitle,
      host: config.bind,
      port: config.dicomPort,
      maxPduLength: config.dicom.maxPduLength,
      maxAssociations: config.dicom.maxAssociations,
      idleTimeoutMs: config.dicom.idleTimeoutMs,
      handlers: dimseHandlers({ config, index: this.index, ingestor: this.ingestor, blobs: this.blobs, metrics, log, audit: this.audit, space: this.space }),
      log: log.child({ component: 'dimse' }),
    });

    // Fastify's own per-request logs stay at warn; OpenDRIM's routes log what matters through `log`.
    this.http = Fastify({ ...(tlsServerOptions ? { https: tlsServerOptions } : {}), loggerInstance: log.child({ component: 'http' }, { level: 'warn' }) as any, bodyLimit: 1024 * 1024, forceCloseConnections: false });
    // Patient data must not be cached by browsers or proxies, sniffed into another type, or framed.
    this.http.addHook('onSend', async (req, reply) => {
      reply.header('X-Content-Type-Options', 'nosniff');
      reply.header('Referrer-Policy', 'no-referrer');
      reply.header('X-Frame-Options', 'DENY');
      if (tlsServerOptions) reply.header('Strict-Transport-Security', 'max-age=31536000');
      if (!req.url.startsWith('/metrics') && !req.url.startsWith('/health')) {
        reply.header('Cache-Control', 'no-store');
        // A response that sandboxed itself (a report body) keeps its policy.
        if (!String(reply.getHeader('Content-Security-Policy') ?? '').includes('sandbox')) reply.header('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'");
      }
    });
    this.http.addHook('onResponse', async (req, reply) => {
      metrics.httpLatency.observe({ route: req.routeOptions.url ?? 'unknown', method: req.method, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
    });
    await this.http.register(opsRoutes, { index: this.index, blobs: this.blobs, space: this.space, metrics, isShuttingDown: () => this.shuttingDown, version: VERSION, collectors: this.collectors });
    await this.http.register(dicomwebRoutes, { prefix: '/dicom-web', config, index: this.index, blobs: this.blobs, ingestor: this.ingestor, metrics, log, audit: this.audit, space: this.space });
    await this.http.register(auditRoutes, { prefix: '/api/audit', audit: this.audit, config, log });

    if (config.incoming) this.prepareIncoming(config.incoming);
    if (config.exchange) await this.startExchange(config.exchange, tlsFiles!);
    // Before the web application, which shows administrators the publication queue.
    if (config.source) {
      this.publisher = this.startSource(config.source, tlsFiles);
      await this.http.register(publicationApi, { prefix: '/api/publications', queue: this.publisher.queue, config, log: log.child({ component: 'source' }) });
    }
    if (config.routing) this.startRouting(config.routing, tlsFiles);
    if (config.consumer) await this.startConsumer(config.consumer, tlsFiles);
    if (config.consumer || config.share) await this.http.register(staticAssets);
    if (config.share) await this.startShare(config.share, tlsFiles);
    if (this.media) await this.http.register(mediaApi, { prefix: '/api/media', media: this.media, workDir: path.join(config.dataDir, 'tmp'), config, log: log.child({ component: 'media' }) });
    if (config.routing || config.incoming) await this.http.register(routingApi, { prefix: '/api/routing', outbox: this.outbox, watch: new StudyWatch(this.database.db), config, log: log.child({ component: 'routing' }) });
    await listening('DICOM', 'dicomPort (OPENDRIM_DICOM_PORT)', () => this.dicom.listen());
    await listening('HTTP', 'httpPort (OPENDRIM_HTTP_PORT)', () => this.http.listen({ port: config.httpPort, host: config.bind }));
    this.publisher?.queue.start();
    this.checkpoints?.start();
    if (config.hl7.enabled) {
      const handlers = [
        ...(this.publisher ? [sourceHl7Handler(this.publisher, log.child({ component: 'source' }))] : []),
        ...(this.prefetcher ? [prefetchHl7Handler(this.prefetcher, log.child({ component: 'prefetch' }))] : []),
        ...(this.router ? [routingHl7Handler(this.router, this.routingPacs, this.audit, log.child({ component: 'routing' }), (config.routing?.rules ?? []).some((r) => r.trigger === 'hl7'))] : []),
        ...(this.identities ? [adtHl7Handler(this.identities, this.audit, log.child({ component: 'identity' }), this.directory)] : []),
      ];
      const senders = new SenderList(config.hl7.senders, addCidr);
      const hl7Tls = config.hl7.tls;
      if (hl7Tls && !tlsFiles) throw new ConfigError('invalid configuration: hl7.tls needs tls.cert and tls.key');
      this.hl7 = new MllpServer({
        host: config.hl7.bind ?? config.bind,
        port: config.hl7.port,
        maxMessageBytes: config.hl7.maxMessageBytes,
        application: config.hl7.application,
        facility: config.hl7.facility,
        log: log.child({ component: 'hl7' }),
        tls: hl7Tls ? { cert: tlsFiles!.cert, key: tlsFiles!.key, ca: tlsFiles!.ca, requestCert: hl7Tls.mutual, rejectUnauthorized: hl7Tls.mutual, minVersion: 'TLSv1.2' } : undefined,
        handler: async (msg: Hl7Message, ctx) => {
          // Only declared senders are acted on: a forged report, withdrawal or merge from anyone else is refused.
          const verdict = senders.check(msg, ctx.remoteAddress);
          if (!verdict.allowed) {
            log.warn({ remote: ctx.remoteAddress, type: msg.type, controlId: msg.controlId, reason: verdict.reason }, 'HL7 message refused: not from a declared sender');
            await this.audit.record({ actorType: 'system', actorId: `${msg.msh.get(3, 1) || '?'}@${msg.msh.get(4, 1) || '?'}`, actorAddress: ctx.remoteAddress, action: 'hl7.refused', outcome: 'refused', detail: { type: msg.type, controlId: msg.controlId, reason: verdict.reason } });
            return { code: 'AR', errors: [{ code: '207', text: `not accepted: ${verdict.reason} (hl7.senders)`, location: 'MSH-3' }] };
          }
          // Several functions may act on one message (an OMI^O23 refreshes a published manifest and schedules a
          // prefetch): each handler that takes it runs, and the ACK is the worst of their answers.
          const replies = [];
          for (const h of handlers) {
            const reply = await h(msg, ctx);
            if (reply) replies.push(reply);
          }
          if (replies.length) {
            const rank = { AA: 0, AE: 1, AR: 2 } as const;
            const worst = replies.reduce((a, b) => (rank[b.code] > rank[a.code] ? b : a));
            return { code: worst.code, errors: replies.flatMap((r) => r.errors ?? []) };
          }
          if (/^SIU\^S1[2-5]$/.test(msg.type)) return { code: 'AE', errors: [{ code: '207', text: `${msg.type} received but prefetch is not configured on this node (prefetch section)` }] };
          if (/^(ORU\^R01|MDM\^T|OMI\^O23)/.test(msg.type)) return { code: 'AE', errors: [{ code: '207', text: `${msg.type} received but the source function is not configured on this node (source section)` }] };
          return { code: 'AR', errors: [{ code: '200', text: `message type ${msg.type} is not handled by this node`, location: 'MSH-9' }] };
        },
      });
      await listening('HL7 (MLLP)', 'hl7.port', () => this.hl7!.listen());
    }
    log.info({ aeTitle: config.aeTitle, hl7Port: this.hl7Port, exchangePort: this.exchange?.port, source: Boolean(this.publisher), dicomPort: this.dicomPort, dicomTlsPort: this.dicom.tlsPort, https: Boolean(tlsServerOptions), httpPort: this.httpPort, bind: config.bind, database: this.database.dialect, dataDir: config.dataDir }, 'OpenDRIM node started');
    return this;
  }

  /** The source function: reports from the RIS published to the DMP with a manifest of the exam in the local PACS. */
  private startSource(source: NonNullable<Config['source']>, tlsFiles: ReturnType<typeof tlsMaterial>): ReportPublisher {
    const { config, log } = this;
    const pacsPeer = config.peers.find((p) => p.aeTitle === source.pacs)!;
    // The HTTP port is known only once listening: the base is read when a manifest is written.
    const base = () => config.publicUrl ?? `${tlsFiles ? 'https' : 'http'}://${config.bind === '0.0.0.0' ? os.hostname() : config.bind}:${this.httpPort}`;
    const exchange = this.exchange;
    const publisher = new ReportPublisher({
      db: this.database.db,
      pacs: new PacsGateway(remoteFor(config, pacsPeer), config.aeTitle),
      xds: new XdsClient({ registryUrl: source.dmp.registryUrl, repositoryUrl: source.dmp.repositoryUrl, tls: tlsFiles ? { cert: tlsFiles.cert, key: tlsFiles.key, ca: tlsFiles.ca } : undefined }),
      audit: this.audit,
      log: log.child({ component: 'source' }),
      settings: {
        retrieveAeTitle: config.aeTitle,
        retrieveLocationUid: source.retrieveLocationUid,
        // Other boxes fetch the images from the exchange port; without one, from the node's own DICOMweb.
        get wadoRsBase() {
          return exchange?.wadoRsBase ?? `${base().replace(/\/$/, '')}/dicom-web`;
        },
        viewerUrlTemplate: source.viewerUrlTemplate,
        sourceOid: source.sourceOid,
        organisation: source.organisation,
        healthcareFacilityTypeCode: source.healthcareFacilityTypeCode,
        practiceSettingCode: source.practiceSettingCode,
        contentTypeCode: source.contentTypeCode,
        device: { name: 'OpenDRIM', given: 'DRIMbox', authority: '1.2.250.1.71.4.2.1', ...source.device, id: source.device?.id ?? source.sourceOid },
      },
      queue: { baseDelayMs: source.retry.firstDelaySeconds * 1000, maxDelayMs: source.retry.maxDelaySeconds * 1000, giveUpAfterMs: source.retry.giveUpAfterHours * 3600_000 },
      onOutcome: (outcome) => this.metrics.publications.inc({ outcome }),
      nodeId: this.nodeId,
    });
    this.ingestor.onStored(rejectionNoteListener(publisher, log.child({ component: 'source' })));
    this.collectors.push(async () => {
      const counts = await publisher.queue.counts();
      this.metrics.publicationQueue.reset();
      for (const [status, n] of Object.entries(counts)) this.metrics.publicationQueue.set({ status }, n);
    });
    return publisher;
  }

  /**
   * The exchange port: this box's exams for trusted DRIMboxes, fetched on demand from the local PACS into a
   * cache; and the identity this box uses to fetch exams from others.
   */
  private async startExchange(exchange: NonNullable<Config['exchange']>, tls: NonNullable<ReturnType<typeof tlsMaterial>>): Promise<void> {
    const { config, log } = this;
    const xlog = log.child({ component: 'exchange' });
    this.trustList = new TrustList(exchange.trustList.file, readFileSync(exchange.trustList.authority, 'utf8'), xlog);
    const loaded = await this.trustList.reload();
    // Starting without a valid list is allowed (every box is refused until one is installed), but said loudly.
    if (!loaded.ok) xlog.error({ error: loaded.error }, 'no valid trust list: every DRIMbox will be refused until one is installed');
    this.trustListTimer = setInterval(() => void this.trustList!.reload(), exchange.trustList.reloadMinutes * 60_000);
    this.trustListTimer.unref();
    const pacsAe = exchange.pacs ?? config.source?.pacs;
    const pacsPeer = pacsAe ? config.peers.find((p) => p.aeTitle === pacsAe) : undefined;
    this.studyCache = new StudyCache({
      db: this.database.db,
      index: this.index,
      ingestor: this.ingestor,
      blobs: this.blobs,
      pacs: pacsPeer ? new PacsGateway(remoteFor(config, pacsPeer), config.aeTitle) : undefined,
      retrieve: exchange.pacsRetrieve,
      aeTitle: config.aeTitle,
      limits: { maxBytes: exchange.cache.maxGigabytes * 1024 ** 3, maxAgeMs: exchange.cache.maxAgeHours * 3600_000, minResidencyMs: exchange.cache.minResidencyMinutes * 60_000 },
      log: xlog,
      onFetched: (n) => this.metrics.exchangePacsInstances.inc(n),
    });
    this.studyCache.start(exchange.cache.sweepMinutes * 60_000);
    if (!tls.ca) throw new Error('exchange needs tls.ca');
    this.exchange = await new ExchangeServer({
      host: config.bind,
      port: exchange.port,
      tls: { cert: tls.cert, key: tls.key, ca: tls.ca },
      publicUrl: exchange.publicUrl,
      trustList: this.trustList,
      maxTokenLifetimeSeconds: exchange.maxTokenLifetimeSeconds,
      cache: this.studyCache,
      index: this.index,
      blobs: this.blobs,
      audit: this.audit,
      metrics: this.metrics,
      log: xlog,
      search: pacsPeer
        ? async (ins) => {
            // The patient's studies in the PACS: under the INS in Other Patient IDs, or with the INS as Patient ID.
            const gw = new PacsGateway(remoteFor(config, pacsPeer), config.aeTitle);
            const seen = new Map<string, Awaited<ReturnType<PacsGateway['studiesOfPatient']>>[number]>();
            for (const p of [...(await gw.patientIdsByOtherId(ins)), { patientId: ins, issuer: '' }]) for (const st of await gw.studiesOfPatient(p.patientId, p.issuer)) seen.set(st.studyUid, st);
            return [...seen.values()];
          }
        : undefined,
      inbound: this.incoming && config.incoming!.acceptFromBoxes.length
        ? {
            from: config.incoming!.acceptFromBoxes,
            ingestor: this.ingestor,
            maxBytes: config.dicomweb.maxStowBytes,
            space: this.space,
            onStored: (domain, result) => this.incoming!.arrived(result.studyUid, `box:${domain}`),
          }
        : undefined,
    });
    await listening('DRIMbox exchange', 'exchange.port', () => this.exchange!.listen());
    const caps = new Map((config.consumer?.sources ?? []).filter((s) => s.maxMbps).map((s) => [new URL(s.origin).origin, Bandwidth.megabits(s.maxMbps!)]));
    this.sourceBoxes = new SourceBoxRetriever({ identity: { domain: exchange.domain, tls: { cert: tls.cert, key: tls.key, ca: tls.ca } }, ingestor: this.ingestor, audit: this.audit, log: log.child({ component: 'consumer' }), bandwidthOf: (origin) => caps.get(origin) });
  }

  /** The local PACS as a gateway, by AE title among the peers. */
  private pacsGateway(aeTitle: string): PacsGateway {
    const peer = this.config.peers.find((p) => p.aeTitle === aeTitle)!;
    return new PacsGateway(remoteFor(this.config, peer), this.config.aeTitle);
  }

  /** Stores files into a PACS peer the way the configuration says (C-STORE, or STOW-RS when asked). */
  private pacsSender(aeTitle: string, method: 'C-STORE' | 'STOW-RS' = 'C-STORE') {
    const peer = this.config.peers.find((p) => p.aeTitle === aeTitle)!;
    return async (files: OutboundInstance[]) => {
      if (method === 'STOW-RS') {
        const r = await new DicomwebClient(peer.dicomweb!).store(files.map((f) => f.bytes ?? f.path));
        return { completed: r.stored, failed: r.failed };
      }
      return storeInstances(remoteFor(this.config, peer), this.config.aeTitle, files);
    };
  }

  /**
   * Studies other institutions push here: each patient reconciled with the local identity domain (ADT
   * directory, the local PACS, earlier decisions) before the study is stored into the local PACS.
   */
  private prepareIncoming(inbound: NonNullable<Config['incoming']>): void {
    const { config, log } = this;
    const gateway = this.pacsGateway(inbound.pacs);
    const identities = new LocalIdentities(this.database.db, inbound.issuer, (ins) => gateway.patientIdsByOtherId(ins));
    this.identities ??= identities;
    this.directory = new PatientDirectory(this.database.db, inbound.issuer);
    const reconciler = new IdentityReconciler({
      directory: this.directory,
      identities,
      pacsBornOn: async (birthDate) =>
        (await gateway.patientsBornOn(birthDate))
          .filter((p) => !p.issuer || p.issuer === inbound.issuer)
          .map((p) => {
            const n = fromPersonName(p.name);
            const birthName = fromPersonName(p.birthName).family;
            return { localId: p.patientId, issuer: inbound.issuer, source: 'pacs', demographics: { birthName: birthName || n.family, usedName: birthName ? n.family : undefined, givenNames: n.given, birthDate, sex: p.sex || undefined } };
          }),
    });
    this.reconciliation = new ReconciliationQueue(this.database.db, this.directory, inbound.newIdPrefix);
    const send = this.pacsSender(inbound.pacs);
    this.incoming = new IncomingStudies({
      watch: new StudyWatch(this.database.db),
      reconciler,
      queue: this.reconciliation,
      index: this.index,
      blobs: this.blobs,
      pacs: { send, countInstances: (studyUid, patientId) => gateway.countInstances(studyUid, patientId) },
      issuer: inbound.issuer,
      workDir: path.join(config.dataDir, 'tmp'),
      stableMs: inbound.stableSeconds * 1000,
      audit: this.audit,
      log: log.child({ component: 'incoming' }),
    });
    this.incoming.start();
    mkdirSync(path.join(config.dataDir, 'tmp'), { recursive: true });
    this.media = new MediaImport({ ingestor: this.ingestor, incoming: this.incoming, workDir: path.join(config.dataDir, 'tmp'), limits: inbound.media, audit: this.audit, log: log.child({ component: 'media' }) });
  }

  /** Share links for patients and correspondents; exams from the store, else from the PACS on demand. */
  private async startShare(share: NonNullable<Config['share']>, tlsFiles: ReturnType<typeof tlsMaterial>): Promise<void> {
    const { config, log } = this;
    const index = this.index;
    const provider: InstanceProvider =
      this.studyCache && (!share.pacs || share.pacs === (config.exchange?.pacs ?? config.source?.pacs))
        ? this.studyCache
        : share.pacs
          ? new StudyCache({ db: this.database.db, index, ingestor: this.ingestor, blobs: this.blobs, pacs: this.pacsGateway(share.pacs), retrieve: 'C-GET', aeTitle: config.aeTitle, limits: { maxBytes: 50 * 1024 ** 3, maxAgeMs: 7 * 86400_000, minResidencyMs: 3600_000 }, log: log.child({ component: 'share' }) })
          : { instances: (t) => (async function* () { yield* await index.listInstances(t); })(), prepare: async () => undefined };
    this.shareLinks = new ShareLinks(this.database.db, { maxHours: share.maxHours, codeAttempts: share.codeAttempts });
    await this.http.register(shareRoutes, {
      links: this.shareLinks,
      provider,
      index,
      blobs: this.blobs,
      audit: this.audit,
      config,
      log: log.child({ component: 'share' }),
      publicBase: () => (config.publicUrl ?? `${tlsFiles ? 'https' : 'http'}://${config.bind === '0.0.0.0' ? os.hostname() : config.bind}:${this.httpPort}`).replace(/\/$/, ''),
    });
  }

  /** Rule-based sending of stable studies to other institutions, through the durable outbox. */
  private startRouting(routing: NonNullable<Config['routing']>, tlsFiles: ReturnType<typeof tlsMaterial>): void {
    const { config, log } = this;
    if (!routing.rules.length) return;
    const rlog = log.child({ component: 'routing' });
    const destinations = new Map<string, RouteDestination>();
    for (const d of routing.destinations) {
      if (d.type === 'opendrim') destinations.set(d.name, new OpendrimDestination({ name: d.name, url: d.url, tls: { cert: tlsFiles!.cert, key: tlsFiles!.key, ca: tlsFiles!.ca }, gzip: d.gzip, parallel: d.parallel, batch: d.batch }));
      else destinations.set(d.name, new DicomDestination({ name: d.name, remote: remoteFor(config, config.peers.find((p) => p.aeTitle === d.peer)!), callingAe: config.aeTitle }));
    }
    const watch = routing.watch;
    const gateway = routing.pacs ? this.pacsGateway(routing.pacs) : undefined;
    this.routingPacs = gateway;
    // Studies watched in the PACS are brought into the local cache to be sent (the exchange's cache when the
    // same PACS serves both, so a study asked for by a box and routed is fetched once).
    const cache =
      this.studyCache ??
      (gateway
        ? new StudyCache({ db: this.database.db, index: this.index, ingestor: this.ingestor, blobs: this.blobs, pacs: gateway, retrieve: 'C-GET', aeTitle: config.aeTitle, limits: { maxBytes: 50 * 1024 ** 3, maxAgeMs: 7 * 86400_000, minResidencyMs: 3600_000 }, log: rlog })
        : undefined);
    this.outbox = new RouteOutbox({
      nodeId: this.nodeId,
      db: this.database.db,
      dialect: this.database.dialect,
      destinations,
      files: async (studyUid) => {
        if (cache) await cache.prepare({ studyUid });
        const list = await this.index.listInstances({ studyUid });
        return list.map((i) => {
          const p = this.blobs.localPath?.(i.blobKey);
          if (!p) throw new Error('routing sends from local files: the blob store must be the filesystem');
          return { sopClassUid: i.sopClassUid, sopInstanceUid: i.sopUid, transferSyntaxUid: i.transferSyntaxUid, path: p };
        });
      },
      audit: this.audit,
      log: rlog,
      maxAttempts: routing.maxAttempts,
    });
    this.outbox.start();
    this.router = new Router({
      watch: new StudyWatch(this.database.db),
      outbox: this.outbox,
      rules: routing.rules,
      stableMs: routing.stableSeconds * 1000,
      pacs: gateway ? { gateway, everyMs: watch ? watch.everySeconds * 1000 : 0, lookbackDays: watch?.lookbackDays ?? 0 } : undefined,
      log: rlog,
    });
    this.router.start();
  }

  /**
   * The consumer function: the practitioners' web application (Pro Santé Connect login, the patient's exams
   * from the DMP, reports, viewer) on the node's HTTP port; images come from the source boxes via the exchange
   * identity.
   */
  private async startConsumer(consumer: NonNullable<Config['consumer']>, tlsFiles: ReturnType<typeof tlsMaterial>): Promise<void> {
    const { config, log } = this;
    const publicUrl = config.publicUrl!.replace(/\/$/, '');
    const clientAuth =
      consumer.psc.clientAuth === 'tls_client_auth'
        ? { method: 'tls_client_auth' as const, tls: { cert: tlsFiles!.cert, key: tlsFiles!.key, ca: tlsFiles!.ca } }
        : { method: 'client_secret_basic' as const, secret: consumer.psc.clientSecret ?? readFileSync(consumer.psc.clientSecretFile!, 'utf8').trim() };
    const dmp = consumer.dmp ?? config.source!.dmp;
    this.sessions = new SessionStore(this.database.db, { idleMs: consumer.session.idleMinutes * 60_000, absoluteMs: consumer.session.absoluteHours * 3600_000 });
    const psc = new PscLogin({ issuer: consumer.psc.issuer, clientId: consumer.psc.clientId, clientAuth, redirectUri: `${publicUrl}/auth/callback`, postLogoutRedirectUri: `${publicUrl}/auth/login`, scope: consumer.psc.scope, acr: consumer.psc.acr }, log.child({ component: 'psc' }));
    const xds = new XdsClient({ registryUrl: dmp.registryUrl, repositoryUrl: dmp.repositoryUrl, tls: tlsFiles ? { cert: tlsFiles.cert, key: tlsFiles.key, ca: tlsFiles.ca } : undefined });
    const exams = new DmpExams(xds);
    const remote = new RemoteExamCache({ index: this.index, retriever: this.sourceBoxes!, log: log.child({ component: 'consumer' }) });
    if (consumer.import) {
      const imp = consumer.import;
      const peer = config.peers.find((p) => p.aeTitle === imp.pacs)!;
      const gateway = new PacsGateway(remoteFor(config, peer), config.aeTitle);
      const identities = new LocalIdentities(this.database.db, imp.issuer, (ins) => gateway.patientIdsByOtherId(ins));
      this.identities = identities;
      const peerCaches = new Map<string, StudyCache>();
      this.imports = new PacsImports({
        nodeId: this.nodeId,
        db: this.database.db,
        dialect: this.database.dialect,
        identities,
        remote,
        blobs: this.blobs,
        pacs: {
          send: async (files) => {
            if (imp.method === 'STOW-RS') {
              const r = await new DicomwebClient(peer.dicomweb!).store(files.map((f) => f.bytes ?? f.path));
              return { completed: r.stored, failed: r.failed };
            }
            return storeInstances(remoteFor(config, peer), config.aeTitle, files);
          },
          countInstances: (studyUid, patientId) => gateway.countInstances(studyUid, patientId),
          present: async (studyUid, seriesUid) => new Set((await gateway.seriesInstances(studyUid, seriesUid)).map((i) => i.sopUid)),
        },
        workDir: path.join(config.dataDir, 'tmp'),
        audit: this.audit,
        log: log.child({ component: 'import' }),
        parallel: imp.parallel,
        perSourceLimit: (origin) => (origin.startsWith('dicom:') ? undefined : consumer.sources.find((s) => new URL(s.origin).origin === origin)?.maxConcurrent),
        peerPacs: (ae) => {
          if (!config.peers.some((p) => p.aeTitle === ae)) return undefined;
          // One cache per peer PACS: priors found there are brought by C-GET, series by series, as they arrive.
          let cache = peerCaches.get(ae);
          if (!cache) {
            cache = new StudyCache({ db: this.database.db, index: this.index, ingestor: this.ingestor, blobs: this.blobs, pacs: this.pacsGateway(ae), retrieve: 'C-GET', aeTitle: config.aeTitle, limits: { maxBytes: 50 * 1024 ** 3, maxAgeMs: 7 * 86400_000, minResidencyMs: 3600_000 }, log: log.child({ component: 'prefetch', peer: ae }) });
            peerCaches.set(ae, cache);
          }
          return cache;
        },
      });
      this.imports.start();
      if (config.prefetch) {
        const pf = config.prefetch;
        this.prefetcher = new Prefetcher({
          db: this.database.db,
          rules: pf.rules,
          defaultLeadHours: pf.defaultLeadHours,
          searchConcurrency: pf.searchConcurrency,
          onBehalfOf: pf.onBehalfOf,
          tags: pf.tag,
          exams,
          imports: this.imports,
          identities,
          localCount: (studyUid) => gateway.studyInstanceCount(studyUid),
          // Prior sources besides the DMP: a peer PACS ("pacs:AE", C-FIND) or a peer box ("box:URL", QIDO-RS).
          peers: {
            studies: async (source, patient, pro) => {
              if (source.startsWith('box:')) return (await this.sourceBoxes!.findStudies(source.slice(4), patient.ins, pro)).map((st) => ({ ...st, regions: [], foundIn: source }));
              const peer = this.pacsGateway(source.slice(5));
              const out = [];
              for (const p of await peer.patientIdsByOtherId(patient.ins))
                for (const st of await peer.studiesOfPatient(p.patientId, p.issuer)) out.push({ ...st, regions: [], foundIn: source });
              return out;
            },
            series: async (source, studyUid, patient, pro) => {
              if (source.startsWith('box:')) return this.sourceBoxes!.studySeries(source.slice(4), studyUid, patient.ins, pro);
              const ae = source.slice(5);
              return ((await this.pacsGateway(ae).content(studyUid))?.series ?? []).map((se) => ({ seriesUid: se.seriesUid, pacs: ae, instances: se.instances.map((i) => ({ sopClassUid: i.sopClassUid, sopUid: i.sopInstanceUid })) }));
            },
          },
          audit: this.audit,
          log: log.child({ component: 'prefetch' }),
        });
        this.prefetcher.start(pf.pollSeconds * 1000);
        if (pf.worklist) {
          const wl = pf.worklist;
          const wlPeer = remoteFor(config, config.peers.find((p) => p.aeTitle === wl.peer)!);
          this.worklist = new WorklistPoller({
            query: async (from, to) => (await findWorklist(wlPeer, config.aeTitle, worklistQuery(from, to))).map(readWorklistItem).filter((i): i is WorklistItem => i !== undefined),
            prefetcher: this.prefetcher,
            daysAhead: wl.daysAhead,
            log: log.child({ component: 'worklist' }),
          });
          this.worklist.start(wl.everyMinutes * 60_000);
        }
        const prefetcher = this.prefetcher;
        this.collectors.push(async () => {
          const now = new Date();
          const upcoming = await prefetcher.list({ from: now, to: new Date(now.getTime() + 86400_000) });
          this.metrics.prefetchAppointments.reset();
          for (const a of upcoming) this.metrics.prefetchAppointments.inc({ state: a.state });
          this.metrics.prefetchReadyShare.set((await prefetcher.readyBeforeStart(new Date(now.getTime() - 86400_000), now)).share);
        });
      }
    }
    await this.http.register(webRoutes, {
      sessions: this.sessions,
      psc,
      exams,
      remote,
      prefetcher: this.prefetcher,
      imports: this.imports,
      incoming: this.incoming,
      reconciliation: this.reconciliation,
      media: this.media,
      outbox: this.outbox,
      publications: this.publisher?.queue,
      mediaLimits: config.incoming?.media,
      mediaWorkDir: path.join(config.dataDir, 'tmp'),
      index: this.index,
      blobs: this.blobs,
      audit: this.audit,
      log: log.child({ component: 'web' }),
      secureCookies: consumer.secureCookies ?? publicUrl.startsWith('https:'),
      roles: config.roles,
      loginPerMinute: consumer.loginPerMinute,
      redundancyWindowDays: consumer.redundancyWindowDays,
      sessionIdleMs: consumer.session.idleMinutes * 60_000,
    });
    this.sessionSweep = setInterval(() => void this.sessions!.sweep().catch(() => undefined), 10 * 60_000);
    this.sessionSweep.unref();
  }

  /** Stops accepting work, lets associations and requests in flight finish, then closes the index. */
  async close(graceMs = 10_000): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    if (this.trustListTimer) clearInterval(this.trustListTimer);
    if (this.sessionSweep) clearInterval(this.sessionSweep);
    if (this.tidyTimer) clearInterval(this.tidyTimer);
    this.imports?.stop();
    await this.publisher?.queue.stop();
    this.router?.stop();
    this.outbox?.stop();
    this.incoming?.stop();
    this.prefetcher?.stop();
    this.worklist?.stop();
    this.studyCache?.stop();
    this.space?.stop();
    await Promise.allSettled([this.dicom?.close(graceMs), this.http?.close(), this.hl7?.close(graceMs), this.exchange?.close()]);
    await this.blobs?.close();
    await this.checkpoints?.stop();
    await this.audit?.flush(true);
    await this.atna?.close();
    await this.database?.close();
    this.log.info('OpenDRIM node stopped');
  }
}

/** Listens, or fails naming the listener and the setting that chose its port (a port in use, a bad address). */
async function listening<T>(name: string, setting: string, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
    const where = err.address ? `${err.address}:${err.port}` : '';
    const why = err.code === 'EADDRINUSE' ? 'the port is already in use (another program, or another OpenDRIM)' : err.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : err.message;
    throw new Error(`the ${name} listener could not listen${where ? ` on ${where}` : ''}: ${why}; change ${setting} or stop what uses it`);
  }
}
