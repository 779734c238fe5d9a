import { allowed, type Permission } from '../auth/roles.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { clientAddress } from '../common/access.js';
import { readImagingReport, readReportBody } from '../source/cda.js';
import { examMatches, type Exam, type ExamFilter } from '../consumer/dmp-exams.js';
import { INS_OID, INS_OIDS, validIns } from '../identity/ins.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

/** The patient the practitioner is working on, from a contextual launch or a search by INS. */
export interface PatientContext {
  ins: string;
  oid: string;
  /** Strict INS traits, when the calling system gave them (contextual launch). */
  traits?: { birthName?: string; firstGiven?: string; givenNames?: string; birthDate?: string; sex?: string; birthPlace?: string; usedName?: string; usedGiven?: string };
  planned?: { modality: string; region?: string };
  /** uniqueIds of the DMP documents listed for this patient: only these can be opened. */
  documents: string[];
}

const str = (v: unknown) => (typeof v === 'string' ? v.trim() : '');
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export async function patientRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const { sessions, exams, audit, log } = deps;

  const oidLabel = (oid: string) => (oid === INS_OID.nir ? 'INS-NIR' : oid === INS_OID.nia ? 'INS-NIA' : 'INS-NIR test');

  app.get('/app', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    const current = r.session!.data.patient;
    const q = req.query as Record<string, string>;
    const error = q.invalid ? `<p class="error" id="ins-error">${esc(t.insInvalid)}</p>` : '';
    return reply.type('text/html').send(
      page(
        pageContext(r),
        t.patientSearch,
        `${!allowed(r.roles ?? [], 'exams.view') ? '' : `<section class="card"><h1>${esc(t.patientSearch)}</h1>${error}
<form method="get" action="/app/patient" class="row">
<label>${esc(t.ins)} <input name="ins" id="ins" inputmode="numeric" pattern="[0-9ABab]{15}" maxlength="15" required value="${esc(q.ins ?? current?.ins ?? '')}"></label>
<label>${esc(t.insOid)} <select name="oid" id="oid">${INS_OIDS.map((o) => `<option value="${o}"${(current?.oid ?? INS_OID.nir) === o ? ' selected' : ''}>${oidLabel(o)}</option>`).join('')}</select></label>
<button type="submit" class="primary" id="search">${esc(t.search)}</button></form></section>`}
${(() => {
  // The other screens this node offers, depending on what is configured.
  const may = (p: Permission) => allowed(r.roles ?? [], p);
  const links = [
    deps.imports && may('exams.import') ? ['/app/imports', t.imports] : undefined,
    deps.prefetcher && may('prefetch.view') ? ['/app/prefetch', t.prefetch] : undefined,
    deps.reconciliation && may('identity.reconcile') ? ['/app/reconciliation', t.reconciliation] : undefined,
    deps.media && may('media.import') ? ['/app/media', t.mediaImport] : undefined,
    deps.outbox && may('routing.operate') ? ['/app/routing', t.routing] : undefined,
    deps.publications && may('publications.operate') ? ['/app/publications', t.publications] : undefined,
    may('audit.view') ? ['/app/audit', t.auditTrail] : undefined,
  ].filter((l): l is string[] => Boolean(l));
  return links.length ? `<nav class="card" id="screens">${links.map(([href, label]) => `<a href="${href}">${esc(label)}</a>`).join(' · ')}</nav>` : '';
})()}`,
      ),
    );
  });

  /**
   * Contextual launch ("appel contextuel"): the RIS or the hospital record opens OpenDRIM on a patient with the
   * INS identity traits. The INS is used for every DMP call; the traits are shown as given.
   */
  app.get('/app/launch', async (req, reply) => {
    const r = req as WebRequest;
    const q = req.query as Record<string, unknown>;
    const ins = str(q.ins).toUpperCase();
    const oid = str(q.oid) || INS_OID.nir;
    const outcome = validIns(ins) && INS_OIDS.includes(oid);
    await audit.record({ actorType: 'practitioner', actorId: r.session!.data.professional.id, actorAddress: clientAddress(req), action: 'consumer.launch', patientId: ins || undefined, outcome: outcome ? 'success' : 'failure', detail: { oid, referer: req.headers.referer } });
    if (!outcome) return reply.code(400).type('text/html').send(page(pageContext(r), r.t.insInvalid, `<section class="card"><h1>${esc(r.t.insInvalid)}</h1><p class="error" id="ins-error">${esc(ins)} (${esc(oid)})</p></section>`));
    const traits = {
      birthName: str(q.birthName) || undefined,
      firstGiven: str(q.firstGiven) || undefined,
      givenNames: str(q.givenNames) || undefined,
      birthDate: DATE.test(str(q.birthDate)) ? str(q.birthDate) : undefined,
      sex: /^[MFU]$/.test(str(q.sex)) ? str(q.sex) : undefined,
      birthPlace: /^[0-9AB]{5}$/.test(str(q.birthPlace)) ? str(q.birthPlace) : undefined,
      usedName: str(q.usedName) || undefined,
      usedGiven: str(q.usedGiven) || undefined,
    };
    const planned = str(q.plannedModality) ? { modality: str(q.plannedModality).toUpperCase().slice(0, 16), region: str(q.plannedRegion).slice(0, 64) || undefined } : undefined;
    const s = r.session!;
    s.data.patient = { ins, oid, traits, planned, documents: [] };
    await sessions.update(s.token, s.data);
    return reply.redirect(`/app/patient?ins=${ins}&oid=${oid}`);
  });

  app.get('/app/patient', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    const q = req.query as Record<string, unknown>;
    const ins = str(q.ins).toUpperCase();
    const oid = str(q.oid) || INS_OID.nir;
    if (!validIns(ins) || !INS_OIDS.includes(oid)) return reply.redirect(`/app?invalid=1&ins=${encodeURIComponent(ins)}`);
    const s = r.session!;
    const sameAsContext = s.data.patient?.ins === ins && s.data.patient.oid === oid;
    const context: PatientContext = sameAsContext ? s.data.patient! : { ins, oid, documents: [] };
    const filter: ExamFilter = {
      modality: str(q.modality) || undefined,
      region: str(q.region) || undefined,
      from: DATE.test(str(q.from)) ? str(q.from) : undefined,
      to: DATE.test(str(q.to)) ? str(q.to) : undefined,
    };
    let list: Exam[];
    let all: Exam[];
    try {
      all = await exams.list({ ins, oid });
      list = all.filter((e) => examMatches(e, filter));
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'DMP search failed');
      await audit.record({ actorType: 'practitioner', actorId: s.data.professional.id, actorAddress: clientAddress(req), action: 'consumer.search', patientId: ins, outcome: 'failure', detail: { error: (e as Error).message } });
      return reply.code(502).type('text/html').send(page(pageContext(r), t.dmpError, `<section class="card"><h1>${esc(t.dmpError)}</h1><p class="error">${esc((e as Error).message)}</p></section>`));
    }
    context.documents = all.flatMap((e) => [e.report?.uniqueId, e.manifest?.uniqueId]).filter((x): x is string => Boolean(x));
    s.data.patient = context;
    await sessions.update(s.token, s.data);
    await audit.record({ actorType: 'practitioner', actorId: s.data.professional.id, actorAddress: clientAddress(req), action: 'consumer.search', patientId: ins, outcome: 'success', detail: { oid, exams: all.length, filter } });

    const planned = context.planned ?? (str(q.plannedModality) ? { modality: str(q.plannedModality).toUpperCase(), region: str(q.plannedRegion) || undefined } : undefined);
    let similar = '';
    if (planned) {
      const since = new Date(Date.now() - deps.redundancyWindowDays * 86400_000).toISOString().slice(0, 10);
      const hits = all.filter((e) => examMatches(e, { modality: planned.modality, region: planned.region, from: since }));
      similar = `<section class="card ${hits.length ? 'warning' : ''}" id="similar"><h2>${esc(t.similarTitle)}</h2>
<p>${esc(t.planned)} : <strong>${esc(planned.modality)}${planned.region ? ` · ${esc(planned.region)}` : ''}</strong> (${deps.redundancyWindowDays} j)</p>
${hits.length ? examTable(hits, t) : `<p>${esc(t.similarNone)}</p>`}</section>`;
    }
    const modalities = [...new Set(all.flatMap((e) => e.modalities))].sort();
    const filters = `<form method="get" action="/app/patient" class="row filters" id="filters"><input type="hidden" name="ins" value="${esc(ins)}"><input type="hidden" name="oid" value="${esc(oid)}">
<label>${esc(t.modality)} <select name="modality" id="f-modality"><option value="">${esc(t.all)}</option>${modalities.map((m) => `<option${filter.modality === m ? ' selected' : ''}>${esc(m)}</option>`).join('')}</select></label>
<label>${esc(t.region)} <input name="region" id="f-region" value="${esc(filter.region ?? '')}"></label>
<label>${esc(t.from)} <input type="date" name="from" value="${esc(filter.from ?? '')}"></label>
<label>${esc(t.to)} <input type="date" name="to" value="${esc(filter.to ?? '')}"></label>
<button type="submit">${esc(t.filter)}</button></form>`;
    return reply.type('text/html').send(
      page(pageContext(r), `${t.exams}`, `${identityBlock(context, t)}${similar}<section class="card"><h2>${esc(t.exams)}</h2>${filters}${list.length ? examTable(list, t) : `<p id="no-exams">${esc(t.noExams)}</p>`}</section>`, { wide: true }),
    );
  });

  /** A document of the patient in context, fetched from the DMP (ITI-43); any other is refused. */
  async function allowedDocument(req: FastifyRequest, reply: FastifyReply): Promise<{ repositoryUniqueId: string; uniqueId: string } | undefined> {
    const r = req as WebRequest;
    const { repo, uid } = req.params as { repo: string; uid: string };
    if (!r.session!.data.patient?.documents.includes(uid)) {
      await audit.record({ actorType: 'practitioner', actorId: r.session!.data.professional.id, actorAddress: clientAddress(req), action: 'consumer.document', patientId: r.session!.data.patient?.ins, outcome: 'refused', detail: { uniqueId: uid, reason: 'not a document of the patient in context' } });
      reply.code(403).type('text/html').send(page(pageContext(r), r.t.forbidden, `<h1>${esc(r.t.forbidden)}</h1>`));
      return undefined;
    }
    return { repositoryUniqueId: repo, uniqueId: uid };
  }

  app.get('/app/reports/:repo/:uid', async (req, reply) => {
    const r = req as WebRequest;
    const doc = await allowedDocument(req, reply);
    if (!doc) return reply;
    const cda = await exams.retrieve({ ...doc, entryUUID: '' });
    const h = readImagingReport(cda);
    await audit.record({ actorType: 'practitioner', actorId: r.session!.data.professional.id, actorAddress: clientAddress(req), action: 'consumer.report', patientId: r.session!.data.patient?.ins, outcome: 'success', detail: { uniqueId: doc.uniqueId, studyUid: h.exams[0]?.studyUid } });
    const a = h.legalAuthenticator ?? h.author;
    // A PDF needs the browser's viewer, which a sandboxed iframe blocks; the body response is sandboxed itself.
    const isPdf = (() => {
      try {
        return readReportBody(cda).mediaType.toLowerCase().startsWith('application/pdf');
      } catch {
        return false;
      }
    })();
    return reply.type('text/html').send(
      page(pageContext(r), h.title, `<section class="card report"><h1 id="report-title">${esc(h.title)}</h1>
<p>${esc([a?.given, a?.family].filter(Boolean).join(' '))} · ${esc(h.organisation?.name ?? '')} · ${esc(h.effectiveTime.slice(0, 8).replace(/(\d{4})(\d{2})(\d{2})/, '$3/$2/$1'))}</p>
<iframe id="report-body" title="${esc(r.t.report)}" src="/app/reports/${esc(doc.repositoryUniqueId)}/${esc(doc.uniqueId)}/body"${isPdf ? '' : ' sandbox'}></iframe>
<p><a href="/app/patient?ins=${esc(r.session!.data.patient!.ins)}&amp;oid=${esc(r.session!.data.patient!.oid)}">${esc(r.t.back)}</a></p></section>`, { wide: true }),
    );
  });

  app.get('/app/reports/:repo/:uid/body', async (req, reply) => {
    const doc = await allowedDocument(req, reply);
    if (!doc) return reply;
    const body = readReportBody(await exams.retrieve({ ...doc, entryUUID: '' }));
    const type = body.mediaType.split(';')[0]!.trim().toLowerCase();
    // The document's own origin is opaque and nothing in it runs: a report is data, never code, whatever its
    // author declared. Chromium displays a PDF under this CSP (it does not inside an <iframe sandbox>).
    reply.header('Content-Security-Policy', "sandbox; default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'");
    reply.header('X-Content-Type-Options', 'nosniff');
    reply.header('X-Frame-Options', 'SAMEORIGIN');
    const shown = DISPLAYED_REPORT_TYPES[type];
    if (!shown) {
      // CI-SIS level 1 bodies may be PDF or plain text; anything else (HTML, scripts, images of unknown kind) is
      // named, not rendered.
      reply.header('Content-Disposition', 'inline');
      return reply.code(415).type('text/plain; charset=utf-8').send(`${(req as WebRequest).t.formatNotDisplayed} (${type.replace(/[^\w./+-]/g, '').slice(0, 80)})`);
    }
    reply.header('Content-Disposition', `inline; filename="compte-rendu.${shown.extension}"`);
    return reply.type(shown.contentType).send(body.data);
  });
}

