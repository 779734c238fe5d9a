import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpError } from '../dicomweb/wado.js';
import type { AppointmentView } from '../prefetch/prefetcher.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** The day's appointments and the prefetch state of each, as a page and as JSON. */
export async function prefetchRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const prefetcher = deps.prefetcher!;
  const query = (req: FastifyRequest) => {
    const q = req.query as Record<string, string>;
    const day = q.day && DAY.test(q.day) ? q.day : new Date().toISOString().slice(0, 10);
    if (q.day && !DAY.test(q.day)) throw new HttpError(400, 'day must be YYYY-MM-DD');
    const from = new Date(`${day}T00:00:00`);
    return { day, from, to: new Date(from.getTime() + 86400_000), modality: q.modality && /^[A-Z]{2}$/i.test(q.modality) ? q.modality.toUpperCase() : undefined };
  };

  app.get('/app/prefetch.json', async (req) => {
    const q = query(req);
    return { day: q.day, modality: q.modality, appointments: await prefetcher.list(q), readyBeforeStart: await prefetcher.readyBeforeStart(new Date(Date.now() - 86400_000), new Date()) };
  });

  app.get('/app/prefetch', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    const q = query(req);
    const list = await prefetcher.list(q);
    const share = await prefetcher.readyBeforeStart(new Date(Date.now() - 86400_000), new Date());
    const stateLabel = (s: AppointmentView['state']) => t[`ps_${s.replace('-', '_')}` as 'ps_ready'] ?? s;
    const rows = list
      .map(
        (a) => `<tr data-appointment="${esc(a.appointmentId)}" data-state="${esc(a.state)}"><td>${esc(new Date(a.start).toLocaleTimeString(r.lang === 'fr' ? 'fr-FR' : 'en-GB', { hour: '2-digit', minute: '2-digit' }))}</td>
<td>${esc(a.patientName ?? '')}<br><small>${esc(a.patientIns)}</small></td><td>${esc(a.modality ?? '')}</td><td>${esc(a.procedure ?? '')}</td>
<td><strong>${esc(stateLabel(a.state))}</strong>${a.state === 'fetching' ? ` <progress max="${a.total}" value="${a.done}"></progress> ${a.done}/${a.total}` : ''}${a.error ? `<br><span class="error">${esc(a.error)}</span>` : ''}</td>
<td>${a.priors.map((p) => `${esc(p.date ?? '')} ${esc(p.description ?? '')} (${p.instances}${p.alreadyThere ? `, ${esc(t.alreadyThere)}` : ''})`).join('<br>')}</td></tr>`,
      )
      .join('');
    return reply.type('text/html').send(
      page(
        pageContext(r),
        t.prefetch,
        `<section class="card"><h1>${esc(t.prefetch)}</h1>
<form method="get" action="/app/prefetch" class="row filters"><label>${esc(t.day)} <input type="date" name="day" value="${esc(q.day)}"></label>
<label>${esc(t.modality)} <input name="modality" maxlength="2" value="${esc(q.modality ?? '')}"></label><button type="submit">${esc(t.filter)}</button></form>
<p id="ready-share">${esc(t.readyShare)} : <strong>${share.appointments ? Math.round(share.share * 100) : 100} %</strong> (${share.ready}/${share.appointments})</p>
${list.length ? `<table class="exams" id="appointments"><thead><tr><th>${esc(t.time)}</th><th>${esc(t.patient)}</th><th>${esc(t.modality)}</th><th>${esc(t.exam)}</th><th>${esc(t.status)}</th><th>${esc(t.priors)}</th></tr></thead><tbody>${rows}</tbody></table>` : `<p>${esc(t.noAppointments)}</p>`}</section>`,
        { wide: true },
      ),
    );
  });
}
