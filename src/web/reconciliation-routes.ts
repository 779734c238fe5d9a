import type { FastifyInstance } from 'fastify';
import { HttpError } from '../dicomweb/wado.js';
import { DecisionError } from '../identity/reconciliation-queue.js';
import type { Demographics } from '../identity/demographics.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

const fmtDate = (d: string) => (/^\d{8}$/.test(d) ? `${d.slice(6, 8)}/${d.slice(4, 6)}/${d.slice(0, 4)}` : d);

/** The manual reconciliation queue: incoming and candidate demographics side by side, and the decision forms. */
export async function reconciliationRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const incoming = deps.incoming!;
  const queue = deps.reconciliation!;

  app.get('/app/reconciliation', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    const q = req.query as Record<string, string>;
    const cases = await queue.list('open');
    const person = (d: Demographics) =>
      `<td class="name">${esc(d.birthName)}${d.usedName ? ` <small>(${esc(t.usedName)} : ${esc(d.usedName)})</small>` : ''}</td><td>${esc(d.givenNames.join(', '))}</td><td>${esc(fmtDate(d.birthDate))}</td><td>${esc(d.sex ?? '')}</td>`;
    const body = cases
      .map((c) => {
        const rows = c.candidates
          .map(
            (k) => `<tr class="candidate" data-local-id="${esc(k.localId)}"><td>${esc(k.localId)}</td>${person(k.demographics)}<td>${Math.round(k.traits.score * 100)} %</td>
<td><form method="post" action="/app/reconciliation/${c.id}/decide"><input type="hidden" name="csrf" value="${esc(r.session!.csrf)}"><input type="hidden" name="localId" value="${esc(k.localId)}"><button type="submit" class="accept">${esc(t.accept)}</button></form></td></tr>`,
          )
          .join('');
        return `<section class="card case" data-case="${c.id}" data-study="${esc(c.studyUid)}">
<h2>${esc(t.incoming)} · ${esc(t.origin)} ${esc(c.origin)}</h2><p class="reason">${esc(t.reason)} : ${esc(c.reason)}</p>
<table class="exams"><thead><tr><th>${esc(t.localId)}</th><th>${esc(t.birthName)}</th><th>${esc(t.givenNames)}</th><th>${esc(t.birthDate)}</th><th>${esc(t.sex)}</th><th>${esc(t.score)}</th><th></th></tr></thead>
<tbody><tr class="incoming"><td>${esc([c.incoming.ins ? `INS ${c.incoming.ins.value}` : '', ...c.incoming.identifiers.map((i) => `${i.id} (${i.issuer})`)].filter(Boolean).join(', '))}</td>${person(c.incoming.demographics)}<td></td><td></td></tr>${rows}</tbody></table>
<div class="row"><form method="post" action="/app/reconciliation/${c.id}/decide" class="row"><input type="hidden" name="csrf" value="${esc(r.session!.csrf)}"><label>${esc(t.otherPatient)} <input name="localId" class="other-id" maxlength="64" required></label><button type="submit" class="attach">${esc(t.attach)}</button></form>
<form method="post" action="/app/reconciliation/${c.id}/decide"><input type="hidden" name="csrf" value="${esc(r.session!.csrf)}"><input type="hidden" name="create" value="1"><button type="submit" class="create">${esc(t.createPatient)}</button></form></div></section>`;
      })
      .join('');
    const done = q.done && /^[\w.\-]{1,64}$/.test(q.done) ? `<p class="notice" id="decided">${esc(t.decided)} ${esc(q.done)}</p>` : '';
    const error = q.error ? `<p class="error" id="decision-error">${esc(q.error.slice(0, 300))}</p>` : '';
    return reply.type('text/html').send(page(pageContext(r), t.reconciliation, `<section class="card"><h1>${esc(t.reconciliation)}</h1><p>${esc(t.reconciliationIntro)}</p>${done}${error}${cases.length ? '' : `<p id="no-cases">${esc(t.noCases)}</p>`}</section>${body}`, { wide: true }));
  });

  app.post<{ Params: { id: string }; Body: Record<string, string> }>('/app/reconciliation/:id/decide', async (req, reply) => {
    const r = req as unknown as WebRequest;
    if (!/^\d{1,12}$/.test(req.params.id)) throw new HttpError(400, 'case id must be a number');
    const b = req.body ?? {};
    const decision = b.create === '1' ? ({ create: true } as const) : { localId: String(b.localId ?? '') };
    try {
      const out = await incoming.decide(Number(req.params.id), decision, r.session!.data.professional.id);
      return reply.redirect(`/app/reconciliation?done=${encodeURIComponent(out.localId)}`, 303);
    } catch (e) {
      if (e instanceof DecisionError) return reply.redirect(`/app/reconciliation?error=${encodeURIComponent(e.message)}`, 303);
      deps.log.warn({ err: (e as Error).message, case: req.params.id }, 'reconciliation decision recorded but the study could not be stored into the PACS');
      return reply.redirect(`/app/reconciliation?error=${encodeURIComponent((e as Error).message)}`, 303);
    }
  });

  app.get('/app/reconciliation.json', async () => ({ cases: await queue.list('open') }));
}
