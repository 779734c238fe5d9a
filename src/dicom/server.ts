import net from 'node:net';
import tls from 'node:tls';
import type { Writable } from 'node:stream';
import type { Logger } from '../common/log.js';
import { QUERY_RETRIEVE, SopClass, chooseCommandSyntax, chooseStorageSyntax, isStorageSopClass } from './uids.js';
import { fileMetaHeader, type DicomJson } from './part10.js';
import { Association, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, type DimseMessage } from './net/association.js';
import { CommandField, Status, type Command } from './net/command.js';
import { decodeDataset, encodeDataset, readPart10Info } from './net/dataset.js';
import { DimseEndpoint } from './net/dimse.js';
import type { AssociateAc, AssociateRj, AssociateRq, PresentationContextAc } from './net/pdu.js';
import { storeInstances, storeOver, type OutboundInstance } from './scu.js';

export interface AssociationInfo {
  id: number;
  callingAe: string;
  calledAe: string;
  remoteAddress: string;
  remotePort: number;
}

export type QueryLevel = 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE';

export interface DimseQuery {
  model: 'PATIENT' | 'STUDY';
  level: QueryLevel;
  /** The identifier as DICOM JSON (tag → {vr, Value}); attributes with no value are return keys. */
  identifier: DicomJson;
}

/** A C-STORE in progress: bytes go to `writable` (Part 10 meta header already written), then `commit` decides. */
export interface StoreSink {
  writable: Writable;
  commit(): Promise<{ status: number; comment?: string }>;
  abort(): Promise<void>;
}

export interface RemoteAe {
  aeTitle: string;
  host: string;
  port: number;
  tls?: tls.ConnectionOptions;
}

/**
 * What the node behind the DIMSE service does. Kept free of wire details so the protocol layer can be
 * tested on its own and the product code never sees a PDU.
 */
export interface DimseHandlers {
  /** undefined = accept; otherwise the reason to reject. */
  checkAssociation(a: AssociationInfo): 'calling-ae' | 'calling-host' | 'called-ae' | 'no-space' | 'ae-limit' | undefined;
  /** A C-MOVE named a destination this node does not know. */
  onUnknownDestination?(a: AssociationInfo, destination: string): void;
  openStore(a: AssociationInfo, req: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string }): StoreSink;
  find(a: AssociationInfo, q: DimseQuery): Promise<DicomJson[]>;
  /** Instances a C-MOVE or C-GET identifier selects. */
  retrieve(a: AssociationInfo, q: DimseQuery): Promise<OutboundInstance[]>;
  resolveAe(aeTitle: string): RemoteAe | undefined;
  onAssociation?(event: 'open' | 'close' | 'reject' | 'abort', a: AssociationInfo, detail?: string): void;
  /** A C-STORE was answered: its status and the time from first byte to answer. */
  onStored?(a: AssociationInfo, status: number, ms: number): void;
  /** A C-MOVE or C-GET finished (or was cancelled); `items` is the array `retrieve` returned. */
  onRetrieved?(a: AssociationInfo, op: 'MOVE' | 'GET', items: OutboundInstance[], result: { completed: number; failed: number; warning: number; cancelled: boolean }, destination?: string): void;
}

export interface DicomServerOptions {
  aeTitle: string;
  port: number;
  host: string;
  maxPduLength: number;
  maxAssociations: number;
  idleTimeoutMs: number;
  handlers: DimseHandlers;
  log: Logger;
  /** DICOM TLS listener (PS3.15 B.1), in addition to the plain port. */
  tls?: { port: number; options: tls.TlsOptions };
}

export class QueryIdentifierError extends Error {
  override name = 'QueryIdentifierError';
}

let associationSeq = 0;

function levelOf(identifier: DicomJson): QueryLevel {
  const v = String(identifier['00080052']?.Value?.[0] ?? '').trim().toUpperCase();
  if (v === 'PATIENT' || v === 'STUDY' || v === 'SERIES' || v === 'IMAGE') return v;
  throw new QueryIdentifierError(v ? `invalid Query/Retrieve Level "${v}"` : 'missing Query/Retrieve Level (0008,0052)');
}

