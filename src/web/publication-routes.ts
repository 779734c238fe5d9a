import type { FastifyInstance } from 'fastify';
import { HttpError } from '../dicomweb/wado.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

/** The publication queue for administrators: what is pending and why, what failed and why, and a retry. */
export async function publicationRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const queue = deps.publications!;
  app.get('/app/publications', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    const status = (req.query as Record<string, string>).status;
    if (status && !['pending', 'failed', 'done'].includes(status)) throw new HttpError(400, 'status is pending, failed or done');
    const list = await queue.list({ status, limit: 200 });
    const counts = await queue.counts();
    const rows = list
      .map(
        (x) => `<tr data-publication="${x.id}" data-status="${esc(x.status)}"><td>${esc(new Date(x.received_at).toLocaleString(r.lang === 'fr' ? 'fr-FR' : 'en-GB'))}</td><td>${esc(x.kind)}</td><td><small>${esc(x.exam_key)}<br>${esc(x.document_id ?? '')}</small></td><td>${esc(x.sender)}<br><small>${esc(x.control_id ?? '')}</small></td>
<td><strong>${esc(x.status)}</strong> (${x.attempts})${x.error ? `<br><span class="error">${esc(x.error)}</span>` : ''}${x.outcome ? `<br><small>${esc(x.outcome.slice(0, 200))}</small>` : ''}</td>
<td>${x.status === 'failed' ? `<form method="post" action="/app/publications/${x.id}/retry"><input type="hidden" name="csrf" value="${esc(r.session!.csrf)}"><button type="submit" class="retry">${esc(t.retrySend)}</button></form>` : ''}</td></tr>`,
      )
      .join('');
    const summary = Object.entries(counts).map(([k, n]) => `<a href="/app/publications?status=${esc(k)}">${esc(k)}: ${n}</a>`).join(' · ');
    return reply.type('text/html').send(
      page(pageContext(r), t.publications, `<section class="card"><h1>${esc(t.publications)}</h1><p>${esc(t.publicationsIntro)}</p><p id="counts">${summary}</p>${list.length ? `<table class="exams" id="publications"><thead><tr><th>${esc(t.date)}</th><th></th><th>Exam</th><th>RIS</th><th>${esc(t.status)}</th><th></th></tr></thead><tbody>${rows}</tbody></table>` : `<p>${esc(t.noPublications)}</p>`}</section>`, { wide: true }),
    );
  });
  app.post<{ Params: { id: string } }>('/app/publications/:id/retry', async (req, reply) => {
    if (!/^\d{1,12}$/.test(req.params.id)) throw new HttpError(400, 'publication id must be a number');
    const done = await queue.retry(Number(req.params.id));
    if (!done) throw new HttpError(404, `no failed publication ${req.params.id}`);
    await deps.audit.record({ actorType: 'practitioner', actorId: (req as unknown as WebRequest).session!.data.professional.id, action: 'source.publication.retry', outcome: 'success', detail: { queueId: Number(req.params.id) } });
    return reply.redirect('/app/publications', 303);
  });
}
