import { createHash } from 'node:crypto';
import { allowed } from '../auth/roles.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { clientAddress } from '../common/access.js';
import { readManifest, type ManifestSeries } from '../consumer/manifest-reader.js';
import { RemoteSeriesError } from '../consumer/remote-exam-cache.js';
import { HttpError, sendInstances, sendSingleInstance, UID, wantsSinglePart } from '../dicomweb/wado.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

/** An exam opened in a session: what its KOS says, so its series can be fetched from the source box. */
export interface OpenExam {
  studyUid: string;
  manifestUid: string;
  series: ManifestSeries[];
  report?: { repositoryUniqueId: string; uniqueId: string };
}

/**
 * dwv is an ES module importing "konva", "jszip" and "magic-wand-tool"; the page maps them to small shims over
 * the UMD builds. The map is inline, so its hash is allowed in the Content-Security-Policy.
 */
export const IMPORT_MAP = JSON.stringify({ imports: { konva: '/app/static/shim-konva.js', jszip: '/app/static/shim-jszip.js', 'magic-wand-tool': '/app/static/shim-magic-wand.js' } });
export const IMPORT_MAP_HASH = `'sha256-${createHash('sha256').update(IMPORT_MAP).digest('base64')}'`;

export async function viewerRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const { sessions, exams, remote, audit, blobs } = deps;

  /** Opens (or reopens) an exam of the patient in context: KOS from the DMP (ITI-43), kept in the session. */
  async function openExam(req: FastifyRequest, reply: FastifyReply): Promise<OpenExam | undefined> {
    const r = req as WebRequest;
    const s = r.session!;
    const { repo, uid } = req.params as { repo: string; uid: string };
    const patient = s.data.patient;
    if (!patient?.documents.includes(uid)) {
      await audit.record({ actorType: 'practitioner', actorId: s.data.professional.id, actorAddress: clientAddress(req), action: 'consumer.open', patientId: patient?.ins, outcome: 'refused', detail: { manifest: uid, reason: 'not a document of the patient in context' } });
      reply.code(403).type('text/html').send(page(pageContext(r), r.t.forbidden, `<h1>${esc(r.t.forbidden)}</h1>`));
      return undefined;
    }
    const known = Object.values(s.data.exams).find((e) => e.manifestUid === uid);
    if (known) return known;
    const manifest = readManifest(await exams.retrieve({ repositoryUniqueId: repo, uniqueId: uid, entryUUID: '' }));
    const listed = await exams.list({ ins: patient.ins, oid: patient.oid });
    const paired = listed.find((e) => e.manifest?.uniqueId === uid)?.report;
    const exam: OpenExam = { studyUid: manifest.studyUid, manifestUid: uid, series: manifest.series, report: paired ? { repositoryUniqueId: paired.repositoryUniqueId, uniqueId: paired.uniqueId } : undefined };
    s.data.exams[manifest.studyUid] = exam;
    await sessions.update(s.token, s.data);
    await audit.record({ actorType: 'practitioner', actorId: s.data.professional.id, actorAddress: clientAddress(req), action: 'consumer.open', patientId: patient.ins, studyUid: manifest.studyUid, outcome: 'success', detail: { manifest: uid, series: manifest.series.length, instances: manifest.series.reduce((n, x) => n + x.instances.length, 0), source: manifest.series[0]?.retrieveUrl } });
    return exam;
  }

  const manifestJson = (exam: OpenExam) => ({
    studyUid: exam.studyUid,
    report: exam.report ? `/app/reports/${exam.report.repositoryUniqueId}/${exam.report.uniqueId}/body` : undefined,
    series: exam.series.map((se, i) => ({
      seriesUid: se.seriesUid,
      label: `${i + 1}`,
      count: se.instances.length,
      // "The k-th instance to be available" rather than instance UIDs: the first image shows as soon as any
      // instance has arrived, whatever order the source box receives them from its PACS in.
      instances: se.instances.map((_x, k) => `/app/dicom-web/studies/${exam.studyUid}/series/${se.seriesUid}/arrivals/${k}`),
    })),
  });

  app.get('/app/exams/:repo/:uid/manifest.json', async (req, reply) => {
    const exam = await openExam(req, reply);
    if (!exam) return reply;
    return reply.type('application/json').send(manifestJson(exam));
  });

  app.get('/app/exams/:repo/:uid', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    const exam = await openExam(req, reply);
    if (!exam) return reply;
    const patient = r.session!.data.patient!;
    const others = (await exams.list({ ins: patient.ins, oid: patient.oid })).filter((e) => e.manifest && e.manifest.uniqueId !== exam.manifestUid);
    const { repo, uid } = req.params as { repo: string; uid: string };
    const body = `<div class="viewer" id="viewer" data-manifest="/app/exams/${esc(repo)}/${esc(uid)}/manifest.json">
<div class="toolbar" id="toolbar">
<button data-tool="Scroll" class="active">${esc(t.scroll)}</button><button data-tool="WindowLevel">${esc(t.windowLevel)}</button><button data-tool="ZoomAndPan">${esc(t.zoomPan)}</button><button data-tool="Draw">${esc(t.ruler)}</button><button id="reset">${esc(t.reset)}</button>
<label>${esc(t.compare)} <select id="compare"><option value="">${esc(t.noCompare)}</option>${others.map((e) => `<option value="/app/exams/${esc(e.manifest!.repositoryUniqueId)}/${esc(e.manifest!.uniqueId)}/manifest.json">${esc(e.date ?? '')} ${esc(e.modalities.join('/'))} ${esc(e.description ?? '')}</option>`).join('')}</select></label>
<a href="/app/patient?ins=${esc(patient.ins)}&amp;oid=${esc(patient.oid)}">${esc(t.back)}</a>
${deps.imports && allowed(r.roles ?? [], 'exams.import') ? `<form method="post" action="/app/exams/${esc(repo)}/${esc(uid)}/import" class="inline"><input type="hidden" name="csrf" value="${esc(r.session!.csrf)}"><button type="submit" id="import">${esc(t.importToPacs)}</button></form>` : ''}
<span id="status" class="status">${esc(t.loading)}</span></div>
<div class="viewer-body"><aside class="series" id="series-list" aria-label="${esc(t.series)}"></aside>
<section class="panes"><div class="pane" id="pane0"><div id="layerGroup0" class="layer-group"></div></div><div class="pane hidden" id="pane1"><div id="layerGroup1" class="layer-group"></div></div></section>
${exam.report ? `<aside class="report-pane"><iframe id="viewer-report" title="${esc(t.report)}" src="/app/reports/${esc(exam.report.repositoryUniqueId)}/${esc(exam.report.uniqueId)}/body"></iframe></aside>` : ''}</div></div>`;
    const html = page(pageContext(r), t.viewer, body, { wide: true, head: `<script type="importmap">${IMPORT_MAP}</script>`, scripts: ['/app/static/konva.min.js', '/app/static/jszip.min.js', '/app/static/magic-wand.js'], modules: ['/app/static/viewer.js'] });
    return reply.type('text/html').send(html);
  });

  /**
   * WADO-RS for the viewer, over exams opened in this session only: answered from the local copy, else from
   * the source box named in the KOS (fetched once per series, streamed as it arrives).
   */
  const retrieve = async (req: FastifyRequest, reply: FastifyReply) => {
    const r = req as WebRequest;
    const p = req.params as { study: string; series: string; instance?: string };
    for (const v of [p.study, p.series, p.instance]) if (v !== undefined && !UID.test(v)) throw new HttpError(400, 'not a DICOM UID');
    const exam = r.session!.data.exams[p.study];
    const series = exam?.series.find((s) => s.seriesUid === p.series);
    if (!exam || !series) throw new HttpError(403, 'open the exam from the patient list first');
    if (p.instance && !series.instances.some((i) => i.sopUid === p.instance)) throw new HttpError(404, `instance ${p.instance} is not in this exam`);
    const who = { professional: r.session!.data.professional, patient: r.session!.data.patient?.ins };
    try {
      const instances = remote.instances({ studyUid: p.study, seriesUid: p.series, sopUid: p.instance }, series, who);
      if (p.instance && wantsSinglePart(req)) return await sendSingleInstance(reply, instances, { blobs, notFound: 'not available' });
      return await sendInstances(req, reply, instances, { blobs, notFound: 'not available' });
    } catch (e) {
      if (e instanceof RemoteSeriesError) throw new HttpError(502, e.message);
      throw e;
    }
  };
  app.get('/app/dicom-web/studies/:study/series/:series/arrivals/:k', async (req, reply) => {
    const r = req as WebRequest;
    const p = req.params as { study: string; series: string; k: string };
    if (!UID.test(p.study) || !UID.test(p.series) || !/^\d{1,6}$/.test(p.k)) throw new HttpError(400, 'bad series or index');
    const exam = r.session!.data.exams[p.study];
    const series = exam?.series.find((s) => s.seriesUid === p.series);
    if (!exam || !series) throw new HttpError(403, 'open the exam from the patient list first');
    let inst;
    try {
      inst = await remote.nth({ studyUid: p.study, seriesUid: p.series }, Number(p.k), series, { professional: r.session!.data.professional, patient: r.session!.data.patient?.ins });
    } catch (e) {
      if (e instanceof RemoteSeriesError) throw new HttpError(502, e.message);
      throw e;
    }
    if (!inst) throw new HttpError(404, `the series has no instance ${p.k}`);
    reply.type(`application/dicom; transfer-syntax=${inst.transferSyntaxUid}`);
    reply.header('Content-Length', String(inst.size));
    return reply.send(blobs.read(inst.blobKey));
  });
  app.get('/app/dicom-web/studies/:study/series/:series', retrieve);
  app.get('/app/dicom-web/studies/:study/series/:series/instances/:instance', retrieve);
}
