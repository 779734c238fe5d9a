import type { FastifyInstance } from 'fastify';
import { HttpError } from '../dicomweb/wado.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** The audit trail for administrators: search by patient, user, action and dates; chain check; indicators. */
export async function auditPageRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const { audit } = deps;
  app.get('/app/audit', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    const q = req.query as Record<string, string>;
    for (const k of ['from', 'to']) if (q[k] && !DATE.test(q[k]!)) throw new HttpError(400, `${k} must be YYYY-MM-DD`);
    const clean = (v: string | undefined) => (v && v.length <= 128 ? v.trim() : undefined);
    const records = await audit.search({ patientId: clean(q.patient), actorId: clean(q.actor), action: clean(q.action), studyUid: clean(q.study), from: q.from, to: q.to ? `${q.to}T23:59:59.999Z` : undefined, limit: 200 });
    const chain = await audit.verify();
    const rows = records
      .map(
        (x) => `<tr class="audit-record" data-outcome="${esc(x.outcome)}"><td>${esc(x.at.replace('T', ' ').slice(0, 19))}</td><td>${esc(x.actorType)}<br><small>${esc(x.actorId)}</small></td><td>${esc(x.action)}</td><td>${esc(x.patientId ?? '')}</td><td><small>${esc(x.studyUid ?? '')}</small></td><td>${esc(x.outcome)}</td><td><small>${esc(JSON.stringify(x.detail).slice(0, 240))}</small></td></tr>`,
      )
      .join('');
    const field = (name: string, label: string, type = 'text') => `<label>${esc(label)} <input type="${type}" name="${name}" value="${esc(q[name] ?? '')}"></label>`;
    return reply.type('text/html').send(
      page(
        pageContext(r),
        t.auditTrail,
        `<section class="card"><h1>${esc(t.auditTrail)}</h1>
<p id="chain" class="${chain.ok ? 'notice' : 'error'}">${chain.ok ? `${esc(t.chainIntact)} (${chain.records})` : `${esc(t.chainBroken)} #${chain.brokenAt}: ${esc(chain.reason ?? '')}`}</p>
<form method="get" action="/app/audit" class="row filters">${field('patient', t.patient)}${field('actor', t.user)}${field('action', t.action)}${field('from', t.from, 'date')}${field('to', t.to, 'date')}<button type="submit">${esc(t.filter)}</button></form>
<p><a href="/app/audit/kpi.csv" id="kpi">${esc(t.kpiExport)}</a></p>
<table class="exams" id="audit"><thead><tr><th>${esc(t.date)}</th><th>${esc(t.user)}</th><th>${esc(t.action)}</th><th>${esc(t.patient)}</th><th>Study</th><th>${esc(t.status)}</th><th></th></tr></thead><tbody>${rows}</tbody></table></section>`,
        { wide: true },
      ),
    );
  });
  app.get('/app/audit/kpi.csv', async (_req, reply) => reply.type('text/csv; charset=utf-8').header('Content-Disposition', 'attachment; filename="opendrim-kpi.csv"').send(await audit.kpiCsv()));
}
