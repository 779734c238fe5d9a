import net from 'node:net';
import type { Writable } from 'node:stream';
import dimse from 'dcmjs-dimse';
import dcmjs from 'dcmjs';
import type { Logger } from '../common/log.js';
import { guardPdus } from './pdu-guard.js';
import { QUERY_RETRIEVE, SopClass, chooseCommandSyntax, chooseStorageSyntax, isStorageSopClass } from './uids.js';
import { fileMetaHeader, type DicomJson } from './part10.js';
import { storeInstances, type OutboundInstance } from './scu.js';

const { Scp, Dataset } = dimse;
const { CEchoResponse, CFindResponse, CStoreResponse, CMoveResponse, CGetResponse } = dimse.responses;
const { CStoreRequest } = dimse.requests;
const { Status, PresentationContextResult, RejectResult, RejectSource, RejectReason } = dimse.constants;
const { DicomMetaDictionary } = dcmjs.data;

dimse.log.setLevel('silent' as any);

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
}

/**
 * What the node behind the DIMSE service does. Kept free of wire details so the protocol layer can be
 * tested on its own and the product code never sees a PDU.
 */
export interface DimseHandlers {
  /** undefined = accept; otherwise the reason to reject. */
  checkAssociation(a: AssociationInfo): 'calling-ae' | 'called-ae' | undefined;
  openStore(a: AssociationInfo, req: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string }): StoreSink;
  find(a: AssociationInfo, q: DimseQuery): Promise<DicomJson[]>;
  /** Instances a C-MOVE or C-GET identifier selects. */
  retrieve(a: AssociationInfo, q: DimseQuery): Promise<OutboundInstance[]>;
  resolveAe(aeTitle: string): RemoteAe | undefined;
  onAssociation?(event: 'open' | 'close' | 'reject' | 'abort', a: AssociationInfo, detail?: string): void;
  onStored?(a: AssociationInfo, status: number, bytes: number, ms: number): void;
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
}

export class QueryIdentifierError extends Error {
  override name = 'QueryIdentifierError';
}

let associationSeq = 0;

/** Converts a C-FIND/C-MOVE identifier (dcmjs-dimse's naturalised form) to DICOM JSON. */
function identifierToJson(elements: Record<string, unknown>): DicomJson {
  const copy: Record<string, unknown> = { ...elements };
  delete copy._vrMap;
  delete copy._meta;
  // dcmjs leaves empty-valued attributes out of denaturalisation unless they are explicitly empty arrays/strings.
  const dn = DicomMetaDictionary.denaturalizeDataset(copy) as Record<string, { vr: string; Value?: unknown[] }>;
  const out: DicomJson = {};
  for (const [tag, el] of Object.entries(dn)) {
    const values = (el.Value ?? []).filter((v) => v !== '' && v !== null && v !== undefined);
    out[tag.toUpperCase()] = values.length ? { vr: el.vr, Value: values } : { vr: el.vr };
  }
  return out;
}

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

function jsonToDataset(json: DicomJson): any {
  const cleaned: Record<string, unknown> = {};
  for (const [tag, el] of Object.entries(json)) {
    if (el.BulkDataURI) continue;
    cleaned[tag] = el.Value ? { vr: el.vr, Value: el.Value } : { vr: el.vr, Value: [] };
  }
  const natural = DicomMetaDictionary.naturalizeDataset(cleaned);
  return new Dataset(natural);
}

/**
 * DICOM upper-layer service on a socket server of our own (so that we bind to the configured address, set
 * TCP_NODELAY, cap associations and PDU sizes, and can drain associations on shutdown), with dcmjs-dimse's
 * Scp driving each association.
 */
export class DicomServer {
  private server: net.Server | undefined;
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

