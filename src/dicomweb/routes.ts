import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config/config.js';
import { anonymousNetworkGuard, clientAddress } from '../common/access.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { Logger } from '../common/log.js';
import { UNCOMPRESSED_SYNTAXES } from '../dicom/part10.js';
import type { StudyIndex, StoredInstance } from '../store/study-index.js';
import { QueryError } from '../store/study-index.js';
import type { BlobStore } from '../store/blobs.js';
import type { Ingestor } from '../store/ingest.js';
import type { Metrics } from '../ops/metrics.js';
import { multipartStream, newBoundary, MultipartError } from './multipart.js';
import { stowRoutes } from './stow.js';
import { HttpError, UID, acceptList, checkUids, requestedSyntaxes, sendInstances, sendMetadata, targetOf, describeTarget, type WadoParams } from './wado.js';
import { parseQido, shapeResult } from './qido.js';
import { PixelError, readElementBytes, readFrames, renderFrame } from './pixels.js';
import { clientMessage } from '../common/errors.js';

export interface DicomwebDeps {
  config: Config;
  index: StudyIndex;
  blobs: BlobStore;
  ingestor: Ingestor;
  metrics: Metrics;
  log: Logger;
  audit?: AuditTrail;
  space?: { low: boolean };
}

type Params = WadoParams;