/** PS3.4 C.4.1.1.3: answer exactly the requested keys, zero-length where there is no value. */
export function selectReturnKeys(match: DicomJson, identifier: DicomJson, level: QueryLevel): DicomJson {
  const out: DicomJson = {};
  for (const [tag, el] of Object.entries(identifier)) {
    if (tag === '00080005') continue;
    const m = match[tag];
    out[tag] = m && (m.Value || m.InlineBinary) ? { vr: m.vr, ...(m.Value ? { Value: m.Value } : {}), ...(m.InlineBinary ? { InlineBinary: m.InlineBinary } : {}) } : { vr: el.vr };
  }
  out['00080052'] = { vr: 'CS', Value: [level] };
  out['00080005'] = { vr: 'CS', Value: ['ISO_IR 192'] };
  return out;
}

type Counts = { remaining: number; completed: number; failed: number; warning: number };

/**
 * The DICOM service (SCP) on OpenDRIM's own upper layer (src/dicom/net): binds to the configured address,
 * sets TCP_NODELAY, caps associations and PDU sizes, streams C-STORE data straight to storage, answers role
 * selection for C-GET, and drains associations on shutdown.
 */
export class DicomServer {
  private server: net.Server | undefined;
  private tlsServer: tls.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private active = 0;

  constructor(private readonly opts: DicomServerOptions) {}

  get port(): number {
    const addr = this.server?.address();
    return typeof addr === 'object' && addr ? addr.port : this.opts.port;
  }

  get activeAssociations(): number {
    return this.active;
  }

  get tlsPort(): number | undefined {
    const addr = this.tlsServer?.address();
    return typeof addr === 'object' && addr ? addr.port : undefined;
  }

  async listen(): Promise<void> {
    this.server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    await this.bind(this.server, this.opts.port);
    if (this.opts.tls) {
      const server = tls.createServer({ ...this.opts.tls.options, noDelay: true } as tls.TlsOptions, (socket) => this.accept(socket));
      // A failed handshake (no or untrusted client certificate) is logged, never fatal.
      server.on('tlsClientError', (e, s) => this.opts.log.warn({ remote: s.remoteAddress, reason: e.message }, 'DICOM TLS handshake refused'));
      this.tlsServer = server;
      await this.bind(server, this.opts.tls.port);
    }
  }

