import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { fileMetaHeader } from '../dicom/part10.js';
import { convertDataset } from '../dicom/net/dataset.js';
import { toNative } from '../dicom/transcode.js';
import type { BlobStore } from '../store/blobs.js';
import type { StoredInstance, StudyIndex } from '../store/study-index.js';
import { multipartStream, newBoundary, parseMediaType, type OutgoingPart } from './multipart.js';

/** WADO-RS (PS3.18 10.4) building blocks shared by the node's own DICOMweb service and the DRIMbox exchange port. */

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type WadoParams = { study?: string; series?: string; instance?: string; frames?: string; tag?: string };
export type WadoTarget = { studyUid: string; seriesUid?: string; sopUid?: string };

export const UID = /^[0-9.]{1,64}$/;

export function checkUids(p: WadoParams): void {
  for (const k of ['study', 'series', 'instance'] as const) {
    const v = p[k];
    if (v !== undefined && !UID.test(v)) throw new HttpError(400, `${k} UID "${v.slice(0, 80)}" is not a valid DICOM UID`);
  }
}

export function targetOf(p: WadoParams): WadoTarget {
  checkUids(p);
  return { studyUid: p.study!, seriesUid: p.series, sopUid: p.instance };
}

export function describeTarget(t: WadoTarget): string {
  return t.sopUid ? `instance ${t.sopUid}` : t.seriesUid ? `series ${t.seriesUid}` : `study ${t.studyUid}`;
}

/** PS3.18 8.7.3: what the client accepts, as (type, params) pairs. */
export function acceptList(req: FastifyRequest): Array<{ type: string; params: Record<string, string> }> {
  const header = req.headers.accept ?? '*/*';
  return header.split(/,(?=\s*[a-z*]+\/)/i).map((a) => parseMediaType(a));
}

export function acceptsDicomMultipart(req: FastifyRequest, partType: string): boolean {
  return acceptList(req).some(({ type, params }) => type === '*/*' || type === 'multipart/*' || (type === 'multipart/related' && (!params.type || params.type === partType || params.type === '*/*')));
}

/**
 * The transfer syntaxes the client asked for (PS3.18 8.7.3.5): undefined when it left the choice to us
 * (no parameter, or "*"), in which case instances go out as stored.
 */
export function requestedSyntaxes(req: FastifyRequest): Set<string> | undefined {
  const wanted = new Set<string>();
  for (const a of acceptList(req)) {
    if (a.type !== 'multipart/related' && a.type !== '*/*') continue;
    const ts = a.params['transfer-syntax'];
    if (!ts || ts === '*') return undefined;
    wanted.add(ts);
  }
  return wanted.size ? wanted : undefined;
}

const NATIVE_LE = ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2'];

/**
 * The syntax an instance goes out in: as stored when acceptable, else converted between the two native
 * little-endian syntaxes or decoded to native; compressed data is never re-encoded (no encoder here).
 */
function syntaxFor(i: StoredInstance, wanted: Set<string> | undefined): string | undefined {
  if (!wanted || wanted.has(i.transferSyntaxUid)) return i.transferSyntaxUid;
  return NATIVE_LE.find((t) => wanted.has(t));
}

const READ_AHEAD = 4;
const READ_AHEAD_BYTES = 32 * 1024 * 1024;

async function instanceBody(blobs: BlobStore, i: StoredInstance, ts: string): Promise<Readable | Buffer> {
  const path = blobs.localPath(i.blobKey);
  if (ts === i.transferSyntaxUid || !path) return blobs.read(i.blobKey);
  if (NATIVE_LE.includes(i.transferSyntaxUid)) return Buffer.concat([fileMetaHeader({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopUid, transferSyntaxUid: ts }), await convertDataset(path, i.transferSyntaxUid, ts)]);
  return toNative(await readFile(path), ts);
}

/**
 * Sends instances as a multipart/related body while they keep coming: the first instance decides the status
 * (404 when there is none, 406 when it cannot be given in a syntax the client accepts), then each part goes
 * out as soon as the provider yields it. A later instance that cannot be converted goes out as stored,
 * labelled with its real transfer syntax, rather than cutting a response already under way.
 */
