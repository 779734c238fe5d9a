import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../common/log.js';
import type { DicomJson } from '../dicom/part10.js';
import type { BlobWriter } from '../store/blobs.js';
import { IngestError, type Ingestor, type IngestResult } from '../store/ingest.js';
import type { Metrics } from '../ops/metrics.js';
import { parseMediaType, parseMultipart } from './multipart.js';
import { HttpError, checkUids, type WadoParams } from './wado.js';

export interface StowOptions {
  ingestor: Ingestor;
  metrics: Metrics;
  log: Logger;
  /** Largest request accepted, counted after decompression (a small gzip body cannot expand without bound). */
  maxBytes: number;
  baseUrl: (req: FastifyRequest) => string;
  /** Most parts one request may carry (default 10,000). */
  maxParts?: number;
  /** The storage's free space: while it is low, requests are answered 503 before any byte is written. */
  space?: { low: boolean };
  /** Called for every instance stored, with the request it came in (e.g. to watch the study it belongs to). */
  onStored?: (req: FastifyRequest, result: IngestResult) => void | Promise<void>;
}

/**
 * STOW-RS (PS3.18 10.5): multipart/related bodies of application/dicom parts, streamed part by part into the
 * store (never the whole request in memory), with Content-Encoding gzip accepted for senders on slow links.
 */
export async function stowRoutes(app: FastifyInstance, opts: StowOptions): Promise<void> {
  const { ingestor, metrics, log, baseUrl } = opts;
  app.addContentTypeParser('multipart/related', (_req, payload, done) => done(null, payload));
  const stow = async (req: FastifyRequest<{ Params: WadoParams }>, reply: FastifyReply) => {
    checkUids(req.params);
    if (opts.space?.low) {
      reply.header('Retry-After', '300');
      throw new HttpError(503, 'the storage is almost full: instances are not accepted until space is freed');
    }
    const ct = parseMediaType(req.headers['content-type']);
    if (ct.type !== 'multipart/related') throw new HttpError(415, 'STOW-RS takes multipart/related; type="application/dicom"');
    if (ct.params.type && ct.params.type !== 'application/dicom') throw new HttpError(415, `STOW-RS part type ${ct.params.type} is not supported (only application/dicom)`);
    const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity' && encoding !== 'gzip') throw new HttpError(415, `Content-Encoding ${encoding} is not supported (gzip or none)`);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > opts.maxBytes) throw new HttpError(413, `request of ${declared} bytes exceeds the ${opts.maxBytes}-byte limit`);
    const stored: IngestResult[] = [];
    const failed: Array<{ sopClassUid?: string; sopUid?: string; reason: number; message: string }> = [];
    const raw = req.body as Readable;
    const body: AsyncIterable<Buffer> = encoding === 'gzip' ? raw.pipe(createGunzip()).on('error', () => undefined) : raw;
    let total = 0;
    async function* limited() {
      try {
        for await (const chunk of body) {
          total += chunk.length;
          if (total > opts.maxBytes) throw new HttpError(413, `request exceeds the ${opts.maxBytes}-byte limit${encoding === 'gzip' ? ' once decompressed' : ''}`);
          yield chunk;
        }
      } catch (e) {
        if (e instanceof HttpError) throw e;
        throw new HttpError(400, `request body could not be read${encoding === 'gzip' ? ' (gzip)' : ''}: ${(e as Error).message}`);
      }
    }
    const inFlight = new Set<BlobWriter>();
    try {
      // Bounded parts: 100,000 empty parts once kept a node busy for minutes.
      await parseMultipart(limited(), ct.params.boundary ?? '', (part) => onPart(part), { maxParts: opts.maxParts ?? 10_000 });
    } catch (e) {
      // A body cut short or malformed: drop the part being received; instances already committed stay stored.
      await Promise.all([...inFlight].map((w) => w.discard()));
      throw e;
    }
    function onPart(part: { headers: Record<string, string> }) {
      const writer: BlobWriter = ingestor.begin();
      inFlight.add(writer);
      const partType = parseMediaType(part.headers['content-type'] ?? 'application/dicom').type;
      return {
        writable: writer,
        done: async () => {
          inFlight.delete(writer);
          if (partType !== 'application/dicom') {
            await writer.discard();
            failed.push({ reason: 0xc000, message: `part of type ${partType} skipped` });
            return;
          }
          const t = Date.now();
          try {
            const r = await ingestor.commit(writer, { sourceAe: undefined });
            if (req.params.study && r.studyUid !== req.params.study) {
              // Stored already; reported as a failure per PS3.18 10.5.3: not part of the target study.
              failed.push({ sopClassUid: r.sopClassUid, sopUid: r.sopUid, reason: 0xa900, message: 'instance belongs to another study' });
              return;
            }
            stored.push(r);
            await opts.onStored?.(req, r);
            metrics.instancesReceived.inc({ protocol: 'stow-rs', outcome: r.outcome });
            metrics.bytesReceived.inc({ protocol: 'stow-rs' }, r.bytes);
            metrics.storeLatency.observe({ protocol: 'stow-rs' }, (Date.now() - t) / 1000);
          } catch (e) {
            const ie = e instanceof IngestError ? e : new IngestError(String(e), 'storage');
            metrics.instancesReceived.inc({ protocol: 'stow-rs', outcome: 'refused' });
            failed.push({ reason: ie.kind === 'mismatch' ? 0xa900 : ie.kind === 'too-large' || ie.kind === 'storage' ? 0xa700 : 0xc000, message: ie.message });
          }
        },
      };
    }
    const base = baseUrl(req);
    const resp: DicomJson = {};
    if (req.params.study || stored[0]) resp['00081190'] = { vr: 'UR', Value: [`${base}/studies/${req.params.study ?? stored[0]!.studyUid}`] };
    if (stored.length) {
      resp['00081199'] = {
        vr: 'SQ',
        Value: stored.map((r) => ({
          '00081150': { vr: 'UI', Value: [r.sopClassUid] },
          '00081155': { vr: 'UI', Value: [r.sopUid] },
          '00081190': { vr: 'UR', Value: [`${base}/studies/${r.studyUid}/series/${r.seriesUid}/instances/${r.sopUid}`] },
        })),
      };
    }
    if (failed.length) {
      resp['00081198'] = {
        vr: 'SQ',
        Value: failed.map((f) => ({
          ...(f.sopClassUid ? { '00081150': { vr: 'UI', Value: [f.sopClassUid] } } : {}),
          ...(f.sopUid ? { '00081155': { vr: 'UI', Value: [f.sopUid] } } : {}),
          '00081197': { vr: 'US', Value: [f.reason] },
        })),
      };
      log.warn({ failed: failed.map((f) => f.message) }, 'STOW-RS: some instances were refused');
    }
    const status = failed.length === 0 ? 200 : stored.length === 0 ? 409 : 202;
    (req as FastifyRequest & { auditDetail?: Record<string, unknown> }).auditDetail = { studyUid: stored[0]?.studyUid, studies: [...new Set(stored.map((r) => r.studyUid))], stored: stored.length, failed: failed.length };
    reply.code(status).type('application/dicom+json');
    return JSON.stringify(resp);
  };
  app.post('/studies', stow);
  app.post('/studies/:study', stow);
}