  private bind(server: net.Server, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.opts.host, () => {
        server.off('error', reject);
        server.on('error', (e) => this.opts.log.error({ err: e }, 'DICOM server error'));
        resolve();
      });
    });
  }

  /** Stops accepting, lets running associations finish (up to `graceMs`), then aborts what is left. */
  async close(graceMs = 10_000): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const servers = [server, this.tlsServer].filter((x): x is net.Server => x !== undefined);
    this.tlsServer = undefined;
    const closed = Promise.all(servers.map((srv) => new Promise<void>((r) => srv.close(() => r()))));
    const deadline = Date.now() + graceMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private negotiate(rq: AssociateRq, info: AssociationInfo): { accept: AssociateAc } | { reject: AssociateRj } {
    const { handlers, log } = this.opts;
    info.callingAe = rq.callingAe;
    info.calledAe = rq.calledAe;
    if (this.active >= this.opts.maxAssociations) {
      handlers.onAssociation?.('reject', info, 'limit');
      log.warn({ callingAe: rq.callingAe, remote: info.remoteAddress }, 'association rejected: too many associations');
      return { reject: { result: 2, source: 3, reason: 2 } }; // transient, provider (presentation), local limit exceeded
    }
    if (rq.applicationContext && rq.applicationContext !== '1.2.840.10008.3.1.1.1') return { reject: { result: 1, source: 1, reason: 2 } };
    const refusal = handlers.checkAssociation(info);
    if (refusal) {
      handlers.onAssociation?.('reject', info, refusal);
      log.warn({ callingAe: rq.callingAe, calledAe: rq.calledAe, remote: info.remoteAddress, refusal }, 'association rejected');
      // No space left is transient: the sender retries later (PS3.8 9.3.4: rejected-transient, local limit exceeded).
      if (refusal === 'no-space' || refusal === 'ae-limit') return { reject: { result: 2, source: 3, reason: 2 } };
      return { reject: { result: 1, source: 1, reason: refusal === 'called-ae' ? 7 : 3 } };
    }
    const contexts: PresentationContextAc[] = rq.contexts.map((c) => {
      let ts: string | undefined;
      if (c.abstractSyntax === SopClass.Verification || QUERY_RETRIEVE[c.abstractSyntax]) ts = chooseCommandSyntax(c.transferSyntaxes);
      else if (isStorageSopClass(c.abstractSyntax)) ts = chooseStorageSyntax(c.transferSyntaxes);
      else return { id: c.id, result: 3, transferSyntax: '' };
      return ts ? { id: c.id, result: 0, transferSyntax: ts } : { id: c.id, result: 4, transferSyntax: '' };
    });
    // Role selection (PS3.7 D.3.3.4): accept what is proposed for storage classes, which lets us send C-GET sub-operations.
    const roles = rq.user.roles.filter((r) => isStorageSopClass(r.sopClassUid));
    this.active++;
    handlers.onAssociation?.('open', info);
    log.info({ assoc: info.id, callingAe: rq.callingAe, calledAe: rq.calledAe, remote: info.remoteAddress }, 'association accepted');
    return { accept: { calledAe: rq.calledAe, callingAe: rq.callingAe, contexts, user: { maxPduLength: this.opts.maxPduLength, implementationClassUid: IMPLEMENTATION_CLASS_UID, implementationVersion: IMPLEMENTATION_VERSION, roles } } };
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const { log, handlers } = this.opts;
    const info: AssociationInfo = { id: ++associationSeq, callingAe: '', calledAe: '', remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 };
    const assoc = new Association(socket, { maxPduLength: this.opts.maxPduLength }, 'acceptor');
    let counted = false;
    assoc.onAssociateRequest = (rq) => {
      const d = this.negotiate(rq, info);
      counted = 'accept' in d;
      return d;
    };
    socket.setTimeout(this.opts.idleTimeoutMs);
    socket.on('timeout', () => {
      log.warn({ assoc: info.id, callingAe: info.callingAe }, 'association idle timeout: aborting');
      handlers.onAssociation?.('abort', info, 'idle timeout');
      assoc.abort();
    });
    assoc.on('protocol-error', (e: Error) => {
      log.warn({ assoc: info.id, remote: info.remoteAddress, reason: e.message }, 'protocol violation: association aborted');
      handlers.onAssociation?.('abort', info, e.message);
    });
    assoc.on('aborted', () => handlers.onAssociation?.('abort', info, 'peer abort'));
    assoc.on('closed', () => {
      this.sockets.delete(socket);
      if (counted) {
        this.active--;
        handlers.onAssociation?.('close', info);
      }
    });
    new ScpSession(assoc, info, this.opts);
  }
}

/** The DIMSE services of one accepted association. */
class ScpSession {
  private readonly ep: DimseEndpoint;
  private readonly stores = new Map<Command, { sink: StoreSink; started: number }>();
  private readonly cancelled = new Set<number>();

  constructor(
    private readonly assoc: Association,
    private readonly info: AssociationInfo,
    private readonly opts: DicomServerOptions,
  ) {
    this.ep = new DimseEndpoint(assoc);
    assoc.openDataset = (contextId, command) => (command.commandField === CommandField.CStoreRq ? this.openStore(contextId, command) : undefined);
    this.ep.onRequest = (msg) => this.dispatch(msg);
    assoc.on('closed', () => {
      // Peer dropped mid-transfer: temporary files of unfinished C-STOREs are removed, nothing is indexed.
      for (const { sink } of this.stores.values()) void sink.abort();
      this.stores.clear();
    });
  }

  private get log() {
    return this.opts.log;
  }

  private openStore(contextId: number, command: Command): Writable {
    const req = {
      sopClassUid: command.affectedSopClassUid ?? '',
      sopInstanceUid: command.affectedSopInstanceUid ?? '',
      transferSyntaxUid: this.assoc.accepted.get(contextId)!.transferSyntax,
    };
    const sink = this.opts.handlers.openStore(this.info, req);
    sink.writable.write(fileMetaHeader({ ...req, sourceAeTitle: this.info.callingAe }));
    this.stores.set(command, { sink, started: Date.now() });
    return sink.writable;
  }