/** The report body types shown (CI-SIS CDA level 1: PDF; plain text, also a structured body's narrative). */
const DISPLAYED_REPORT_TYPES: Record<string, { contentType: string; extension: string }> = {
  'application/pdf': { contentType: 'application/pdf', extension: 'pdf' },
  'text/plain': { contentType: 'text/plain; charset=utf-8', extension: 'txt' },
};

function identityBlock(p: PatientContext, t: WebRequest['t']): string {
  const tr = p.traits ?? {};
  const sex = tr.sex === 'M' ? t.sexM : tr.sex === 'F' ? t.sexF : tr.sex ? t.sexU : '';
  const rows: Array<[string, string | undefined]> = [
    [t.birthName, tr.birthName],
    [t.firstGiven, tr.firstGiven],
    [t.givenNames, tr.givenNames],
    [t.birthDate, tr.birthDate?.replace(/(\d{4})-(\d{2})-(\d{2})/, '$3/$2/$1')],
    [t.sex, sex],
    [t.birthPlace, tr.birthPlace],
  ];
  const used: Array<[string, string | undefined]> = [
    [t.usedName, tr.usedName],
    [t.usedGiven, tr.usedGiven],
  ];
  return `<section class="card identity" id="identity"><h2>${esc(t.strictTraits)}</h2>
<dl class="strict">${rows
    .filter(([, v]) => v)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`)
    .join('')}<dt>${esc(t.ins)}</dt><dd id="patient-ins">${esc(p.ins)} <small>(${esc(p.oid)})</small></dd></dl>
