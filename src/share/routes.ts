import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import { anonymousNetworkGuard, clientAddress } from '../common/access.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import { UID, type InstanceProvider } from '../dicomweb/wado.js';
import type { BlobStore } from '../store/blobs.js';
import type { StoredInstance, StudyIndex } from '../store/study-index.js';
import { MESSAGES, pickLang } from '../web/i18n.js';
import { esc, page } from '../web/html.js';
import { IMPORT_MAP, IMPORT_MAP_HASH } from '../web/viewer-routes.js';
import { ShareError, type ShareLink, type ShareLinks } from './share-links.js';
import { streamExamZip } from './exam-zip.js';

export interface ShareDeps {
  links: ShareLinks;
  /** The exam's instances, from the store or brought from the PACS on demand. */
  provider: InstanceProvider;
  index: StudyIndex;
  blobs: BlobStore;
  audit: AuditTrail;
  config: Config;
  log: Logger;
  /** Base URL of the links handed out (publicUrl). */
  publicBase: () => string;
}

const proofCookie = (id: number | bigint) => `share_${id}`;

/** Every instance of the study, brought from the PACS first if need be. */
async function studyInstances(provider: InstanceProvider, studyUid: string): Promise<StoredInstance[]> {
  const out: StoredInstance[] = [];
  for await (const i of provider.instances({ studyUid })) out.push(i);
  return out;
}

/**
 * Share links. For the patient or correspondent (no account): /share/TOKEN opens the viewer on that exam only,
 * after the access code when the link has one; every opening and refusal is audited; rate-limited per client.
 * For administrators (their networks only): /api/share-links to create, list and revoke.
 */