  private dispatch(msg: DimseMessage): void {
    const c = msg.command;
    const respondFailure = (field: number, status: number, comment: string) =>
      this.ep.respond(msg, { commandField: field, affectedSopClassUid: c.affectedSopClassUid, status, errorComment: comment, commandDataSetType: 0x0101 }).catch(() => undefined);
    switch (c.commandField) {
      case CommandField.CEchoRq:
        void this.ep.respond(msg, { commandField: CommandField.CEchoRsp, affectedSopClassUid: c.affectedSopClassUid, status: Status.Success, commandDataSetType: 0x0101 }).catch(() => undefined);
        return;
      case CommandField.CStoreRq:
        return void this.store(msg);
      case CommandField.CFindRq:
        return void this.find(msg).catch((e: Error) => respondFailure(CommandField.CFindRsp, Status.ProcessingFailure, e.message));
      case CommandField.CMoveRq:
        return void this.retrieve(msg, 'MOVE').catch((e: Error) => respondFailure(CommandField.CMoveRsp, Status.ProcessingFailure, e.message));
      case CommandField.CGetRq:
        return void this.retrieve(msg, 'GET').catch((e: Error) => respondFailure(CommandField.CGetRsp, Status.ProcessingFailure, e.message));
      case CommandField.CCancelRq:
        if (c.messageIdBeingRespondedTo !== undefined) this.cancelled.add(c.messageIdBeingRespondedTo);
        return;
      default:
        this.log.warn({ commandField: c.commandField }, 'unsupported DIMSE command');
        void respondFailure(c.commandField | 0x8000, 0x0211 /* unrecognised operation */, 'unsupported operation');
    }
  }

  private async store(msg: DimseMessage): Promise<void> {
    const c = msg.command;
    const entry = this.stores.get(c);
    this.stores.delete(c);
    let status: number = Status.ProcessingFailure;
    let comment: string | undefined = 'no data set received';
    if (entry) {
      try {
        ({ status, comment } = await entry.sink.commit());
        this.opts.handlers.onStored?.(this.info, status, Date.now() - entry.started);
      } catch (e) {
        this.log.error({ err: e }, 'C-STORE commit failed');
        status = Status.ProcessingFailure;
        comment = (e as Error).message;
      }
    }
    await this.ep
      .respond(msg, { commandField: CommandField.CStoreRsp, affectedSopClassUid: c.affectedSopClassUid, affectedSopInstanceUid: c.affectedSopInstanceUid, status, errorComment: status === Status.Success ? undefined : comment, commandDataSetType: 0x0101 })
      .catch(() => undefined);
  }

  private query(msg: DimseMessage, model: 'PATIENT' | 'STUDY'): DimseQuery {
    const ts = this.assoc.accepted.get(msg.contextId)!.transferSyntax;
    let identifier: DicomJson;
    try {
      identifier = decodeDataset(msg.dataset ?? Buffer.alloc(0), ts);
    } catch (e) {
      throw new QueryIdentifierError(`identifier cannot be decoded: ${(e as Error).message}`);
    }
    return { model, level: levelOf(identifier), identifier };
  }