  listen(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
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
    const closed = new Promise<void>((r) => server.close(() => r()));
    const deadline = Date.now() + graceMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const { log, handlers } = this.opts;
    const info: AssociationInfo = { id: ++associationSeq, callingAe: '', calledAe: '', remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 };
    let counted = false;
    socket.setTimeout(this.opts.idleTimeoutMs);
    socket.on('timeout', () => {
      log.warn({ assoc: info.id, callingAe: info.callingAe }, 'association idle timeout: aborting');
      handlers.onAssociation?.('abort', info, 'idle timeout');
      socket.destroy();
    });
    socket.on('error', (e) => log.debug({ assoc: info.id, err: e.message }, 'socket error'));
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (counted) {
        this.active--;
        handlers.onAssociation?.('close', info);
      }
    });
    guardPdus(socket, { maxPduLength: this.opts.maxPduLength, maxAssociateLength: 256 * 1024 }, (reason) => {
      log.warn({ assoc: info.id, remote: info.remoteAddress, reason }, 'protocol violation: aborting association');
      handlers.onAssociation?.('abort', info, reason);
      // A-ABORT (source: service provider, reason: invalid PDU parameter value), then close.
      socket.end(Buffer.from([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6]));
      setTimeout(() => socket.destroy(), 100).unref();
    });
    const server = this;
    const scp = new OpenDrimScp(socket, {
      onAssociate: (a) => {
        info.callingAe = a.callingAe;
        info.calledAe = a.calledAe;
        if (server.active >= server.opts.maxAssociations) return 'limit';
        const refusal = handlers.checkAssociation(info);
        if (refusal) return refusal;
        counted = true;
        server.active++;
        handlers.onAssociation?.('open', info);
        return undefined;
      },
      info,
      opts: this.opts,
    });
    scp.on('networkError', (e: Error) => {
      log.debug({ assoc: info.id, err: e.message }, 'DICOM network error');
      socket.destroy();
    });
  }
}

interface ScpContext {
  onAssociate(a: { callingAe: string; calledAe: string }): 'calling-ae' | 'called-ae' | 'limit' | undefined;
  info: AssociationInfo;
  opts: DicomServerOptions;
}

class OpenDrimScp extends Scp {
  private readonly ctx: ScpContext;
  private readonly sinks = new Map<unknown, { sink: StoreSink; bytes: () => number; started: number }>();
  private readonly socketRef: net.Socket;

  constructor(socket: net.Socket, ctx: ScpContext) {
    super(socket, { associationTimeout: ctx.opts.idleTimeoutMs, pduTimeout: ctx.opts.idleTimeoutMs, connectTimeout: ctx.opts.idleTimeoutMs });
    this.ctx = ctx;
    this.socketRef = socket;
    socket.on('close', () => {
      // Peer dropped mid-transfer: temporary files of unfinished C-STOREs are removed, nothing is indexed.
      for (const { sink } of this.sinks.values()) void sink.abort();
      this.sinks.clear();
    });
  }

  private get log() {
    return this.ctx.opts.log;
  }

  override associationRequested(association: any): void {
    const callingAe = String(association.getCallingAeTitle()).trim();
    const calledAe = String(association.getCalledAeTitle()).trim();
    const refusal = this.ctx.onAssociate({ callingAe, calledAe });
    if (refusal) {
      this.log.warn({ callingAe, calledAe, remote: this.ctx.info.remoteAddress, refusal }, 'association rejected');
      this.ctx.opts.handlers.onAssociation?.('reject', this.ctx.info, refusal);
      if (refusal === 'limit') this.sendAssociationReject(RejectResult.Transient, 3 /* service provider (presentation) */, 2 /* local limit exceeded */);
      else this.sendAssociationReject(RejectResult.Permanent, RejectSource.ServiceUser, refusal === 'calling-ae' ? RejectReason.CallingAeNotRecognized : RejectReason.CalledAeNotRecognized);
      return;
    }
    // dcmjs-dimse uses one max PDU length for both directions. Where we will send bulk data to the requestor
    // (C-GET sub-operations) it must not exceed what the requestor can receive; elsewhere we advertise ours.
    const peerMax = Number(association.getMaxPduLength()) || 16384;
    const sendsToPeer = association.getPresentationContexts().some((c: any) => QUERY_RETRIEVE[association.getPresentationContext(c.id).getAbstractSyntaxUid()]?.op === 'GET');
    association.setMaxPduLength(sendsToPeer ? Math.min(peerMax, this.ctx.opts.maxPduLength) : this.ctx.opts.maxPduLength);
    for (const c of association.getPresentationContexts()) {
      const context = association.getPresentationContext(c.id);
      const abstract: string = context.getAbstractSyntaxUid();
      const proposed: string[] = context.getTransferSyntaxUids();
      let ts: string | undefined;
      if (abstract === SopClass.Verification || QUERY_RETRIEVE[abstract]) ts = chooseCommandSyntax(proposed);
      else if (isStorageSopClass(abstract)) ts = chooseStorageSyntax(proposed);
      else {
        context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
        continue;
      }
      if (ts) context.setResult(PresentationContextResult.Accept, ts);
      else context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
    }
    this.log.info({ assoc: this.ctx.info.id, callingAe, calledAe, remote: this.ctx.info.remoteAddress }, 'association accepted');
    this.sendAssociationAccept();
  }

  override associationReleaseRequested(): void {
    this.sendAssociationReleaseResponse();
  }

  override abort(): void {
    this.ctx.opts.handlers.onAssociation?.('abort', this.ctx.info, 'peer abort');
  }