export async function shareRoutes(app: FastifyInstance, deps: ShareDeps): Promise<void> {
  const { links, audit, log, config } = deps;
  const share = config.share!;
  const secure = deps.publicBase().startsWith('https:');

  await app.register(async (pub) => {
    await pub.register(cookie);
    await pub.register(formbody, { bodyLimit: 4096 });
    await pub.register(rateLimit, { max: share.perMinute, timeWindow: 60_000, keyGenerator: (req) => clientAddress(req) });
    pub.addHook('onSend', async (_req, reply) => {
      reply.header('Content-Security-Policy', `default-src 'self'; img-src 'self' data: blob:; script-src 'self' ${IMPORT_MAP_HASH}; style-src 'self'; style-src-attr 'unsafe-inline'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'`);
      reply.header('Referrer-Policy', 'no-referrer');
    });
    const lang = (req: FastifyRequest) => MESSAGES[pickLang((req.query as Record<string, unknown>)?.lang, req.cookies.lang)];
    const ctx = (req: FastifyRequest) => ({ lang: pickLang((req.query as Record<string, unknown>)?.lang, req.cookies.lang), t: lang(req) });

    /** The link, checked (validity, expiry, revocation, code proof); a refusal is answered and audited. */
    const openLink = async (req: FastifyRequest, reply: FastifyReply, opts: { page: boolean }): Promise<{ link: ShareLink; token: string; needsCode: boolean } | undefined> => {
      const token = (req.params as { token: string }).token;
      try {
        const link = await links.resolve(token);
        const needsCode = !links.proofMatches(link, token, req.cookies[proofCookie(link.id)]);
        return { link, token, needsCode };
      } catch (e) {
        if (!(e instanceof ShareError)) throw e;
        await audit.record({ actorType: 'patient', actorId: `share-link@${clientAddress(req)}`, actorAddress: clientAddress(req), action: 'share.open', outcome: 'refused', detail: { reason: e.message } });
        if (opts.page) reply.code(e.status).type('text/html').send(page(ctx(req), lang(req).linkUnavailable, `<section class="card"><h1>${esc(lang(req).linkUnavailable)}</h1><p class="error" id="share-error">${esc(e.message)}</p></section>`));
        else reply.code(e.status).send({ error: e.message });
        return undefined;
      }
    };
    const codeForm = (req: FastifyRequest, reply: FastifyReply, token: string, wrong: boolean) => {
      const t = lang(req);
      return reply
        .code(wrong ? 403 : 200)
        .type('text/html')
        .send(
          page(
            ctx(req),
            t.sharedExam,
            `<section class="card"><h1>${esc(t.sharedExam)}</h1><p>${esc(t.sharedIntro)}</p>${wrong ? `<p class="error" id="wrong-code">${esc(t.wrongCode)}</p>` : ''}
<form method="post" action="/share/${esc(token)}"><label>${esc(t.accessCode)} <input name="code" id="access-code" inputmode="numeric" autocomplete="one-time-code" maxlength="6" pattern="[0-9]{6}" required></label> <button type="submit" id="open-share">${esc(t.open)}</button><p><small>${esc(t.accessCodeHelp)}</small></p></form></section>`,
          ),
        );
    };

    pub.get('/share/:token', async (req, reply) => {
      const o = await openLink(req, reply, { page: true });
      if (!o) return reply;
      if (o.needsCode) return codeForm(req, reply, o.token, false);
      await links.opened(o.link);
      await audit.record({ actorType: 'patient', actorId: `share-link:${o.link.id}`, actorAddress: clientAddress(req), action: 'share.open', studyUid: o.link.study_uid, patientId: o.link.patient_id, outcome: 'success', detail: { link: Number(o.link.id) } });
      const t = lang(req);
      const base = `/share/${esc(o.token)}`;
      const body = `<div class="viewer" id="viewer" data-manifest="${base}/manifest.json">
<div class="toolbar" id="toolbar"><strong>${esc(t.sharedExam)}</strong>
<button data-tool="Scroll" class="active">${esc(t.scroll)}</button><button data-tool="WindowLevel">${esc(t.windowLevel)}</button><button data-tool="ZoomAndPan">${esc(t.zoomPan)}</button><button data-tool="Draw">${esc(t.ruler)}</button><button id="reset">${esc(t.reset)}</button>
<select id="compare" hidden><option value=""></option></select><a id="download" href="${base}/exam.zip">${esc(t.downloadExam)}</a>
<span id="status" class="status">${esc(t.loading)}</span></div>
<div class="viewer-body"><aside class="series" id="series-list" aria-label="${esc(t.series)}"></aside>
<section class="panes"><div class="pane" id="pane0"><div id="layerGroup0" class="layer-group"></div></div><div class="pane hidden" id="pane1"><div id="layerGroup1" class="layer-group"></div></div></section></div></div>`;
      return reply.type('text/html').send(page(ctx(req), t.sharedExam, body, { wide: true, head: `<script type="importmap">${IMPORT_MAP}</script>`, scripts: ['/app/static/konva.min.js', '/app/static/jszip.min.js', '/app/static/magic-wand.js'], modules: ['/app/static/viewer.js'] }));
    });

    pub.post<{ Body: { code?: string } }>('/share/:token', async (req, reply) => {
      const o = await openLink(req, reply, { page: true });
      if (!o) return reply;
      if (!(await links.checkCode(o.link, String(req.body?.code ?? '')))) {
        await audit.record({ actorType: 'patient', actorId: `share-link:${o.link.id}`, actorAddress: clientAddress(req), action: 'share.code', studyUid: o.link.study_uid, patientId: o.link.patient_id, outcome: 'refused', detail: { link: Number(o.link.id), failed: Number(o.link.failed_codes) + 1 } });
        return codeForm(req, reply, o.token, true);
      }
      reply.setCookie(proofCookie(o.link.id), links.proof(o.link, o.token), { path: `/share/${o.token}`, httpOnly: true, secure, sameSite: 'strict', expires: new Date(o.link.expires_at) });
      return reply.redirect(`/share/${o.token}`, 303);
    });

    /** A data request of the viewer or the download: the link must be valid and its code given. */
    const openForData = async (req: FastifyRequest, reply: FastifyReply) => {
      const o = await openLink(req, reply, { page: false });
      if (o?.needsCode) {
        reply.code(403).send({ error: 'the access code is required' });
        return undefined;
      }
      return o;
    };

    /** The exam's series and instances, for the viewer. */
    pub.get('/share/:token/manifest.json', async (req, reply) => {
      const o = await openForData(req, reply);
      if (!o) return reply;
      const instances = await studyInstances(deps.provider, o.link.study_uid);
      const bySeries = new Map<string, typeof instances>();
      for (const i of instances) bySeries.set(i.seriesUid, [...(bySeries.get(i.seriesUid) ?? []), i]);
      return {
        studyUid: o.link.study_uid,
        series: [...bySeries].map(([seriesUid, list], n) => ({
          seriesUid,
          label: String(n + 1),
          count: list.length,
          instances: list.sort((a, b) => (a.instanceNumber ?? 0) - (b.instanceNumber ?? 0)).map((i) => `/share/${o.token}/instances/${i.sopUid}`),
        })),
      };
    });

    pub.get('/share/:token/instances/:sop', async (req, reply) => {
      const o = await openForData(req, reply);
      if (!o) return reply;
      const sop = (req.params as { sop: string }).sop;
      if (!UID.test(sop)) return reply.code(400).send({ error: 'not a DICOM UID' });
      // The instance must belong to the shared study: a link never reaches another exam.
      const inst = (await deps.index.listInstances({ sopUid: sop })).find((i) => i.studyUid === o.link.study_uid);
      if (!inst) return reply.code(404).send({ error: 'no such image in this exam' });
      reply.type(`application/dicom; transfer-syntax=${inst.transferSyntaxUid}`);
      reply.header('Content-Length', String(inst.size));
      return reply.send(deps.blobs.read(inst.blobKey));
    });

    pub.get('/share/:token/exam.zip', async (req, reply) => {
      const o = await openForData(req, reply);
      if (!o) return reply;
      const instances = await studyInstances(deps.provider, o.link.study_uid);
      await audit.record({ actorType: 'patient', actorId: `share-link:${o.link.id}`, actorAddress: clientAddress(req), action: 'share.download', studyUid: o.link.study_uid, patientId: o.link.patient_id, outcome: 'success', detail: { link: Number(o.link.id), instances: instances.length } });
      reply.header('Content-Disposition', 'attachment; filename="examen.zip"');
      reply.type('application/zip');
      return reply.send(await streamExamZip(instances, deps.blobs));
    });
  });

  await app.register(async (admin) => {
    admin.addHook('onRequest', anonymousNetworkGuard(config.dicomweb.anonymousFrom, log, 'share-link administration'));
    admin.post<{ Body: { studyUid?: string; hours?: number; code?: boolean } }>('/api/share-links', async (req, reply) => {
      const b = req.body ?? {};
      if (!b.studyUid || !UID.test(b.studyUid)) return reply.code(400).send({ error: 'studyUid must be a DICOM UID' });
      let instances: StoredInstance[];
      try {
        instances = await studyInstances(deps.provider, b.studyUid);
      } catch (e) {
        return reply.code(502).send({ error: (e as Error).message });
      }
      if (!instances.length) return reply.code(404).send({ error: `study ${b.studyUid} is not available here nor in the PACS` });
      const patientId = (await deps.index.patientOfStudy(b.studyUid)) ?? '';
      try {
        const created = await links.create({ studyUid: b.studyUid, patientId, createdBy: `admin@${clientAddress(req)}`, hours: b.hours ?? share.defaultHours, withCode: b.code ?? true });
        await audit.record({ actorType: 'http-client', actorId: clientAddress(req), actorAddress: clientAddress(req), action: 'share.create', studyUid: b.studyUid, patientId, outcome: 'success', detail: { link: created.id, expiresAt: created.expiresAt, withCode: Boolean(created.code) } });
        return reply.code(201).send({ id: created.id, url: `${deps.publicBase()}/share/${created.token}`, code: created.code, expiresAt: created.expiresAt });
      } catch (e) {
        if (e instanceof ShareError) return reply.code(e.status).send({ error: e.message });
        throw e;
      }
    });
    admin.get<{ Querystring: { study?: string } }>('/api/share-links', async (req) => ({
      links: (await links.list({ studyUid: req.query.study })).map((l) => ({ id: Number(l.id), studyUid: l.study_uid, patientId: l.patient_id, createdBy: l.created_by, withCode: Boolean(l.code_hash), expiresAt: l.expires_at, revokedAt: l.revoked_at ?? undefined, opened: Number(l.opened), failedCodes: Number(l.failed_codes) })),
    }));
    admin.delete<{ Params: { id: string } }>('/api/share-links/:id', async (req, reply) => {
      if (!/^\d{1,12}$/.test(req.params.id)) return reply.code(400).send({ error: 'link id must be a number' });
      const ok = await links.revoke(Number(req.params.id));
      await audit.record({ actorType: 'http-client', actorId: clientAddress(req), actorAddress: clientAddress(req), action: 'share.revoke', outcome: ok ? 'success' : 'failure', detail: { link: Number(req.params.id) } });
      return ok ? reply.code(204).send() : reply.code(404).send({ error: 'no such link, or already revoked' });
    });
  });
}