  private async find(msg: DimseMessage): Promise<void> {
    const c = msg.command;
    const qr = QUERY_RETRIEVE[c.affectedSopClassUid ?? ''];
    const final = (status: number, comment?: string) => this.ep.respond(msg, { commandField: CommandField.CFindRsp, affectedSopClassUid: c.affectedSopClassUid, status, errorComment: comment, commandDataSetType: 0x0101 });
    if (!qr || qr.op !== 'FIND') return final(Status.SopClassNotSupported, 'unsupported C-FIND information model');
    let q: DimseQuery;
    try {
      q = this.query(msg, qr.model);
    } catch (e) {
      return final(Status.IdentifierDoesNotMatch, (e as Error).message);
    }
    let matches: DicomJson[];
    try {
      matches = await this.opts.handlers.find(this.info, q);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'C-FIND failed');
      return final((e as Error).name === 'QueryError' ? Status.IdentifierDoesNotMatch : Status.ProcessingFailure, (e as Error).message);
    }
    const ts = this.assoc.accepted.get(msg.contextId)!.transferSyntax;
    for (const m of matches) {
      if (this.cancelled.delete(c.messageId ?? -1)) return final(Status.Cancel);
      await this.ep.respond(msg, { commandField: CommandField.CFindRsp, affectedSopClassUid: c.affectedSopClassUid, status: Status.Pending, commandDataSetType: 0x0000 }, encodeDataset(selectReturnKeys(m, q.identifier, q.level), ts));
    }
    await final(Status.Success);
  }

  private async retrieve(msg: DimseMessage, op: 'MOVE' | 'GET'): Promise<void> {
    const c = msg.command;
    const field = op === 'MOVE' ? CommandField.CMoveRsp : CommandField.CGetRsp;
    const qr = QUERY_RETRIEVE[c.affectedSopClassUid ?? ''];
    const send = (status: number, counts?: Counts, comment?: string) =>
      this.ep
        .respond(msg, {
          commandField: field,
          affectedSopClassUid: c.affectedSopClassUid,
          status,
          errorComment: comment,
          commandDataSetType: 0x0101,
          ...(counts ? { remaining: status === Status.Pending ? counts.remaining : undefined, completed: counts.completed, failed: counts.failed, warning: counts.warning } : {}),
        })
        .catch(() => undefined);
    if (!qr || qr.op !== op) return send(Status.SopClassNotSupported, undefined, `unsupported C-${op} information model`);
    let destination: RemoteAe | undefined;
    if (op === 'MOVE') {
      destination = this.opts.handlers.resolveAe(c.moveDestination ?? '');
      if (!destination) {
        this.opts.handlers.onUnknownDestination?.(this.info, c.moveDestination ?? '');
        return send(Status.MoveDestinationUnknown, undefined, `unknown move destination ${c.moveDestination ?? ''}`);
      }
    }
    let q: DimseQuery;
    try {
      q = this.query(msg, qr.model);
    } catch (e) {
      return send(Status.IdentifierDoesNotMatch, undefined, (e as Error).message);
    }
    const items = await this.opts.handlers.retrieve(this.info, q);
    const counts: Counts = { remaining: items.length, completed: 0, failed: 0, warning: 0 };
    if (items.length === 0) return send(Status.Success, counts);
    let lastPending = 0;
    const isCancelled = () => this.cancelled.has(c.messageId ?? -1);
    const onProgress = (p: { completed: number; failed: number; warning: number }) => {
      Object.assign(counts, p, { remaining: items.length - p.completed - p.failed - p.warning });
      // Pending responses at most every 250 ms: enough for progress bars, cheap for big studies.
      if (Date.now() - lastPending > 250 && counts.remaining > 0) {
        lastPending = Date.now();
        void send(Status.Pending, counts);
      }
    };
    let result: { completed: number; failed: number; warning: number; error?: string };
    if (op === 'MOVE') {
      result = await storeInstances(destination!, this.opts.aeTitle, items, { moveOriginator: { aeTitle: this.info.callingAe, messageId: c.messageId ?? 0 }, onProgress, isCancelled });
    } else {
      // C-GET: sub-operations on this same association (PS3.4 C.4.3), in the contexts the requestor proposed.
      const withInfo = [];
      for (const i of items) withInfo.push({ ...i, info: await readPart10Info(i.path) });
      result = await storeOver(this.ep, withInfo, { onProgress, isCancelled });
    }
    const cancelled = this.cancelled.delete(c.messageId ?? -1);
    this.opts.handlers.onRetrieved?.(this.info, op, items, { completed: result.completed, failed: result.failed, warning: result.warning, cancelled }, destination?.aeTitle);
    if (cancelled) return send(Status.Cancel, { ...counts, ...result, remaining: items.length - result.completed - result.failed - result.warning });
    const final = { remaining: 0, completed: result.completed, failed: result.failed, warning: result.warning };
    if (result.completed === 0 && result.warning === 0 && result.failed > 0) return send(Status.SubOperationsFailed, final, result.error);
    await send(result.failed > 0 || result.warning > 0 ? Status.Warning : Status.Success, final, result.error);
  }
}