  override cEchoRequest(request: any, callback: (r: any) => void): void {
    const response = CEchoResponse.fromRequest(request);
    response.setStatus(Status.Success);
    callback(response);
  }

  override createStoreWritableStream(context: any, request: any): Writable {
    const req = {
      sopClassUid: String(request.getAffectedSopClassUid()),
      sopInstanceUid: String(request.getAffectedSopInstanceUid()),
      transferSyntaxUid: String(context.getAcceptedTransferSyntaxUid()),
    };
    const sink = this.ctx.opts.handlers.openStore(this.ctx.info, req);
    const w = sink.writable;
    w.write(fileMetaHeader({ ...req, sourceAeTitle: this.ctx.info.callingAe }));
    let bytes = 0;
    // Backpressure: dcmjs-dimse does not wait for the writable, so pause the socket while the disk catches up.
    const socket = this.socketRef;
    const original = w.write.bind(w) as (chunk: Buffer) => boolean;
    (w as any).write = (chunk: Buffer) => {
      bytes += chunk.length;
      if (!original(chunk) && !socket.isPaused()) {
        socket.pause();
        w.once('drain', () => socket.resume());
      }
      return true;
    };
    w.on('error', () => undefined); // reported through commit()
    this.sinks.set(request, { sink, bytes: () => bytes, started: Date.now() });
    return w;
  }

  override createDatasetFromStoreWritableStream(_writable: Writable, context: any, callback: (ds: any) => void): void {
    // The data set stays on disk; the C-STORE handler only needs the command. An empty Dataset avoids parsing.
    callback(new Dataset({}, context.getAcceptedTransferSyntaxUid()));
  }

  override cStoreRequest(request: any, callback: (r: any) => void): void {
    const entry = this.sinks.get(request);
    this.sinks.delete(request);
    const response = CStoreResponse.fromRequest(request);
    if (!entry) {
      response.setStatus(Status.ProcessingFailure);
      response.setErrorComment('no data set received');
      callback(response);
      return;
    }
    entry.sink.commit().then(
      ({ status, comment }) => {
        response.setStatus(status);
        if (comment) response.setErrorComment(comment.slice(0, 64));
        this.ctx.opts.handlers.onStored?.(this.ctx.info, status, entry.bytes(), Date.now() - entry.started);
        callback(response);
      },
      (e: Error) => {
        this.log.error({ err: e }, 'C-STORE commit failed');
        response.setStatus(Status.ProcessingFailure);
        response.setErrorComment(e.message.slice(0, 64));
        callback(response);
      },
    );
  }

  private query(request: any, model: 'PATIENT' | 'STUDY'): DimseQuery {
    const identifier = identifierToJson(request.getDataset()?.getElements() ?? {});
    return { model, level: levelOf(identifier), identifier };
  }

  override cFindRequest(request: any, callback: (r: any[]) => void): void {
    const qr = QUERY_RETRIEVE[String(request.getAffectedSopClassUid())];
    const fail = (status: number, comment: string) => {
      const r = CFindResponse.fromRequest(request);
      r.setStatus(status);
      r.setErrorComment(comment.slice(0, 64));
      callback([r]);
    };
    if (!qr || qr.op !== 'FIND') return fail(Status.SopClassNotSupported, 'unsupported C-FIND information model');
    let q: DimseQuery;
    try {
      q = this.query(request, qr.model);
    } catch (e) {
      return fail(0xa900, (e as Error).message);
    }
    this.ctx.opts.handlers.find(this.ctx.info, q).then(
      (matches) => {
        const responses = matches.map((m) => {
          const r = CFindResponse.fromRequest(request);
          r.setDataset(jsonToDataset(selectReturnKeys(m, q.identifier, q.level)));
          r.setStatus(Status.Pending);
          return r;
        });
        const done = CFindResponse.fromRequest(request);
        done.setStatus(Status.Success);
        callback([...responses, done]);
      },
      (e: Error) => {
        this.log.warn({ err: e.message }, 'C-FIND failed');
        fail(e.name === 'QueryError' ? 0xa900 : Status.ProcessingFailure, e.message);
      },
    );
  }