${used.some(([, v]) => v) ? `<dl class="used">${used.filter(([, v]) => v).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>` : ''}</section>`;
}

function examTable(list: Exam[], t: WebRequest['t']): string {
  const rows = list
    .map(
      (e) => `<tr data-study="${esc(e.studyUid ?? '')}"><td>${esc(e.date?.replace(/(\d{4})-(\d{2})-(\d{2})/, '$3/$2/$1') ?? '')}</td><td>${esc(e.modalities.join(', '))}</td><td>${esc(e.regions.map((r) => r.display ?? r.code).join(', '))}</td><td>${esc(e.description ?? '')}</td><td>${esc(e.author ?? '')}</td><td>${esc(e.institution ?? '')}</td>
<td>${e.report ? `<a class="report-link" href="/app/reports/${esc(e.report.repositoryUniqueId)}/${esc(e.report.uniqueId)}">${esc(t.read)}</a>` : ''}</td>
<td>${e.manifest ? `<a class="button open-exam" href="/app/exams/${esc(e.manifest.repositoryUniqueId)}/${esc(e.manifest.uniqueId)}">${esc(t.open)}</a>` : ''}</td></tr>`,
    )
    .join('');
  return `<table class="exams"><thead><tr><th>${esc(t.date)}</th><th>${esc(t.modality)}</th><th>${esc(t.region)}</th><th>${esc(t.description)}</th><th>${esc(t.author)}</th><th>${esc(t.institution)}</th><th>${esc(t.report)}</th><th>${esc(t.images)}</th></tr></thead><tbody>${rows}</tbody></table>`;
}