export async function sendInstances(req: FastifyRequest, reply: FastifyReply, instances: AsyncIterable<StoredInstance>, opts: { blobs: BlobStore; notFound: string; onPart?: (i: StoredInstance) => void }): Promise<FastifyReply> {
  if (!acceptsDicomMultipart(req, 'application/dicom')) throw new HttpError(406, 'only multipart/related; type="application/dicom" is offered for this resource');
  const wanted = requestedSyntaxes(req);
  const it = instances[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) throw new HttpError(404, opts.notFound);
  if (!syntaxFor(first.value, wanted)) {
    await it.return?.();
    throw new HttpError(406, `instance ${first.value.sopUid} is stored as ${first.value.transferSyntaxUid} and cannot be encoded as ${[...wanted!].join(', ')}; ask for transfer-syntax=* or a native syntax`);
  }
  // Read-ahead: a few instances are read while the one before is being sent, so the socket does not wait on each
  // file's open and read in turn (a 300-instance study spent most of its time there). A producer pulls from the
  // provider on its own, so an instance still arriving (a provider fed by a remote transfer) never holds back one
  // already here. Instances stored as asked for and small enough are read whole; others stream in their turn. At
  // most READ_AHEAD instances and READ_AHEAD_BYTES are held: never a study.
  /** `body` is read ahead for small instances stored as asked for; the others are opened in their turn. */
  type Pending = { i: StoredInstance; ts: string; held: number; body?: Promise<Buffer> };
  const window: Pending[] = [];
  let heldBytes = 0;
  let finished = false;
  let stopped = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  let room: (() => void) | undefined;
  const signal = (f: (() => void) | undefined) => f?.();
  void (async () => {
    try {
      for (let cur: IteratorResult<StoredInstance> = first; !cur.done; cur = await it.next()) {
        while (!stopped && (window.length >= READ_AHEAD || heldBytes >= READ_AHEAD_BYTES)) await new Promise<void>((r) => (room = r));
        if (stopped) return;
        const i = cur.value;
        const ts = syntaxFor(i, wanted) ?? i.transferSyntaxUid;
        const whole = ts === i.transferSyntaxUid && opts.blobs.readAll !== undefined && i.size <= READ_AHEAD_BYTES / 4;
        const body = whole ? opts.blobs.readAll!(i.blobKey) : undefined;
        body?.catch(() => undefined); // awaited in its turn, where a failure ends the response
        heldBytes += whole ? i.size : 0;
        window.push({ i, ts, held: whole ? i.size : 0, body });
        signal(wake);
      }
    } catch (e) {
      failure = e;
    } finally {
      finished = true;
      signal(wake);
    }
  })();
  const parts = (async function* (): AsyncGenerator<OutgoingPart> {
    try {
      for (;;) {
        while (!window.length && !finished) await new Promise<void>((r) => (wake = r));
        const next = window.shift();
        if (!next) {
          if (failure) throw failure;
          return;
        }
        heldBytes -= next.held;
        signal(room);
        const body = await (next.body ?? instanceBody(opts.blobs, next.i, next.ts));
        opts.onPart?.(next.i);
        yield { contentType: `application/dicom; transfer-syntax=${next.ts}`, body };
      }
    } finally {
      // The client went away or the body is complete: the producer stops and the provider releases what it
      // holds (after an instance it is still waiting for, if any).
      stopped = true;
      signal(room);
      void Promise.resolve(it.return?.()).catch(() => undefined);
    }
  })();
  const boundary = newBoundary();
  reply.type(`multipart/related; type="application/dicom"; boundary=${boundary}`);
  return reply.send(multipartStream(parts, boundary));
}

/**
 * One instance as a single-part application/dicom body (as stored), for clients that ask for exactly that on an
 * instance resource, such as viewers loading instance by instance.
 */
export async function sendSingleInstance(reply: FastifyReply, instances: AsyncIterable<StoredInstance>, opts: { blobs: BlobStore; notFound: string }): Promise<FastifyReply> {
  const it = instances[Symbol.asyncIterator]();
  const first = await it.next();
  await it.return?.();
  if (first.done) throw new HttpError(404, opts.notFound);
  const i = first.value;
  reply.type(`application/dicom; transfer-syntax=${i.transferSyntaxUid}`);
  reply.header('Content-Length', String(i.size));
  return reply.send(opts.blobs.read(i.blobKey));
}

/** True when the client asks for a bare DICOM file rather than a multipart body. */
export function wantsSinglePart(req: FastifyRequest): boolean {
  const accepted = acceptList(req);
  return accepted.some((a) => a.type === 'application/dicom') && !accepted.some((a) => a.type.startsWith('multipart/'));
}

/** Streams the indexed metadata (DICOM JSON) of a target, never reading the files. */
export async function sendMetadata(reply: FastifyReply, index: StudyIndex, target: WadoTarget, rebase: (json: string) => string): Promise<FastifyReply> {
  const gen = index.metadata(target);
  const first = await gen.next();
  if (first.done) throw new HttpError(404, `no instances found for ${describeTarget(target)}`);
  // A 1,000-instance study costs one query per 500 instances.
  async function* body() {
    yield '[' + rebase(first.value as string);
    for await (const m of gen) yield ',' + rebase(m);
    yield ']';
  }
  reply.type('application/dicom+json');
  return reply.send(Readable.from(body()));
}

/** Where a WADO-RS service finds the instances it serves: the local index, or a cache filled on demand. */
export interface InstanceProvider {
  /** The target's instances, yielded as each becomes available locally. */
  instances(target: WadoTarget): AsyncIterable<StoredInstance>;
  /** Resolves once every instance of the target is available locally (before metadata is served). */
  prepare(target: WadoTarget): Promise<void>;
}

/**
 * The WADO-RS retrieve and metadata resources (study, series, instance) over an InstanceProvider, as served to
 * other DRIMboxes (IHE RAD-107 Imaging Document Source side).
 */
export async function wadoRoutes(app: FastifyInstance, deps: { provider: InstanceProvider; index: StudyIndex; blobs: BlobStore; baseUrl: (req: FastifyRequest) => string; onInstanceSent?: (req: FastifyRequest) => void }): Promise<void> {
  const retrieve = async (req: FastifyRequest<{ Params: WadoParams }>, reply: FastifyReply) => {
    const target = targetOf(req.params);
    return sendInstances(req, reply, deps.provider.instances(target), { blobs: deps.blobs, notFound: `${describeTarget(target)} not found`, onPart: () => deps.onInstanceSent?.(req) });
  };
  app.get('/studies/:study', retrieve);
  app.get('/studies/:study/series/:series', retrieve);
  app.get('/studies/:study/series/:series/instances/:instance', retrieve);

  const metadata = async (req: FastifyRequest<{ Params: WadoParams }>, reply: FastifyReply) => {
    const target = targetOf(req.params);
    await deps.provider.prepare(target);
    const base = deps.baseUrl(req);
    return sendMetadata(reply, deps.index, target, (text) => text.replaceAll('"opendrim-base:', `"${base}`));
  };
  app.get('/studies/:study/metadata', metadata);
  app.get('/studies/:study/series/:series/metadata', metadata);
  app.get('/studies/:study/series/:series/instances/:instance/metadata', metadata);
}
