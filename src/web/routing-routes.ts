import type { FastifyInstance } from 'fastify';
import { HttpError } from '../dicomweb/wado.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

/** The routing outbox as a page: each transfer's state (queued, sending n/m, done, failed and why) and retry. */
export async function routingRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const outbox = deps.outbox!;
  app.get('/app/routing', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    const list = await outbox.list({}, 200);
    const rows = list
      .map(
        (x) => `<tr data-transfer="${Number(x.id)}" data-status="${esc(x.status)}"><td>${esc(new Date(x.created_at).toLocaleString(r.lang === 'fr' ? 'fr-FR' : 'en-GB'))}</td><td><small>${esc(x.study_uid)}</small></td><td>${esc(x.destination)}</td><td>${esc(x.rule)}</td>
<td><strong>${esc(x.status)}</strong>${x.status === 'sending' ? ` <progress max="${Number(x.total)}" value="${Number(x.sent)}"></progress>` : ''} ${Number(x.sent)}/${Number(x.total)}${x.error ? `<br><span class="error">${esc(x.error)}</span>` : ''}</td>
<td>${x.status === 'failed' || (x.status === 'queued' && Number(x.attempts) > 0) ? `<form method="post" action="/app/routing/${Number(x.id)}/retry"><input type="hidden" name="csrf" value="${esc(r.session!.csrf)}"><button type="submit" class="retry">${esc(t.retrySend)}</button></form>` : ''}</td></tr>`,
      )
      .join('');
    return reply.type('text/html').send(
      page(pageContext(r), t.routing, `<section class="card"><h1>${esc(t.routing)}</h1>${list.length ? `<table class="exams" id="transfers"><thead><tr><th>${esc(t.date)}</th><th>Study</th><th>${esc(t.destination)}</th><th>${esc(t.rule)}</th><th>${esc(t.status)}</th><th></th></tr></thead><tbody>${rows}</tbody></table>` : `<p>${esc(t.noTransfers)}</p>`}</section>`, { wide: true }),
    );
  });
  app.post<{ Params: { id: string } }>('/app/routing/:id/retry', async (req, reply) => {
    if (!/^\d{1,12}$/.test(req.params.id)) throw new HttpError(400, 'transfer id must be a number');
    await outbox.retry(Number(req.params.id), (req as unknown as WebRequest).session!.data.professional.id);
    return reply.redirect('/app/routing', 303);
  });
}