  /**
   * dcmjs-dimse's response callback may be called only once, so pending responses go through sendResponse
   * and the callback carries the final one.
   */
  private responder(request: any, callback: (r: any) => void, make: (req: any) => any) {
    let finished = false;
    return (status: number, counts?: { remaining: number; completed: number; failed: number; warning: number }, comment?: string) => {
      if (finished) return;
      const r = make(request);
      r.setStatus(status);
      if (counts) {
        if (status === Status.Pending) r.setRemaining(counts.remaining);
        r.setCompleted(counts.completed);
        r.setFailures(counts.failed);
        r.setWarnings(counts.warning);
      }
      if (comment) r.setErrorComment(comment.slice(0, 64));
      try {
        if (status === Status.Pending) this.sendResponse(request, r);
        else {
          finished = true;
          callback(r);
        }
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'could not send response');
      }
    };
  }

  override cMoveRequest(request: any, callback: (r: any) => void): void {
    const qr = QUERY_RETRIEVE[String(request.getAffectedSopClassUid())];
    const send = this.responder(request, callback, (q) => CMoveResponse.fromRequest(q));
    if (!qr || qr.op !== 'MOVE') return send(Status.SopClassNotSupported, undefined, 'unsupported C-MOVE information model');
    const destinationAe = String(request.getCommandDataset().getElement('MoveDestination') ?? '').trim();
    const destination = this.ctx.opts.handlers.resolveAe(destinationAe);
    if (!destination) return send(Status.MoveDestinationUnknown, undefined, `unknown move destination ${destinationAe}`);
    let q: DimseQuery;
    try {
      q = this.query(request, qr.model);
    } catch (e) {
      return send(0xa900, undefined, (e as Error).message);
    }
    void (async () => {
      const items = await this.ctx.opts.handlers.retrieve(this.ctx.info, q);
      const counts = { remaining: items.length, completed: 0, failed: 0, warning: 0 };
      if (items.length === 0) return send(Status.Success, counts);
      let lastPending = 0;
      const result = await storeInstances(destination, this.ctx.opts.aeTitle, items, {
        maxPduLength: this.ctx.opts.maxPduLength,
        moveOriginator: { aeTitle: this.ctx.info.callingAe, messageId: request.getMessageId() },
        onProgress: (p) => {
          counts.remaining = items.length - p.completed - p.failed - p.warning;
          counts.completed = p.completed;
          counts.failed = p.failed;
          counts.warning = p.warning;
          // Pending responses at most every 250 ms: enough for progress bars, cheap for big studies.
          if (Date.now() - lastPending > 250 && counts.remaining > 0) {
            lastPending = Date.now();
            send(Status.Pending, counts);
          }
        },
      });
      counts.remaining = 0;
      counts.completed = result.completed;
      counts.failed = result.failed;
      counts.warning = result.warning;
      if (result.error && result.completed === 0) return send(0xa702, counts, result.error);
      send(counts.failed > 0 || counts.warning > 0 ? 0xb000 : Status.Success, counts, result.error);
    })().catch((e: Error) => {
      this.log.error({ err: e }, 'C-MOVE failed');
      send(Status.ProcessingFailure, undefined, e.message);
    });
  }

  override cGetRequest(request: any, callback: (r: any) => void): void {
    const qr = QUERY_RETRIEVE[String(request.getAffectedSopClassUid())];
    const send = this.responder(request, callback, (q) => CGetResponse.fromRequest(q));
    if (!qr || qr.op !== 'GET') return send(Status.SopClassNotSupported, undefined, 'unsupported C-GET information model');
    let q: DimseQuery;
    try {
      q = this.query(request, qr.model);
    } catch (e) {
      return send(0xa900, undefined, (e as Error).message);
    }
    void (async () => {
      const items = await this.ctx.opts.handlers.retrieve(this.ctx.info, q);
      const counts = { remaining: items.length, completed: 0, failed: 0, warning: 0 };
      // C-STORE sub-operations travel on this same association, one at a time (PS3.4 C.4.3).
      for (const item of items) {
        const sub = new CStoreRequest(item.path);
        const status = await new Promise<number>((resolve) => {
          sub.on('response', (r: any) => resolve(r.getStatus()));
          try {
            this.sendRequests(sub);
          } catch {
            resolve(Status.ProcessingFailure);
          }
          // No accepted context for this SOP class: dcmjs-dimse skips the request without a response.
          if (!(this as any).association?.getAcceptedPresentationContextFromRequest(sub)) resolve(0xa702);
        });
        counts.remaining--;
        if (status === Status.Success) counts.completed++;
        else if ((status & 0xf000) === 0xb000) counts.warning++;
        else counts.failed++;
        if (counts.remaining > 0) send(Status.Pending, counts);
      }
      send(counts.failed > 0 || counts.warning > 0 ? (counts.completed === 0 && counts.warning === 0 ? 0xa702 : 0xb000) : Status.Success, counts);
    })().catch((e: Error) => {
      this.log.error({ err: e }, 'C-GET failed');
      send(Status.ProcessingFailure, undefined, e.message);
    });
  }
}