export async function dicomwebRoutes(app: FastifyInstance, deps: DicomwebDeps): Promise<void> {
  const { config, index, blobs, ingestor, metrics, log, audit } = deps;

  // Secure default until user authentication exists: patient data only to the allowed networks (loopback).
  app.addHook('onRequest', anonymousNetworkGuard(config.dicomweb.anonymousFrom, log, 'DICOMweb'));
  app.addHook('onResponse', async (req, reply) => auditRequest(req, reply));

  /** One audit record per request that touched patient data: who (client address), what, which study, outcome. */
  async function auditRequest(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!audit) return;
    const params = (req.params ?? {}) as Params;
    const route = req.routeOptions.url ?? '';
    const action = req.method === 'POST' ? 'dicomweb.store' : /\/(studies|series|instances)$/.test(route) ? 'dicomweb.search' : 'dicomweb.retrieve';
    const status = reply.statusCode;
    const outcome = status < 400 ? 'success' : status === 401 || status === 403 ? 'refused' : 'failure';
    const extra = (req as FastifyRequest & { auditDetail?: Record<string, unknown> }).auditDetail ?? {};
    const studyUid = params.study ?? (extra.studyUid as string | undefined);
    const patientId = studyUid && UID.test(studyUid) ? await index.patientOfStudy(studyUid).catch(() => undefined) : undefined;
    await audit.record({ actorType: 'http-client', actorId: clientAddress(req), actorAddress: clientAddress(req), action, studyUid, patientId, outcome, detail: { method: req.method, route, status, query: req.query, ...extra } });
  }

  // STOW bodies are parsed as streams by the handler; fastify must not buffer them.
  app.addContentTypeParser('application/dicom', (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err instanceof HttpError ? err.status : err instanceof QueryError || err instanceof MultipartError ? 400 : err instanceof PixelError ? err.status : (err.statusCode ?? 500);
    if (status >= 500) {
      metrics.errors.inc({ component: 'dicomweb' });
      log.error({ err, reqId: req.id }, 'DICOMweb request failed');
    } else {
      log.info({ method: req.method, url: req.url, status, reason: err.message }, 'DICOMweb request refused');
    }
    reply.code(status).type('application/json').send({ error: clientMessage(status, err, req.id) });
  });

  const baseUrl = (req: FastifyRequest) => (config.publicUrl ? `${config.publicUrl.replace(/\/$/, '')}/dicom-web` : `${req.protocol}://${req.headers.host}/dicom-web`);
  const withBase = (text: string, base: string) => text.replaceAll('"opendrim-base:', `"${base}`);

  // ---------- QIDO-RS ----------
  const qido = (level: 'STUDY' | 'SERIES' | 'IMAGE') => async (req: FastifyRequest<{ Params: Params; Querystring: Record<string, string | string[]> }>, reply: FastifyReply) => {
    const p = req.params;
    checkUids(p);
    const q = parseQido(req.query);
    if (p.study) q.keys.set('0020000D', p.study);
    if (p.series) q.keys.set('0020000E', p.series);
    const max = config.dicomweb.maxQidoResults;
    const limit = Math.min(q.limit ?? max, max);
    const { matches, truncated } = await index.find({ level, keys: q.keys, limit, offset: q.offset });
    const base = baseUrl(req);
    // Results of /series and /instances not scoped to a study carry the study's attributes too (PS3.18 10.6.3.3.1).
    const extra: Array<'STUDY' | 'SERIES'> = level === 'SERIES' && !p.study ? ['STUDY'] : level === 'IMAGE' ? (p.series ? [] : p.study ? ['SERIES'] : ['STUDY', 'SERIES']) : [];
    const body = matches.map((m) => {
      const url = level === 'STUDY' ? `${base}/studies/${m.studyUid}` : level === 'SERIES' ? `${base}/studies/${m.studyUid}/series/${m.seriesUid}` : `${base}/studies/${m.studyUid}/series/${m.seriesUid}/instances/${m.sopUid}`;
      return shapeResult(m.attrs, level, q, url, extra);
    });
    const warnings: string[] = [];
    if (truncated || (q.limit === undefined && matches.length === max)) warnings.push('299 OpenDRIM "The number of results exceeded the maximum supported by the server. Additional results can be requested."');
    if (q.fuzzy) warnings.push('299 OpenDRIM "fuzzymatching=true is not supported; matching was exact"');
    if (warnings.length) reply.header('Warning', warnings.join(', '));
    reply.type('application/dicom+json');
    return withBase(JSON.stringify(body), base);
  };
  app.get('/studies', qido('STUDY'));
  app.get('/series', qido('SERIES'));
  app.get('/instances', qido('IMAGE'));
  app.get('/studies/:study/series', qido('SERIES'));
  app.get('/studies/:study/instances', qido('IMAGE'));
  app.get('/studies/:study/series/:series/instances', qido('IMAGE'));

  // ---------- WADO-RS ----------
  async function instancesOf(p: Params): Promise<StoredInstance[]> {
    checkUids(p);
    const list = await index.listInstances({ studyUid: p.study, seriesUid: p.series, sopUid: p.instance });
    if (list.length === 0) throw new HttpError(404, p.instance ? `instance ${p.instance} not found` : p.series ? `series ${p.series} not found` : `study ${p.study} not found`);
    return list;
  }

  const retrieve = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const list = await instancesOf(req.params);
    return sendInstances(req, reply, (async function* () {
      yield* list;
    })(), { blobs, notFound: `${describeTarget(targetOf(req.params))} not found`, onPart: () => metrics.instancesSent.inc({ protocol: 'wado-rs' }) });
  };
  app.get('/studies/:study', retrieve);
  app.get('/studies/:study/series/:series', retrieve);
  app.get('/studies/:study/series/:series/instances/:instance', retrieve);

  const metadata = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const base = baseUrl(req);
    return sendMetadata(reply, index, targetOf(req.params), (text) => withBase(text, base));
  };
  app.get('/studies/:study/metadata', metadata);
  app.get('/studies/:study/series/:series/metadata', metadata);
  app.get('/studies/:study/series/:series/instances/:instance/metadata', metadata);

  function frameNumbers(spec: string | undefined): number[] {
    const nums = (spec ?? '').split(',').map((s) => s.trim());
    if (!nums.length || nums.some((n) => !/^\d+$/.test(n) || Number(n) < 1)) throw new HttpError(400, `frame list "${spec}" must be positive integers separated by commas`);
    return nums.map(Number);
  }

  async function loadFrames(p: Params, decode = false) {
    const [inst] = await instancesOf(p);
    const path = blobs.localPath(inst!.blobKey);
    if (!path) throw new HttpError(501, 'frame retrieval needs local storage');
    return readFrames(path, { decode });
  }

  app.get('/studies/:study/series/:series/instances/:instance/frames/:frames', async (req: FastifyRequest<{ Params: Params }>, reply) => {
    const wanted = frameNumbers(req.params.frames);
    // Compressed frames go out as stored unless the client asks for a native syntax; then they are decoded.
    const asked = requestedSyntaxes(req);
    const decoded = await loadFrames(req.params, asked !== undefined && [...asked].some((t) => UNCOMPRESSED_SYNTAXES.has(t)));
    for (const n of wanted) if (n > decoded.frames.length) throw new HttpError(404, `frame ${n} does not exist (instance has ${decoded.frames.length})`);
    const native = ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2'].includes(decoded.transferSyntaxUid);
    if (!acceptList(req).some((a) => a.type === 'multipart/related' || a.type === 'multipart/*' || a.type === '*/*')) throw new HttpError(406, 'frames are offered as multipart/related');
    const boundary = newBoundary();
    reply.type(`multipart/related; type="application/octet-stream"; boundary=${boundary}`);
    return reply.send(
      multipartStream(
        wanted.map((n) => ({
          contentType: native ? 'application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1' : `application/octet-stream; transfer-syntax=${decoded.transferSyntaxUid}`,
          headers: { 'Content-Location': `${baseUrl(req)}/studies/${req.params.study}/series/${req.params.series}/instances/${req.params.instance}/frames/${n}` },
          body: decoded.frames[n - 1]!,
        })),
        boundary,
      ),
    );
  });

  app.get('/studies/:study/series/:series/instances/:instance/bulk/:tag', async (req: FastifyRequest<{ Params: Params }>, reply) => {
    const tag = String(req.params.tag).toUpperCase();
    if (!/^[0-9A-F]{8}$/.test(tag)) throw new HttpError(400, 'bulk data tag must be 8 hex digits');
    const boundary = newBoundary();
    if (tag === '7FE00010') {
      const decoded = await loadFrames(req.params);
      reply.type(`multipart/related; type="application/octet-stream"; boundary=${boundary}`);
      return reply.send(multipartStream([{ contentType: `application/octet-stream; transfer-syntax=${decoded.transferSyntaxUid}`, body: Buffer.concat(decoded.frames) }], boundary));
    }
    const [inst] = await instancesOf(req.params);
    const bytes = await readElementBytes(blobs.localPath(inst!.blobKey)!, tag);
    if (!bytes) throw new HttpError(404, `instance has no bulk data element ${tag}`);
    reply.type(`multipart/related; type="application/octet-stream"; boundary=${boundary}`);
    return reply.send(multipartStream([{ contentType: 'application/octet-stream', body: bytes }], boundary));
  });

  // Rendered and thumbnail resources (PS3.18 9.5, 9.7): JPEG by default, PNG on request.
  const renderedFormat = (req: FastifyRequest): 'jpeg' | 'png' => {
    const types = acceptList(req).map((a) => a.type);
    if (types.some((t) => t === 'image/jpeg' || t === 'image/*' || t === '*/*')) return 'jpeg';
    if (types.includes('image/png')) return 'png';
    throw new HttpError(406, 'rendered images are offered as image/jpeg or image/png');
  };
  const parseWindow = (q: Record<string, string>) => {
    if (!q.window) return undefined;
    const [c, w] = q.window.split(',').map(Number);
    if (!Number.isFinite(c) || !Number.isFinite(w) || w! <= 0) throw new HttpError(400, 'window must be center,width[,function] with a positive width');
    return { center: c!, width: w! };
  };
  const rendered = (thumbnail: boolean) => async (req: FastifyRequest<{ Params: Params; Querystring: Record<string, string> }>, reply: FastifyReply) => {
    const format = renderedFormat(req);
    const p = req.params;
    let frameIndex = 0;
    let target: Params = p;
    if (!p.instance) {
      // Study or series rendition: the middle instance of the (first) series stands for it.
      const list = await instancesOf(p);
      const series = list.filter((i) => i.seriesUid === list[0]!.seriesUid);
      const mid = series[Math.floor(series.length / 2)]!;
      target = { study: mid.studyUid, series: mid.seriesUid, instance: mid.sopUid };
    }
    if (p.frames) frameIndex = frameNumbers(p.frames)[0]! - 1;
    const decoded = await loadFrames(target, true);
    const vp = req.query.viewport ? Number(String(req.query.viewport).split(',')[0]) : undefined;
    const q = req.query.quality ? Number(req.query.quality) : undefined;
    const img = renderFrame(decoded, frameIndex, { format, window: parseWindow(req.query), maxSize: thumbnail ? Math.min(vp ?? 128, 512) : vp, quality: q });
    reply.type(format === 'png' ? 'image/png' : 'image/jpeg');
    return img;
  };
  for (const suffix of ['rendered', 'thumbnail'] as const) {
    const thumb = suffix === 'thumbnail';
    app.get(`/studies/:study/${suffix}`, rendered(thumb));
    app.get(`/studies/:study/series/:series/${suffix}`, rendered(thumb));
    app.get(`/studies/:study/series/:series/instances/:instance/${suffix}`, rendered(thumb));
    app.get(`/studies/:study/series/:series/instances/:instance/frames/:frames/${suffix}`, rendered(thumb));
  }

  // ---------- STOW-RS ----------
  await app.register(stowRoutes, { ingestor, metrics, log, maxBytes: config.dicomweb.maxStowBytes, baseUrl, space: deps.space });
}
