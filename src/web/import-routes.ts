import type { FastifyInstance, FastifyReply } from 'fastify';
import { clientAddress } from '../common/access.js';
import type { ImportJob } from '../consumer/pacs-import.js';
import { HttpError } from '../dicomweb/wado.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

const statusKey = (s: ImportJob['status']) => `st_${s.replace('-', '_')}` as 'st_queued';

/** Importing an opened exam into the local PACS, and the queue of imports with their progress and decisions. */
export async function importRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const { imports, audit } = deps;
  const need = () => {
    if (!imports) throw new HttpError(501, 'importing into the local PACS is not configured on this node (consumer.import)');
    return imports;
  };

  app.post('/app/exams/:repo/:uid/import', async (req, reply) => {
    const r = req as WebRequest;
    const s = r.session!;
    const { uid } = req.params as { uid: string };
    const exam = Object.values(s.data.exams).find((e) => e.manifestUid === uid);
    const patient = s.data.patient;
    if (!exam || !patient) throw new HttpError(403, 'open the exam from the patient list first');
    const id = await need().enqueue({ studyUid: exam.studyUid, series: exam.series, patient: { ins: patient.ins, oid: patient.oid }, professional: s.data.professional });
    return reply.redirect(`/app/imports#job-${id}`);
  });

  app.get('/app/imports.json', async () => need().list());

  app.get('/app/imports', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    if (!imports) return reply.type('text/html').send(page(pageContext(r), t.imports, `<section class="card"><h1>${esc(t.imports)}</h1><p>${esc(t.importNotConfigured)}</p></section>`));
    const jobs = await imports.list();
    const csrf = esc(r.session!.csrf);
    const rows = jobs
      .map((j) => {
        const action =
          j.status === 'waiting-identity'
            ? `<form method="post" action="/app/imports/${j.id}/identity" class="row"><input type="hidden" name="csrf" value="${csrf}"><label>${esc(t.localId)} <input name="localId" required maxlength="64" pattern="[^\\\\^]+"></label><button type="submit" class="primary">${esc(t.decide)}</button></form>`
            : j.status === 'failed'
              ? `<form method="post" action="/app/imports/${j.id}/retry"><input type="hidden" name="csrf" value="${csrf}"><button type="submit">${esc(t.retryImport)}</button></form>`
              : '';
        return `<tr id="job-${j.id}" data-status="${esc(j.status)}"><td>${j.id}</td><td>${esc(j.patientIns)}${j.localId ? ` → <strong>${esc(j.localId)}</strong>` : ''}</td><td class="uid">${esc(j.studyUid)}</td>
<td>${esc(t[statusKey(j.status)] ?? j.status)}</td><td><progress max="${j.total}" value="${j.done}"></progress> ${j.done}/${j.total}</td>
<td>${j.error ? `<span class="error">${esc(j.error)}</span>` : j.report ? `${j.report.inPacs} / ${j.total} · ${j.report.seconds} s` : ''}</td><td>${action}</td></tr>`;
      })
      .join('');
    return reply
      .type('text/html')
      .send(
        page(
          pageContext(r),
          t.imports,
          `<section class="card"><h1>${esc(t.imports)}</h1>${jobs.length ? `<table class="exams" id="imports"><thead><tr><th>#</th><th>${esc(t.patient)}</th><th>${esc(t.exam)}</th><th>${esc(t.status)}</th><th>${esc(t.progress)}</th><th></th><th></th></tr></thead><tbody>${rows}</tbody></table>` : `<p>${esc(t.noImports)}</p>`}</section>`,
          { wide: true },
        ),
      );
  });

  const jobId = (req: { params: unknown }) => {
    const id = Number((req.params as { id: string }).id);
    if (!Number.isInteger(id) || id <= 0) throw new HttpError(400, 'not an import number');
    return id;
  };
  const back = (reply: FastifyReply, id: number) => reply.redirect(`/app/imports#job-${id}`);

  app.post('/app/imports/:id/identity', async (req, reply) => {
    const r = req as WebRequest;
    const id = jobId(req);
    const localId = String((req.body as Record<string, unknown>).localId ?? '').trim();
    if (!localId || localId.length > 64 || /[\\^]/.test(localId)) throw new HttpError(400, 'the local patient ID must be 1 to 64 characters, without \\ or ^');
    try {
      await need().decideIdentity(id, localId, r.session!.data.professional.id);
    } catch (e) {
      await audit.record({ actorType: 'practitioner', actorId: r.session!.data.professional.id, actorAddress: clientAddress(req), action: 'identity.decide', outcome: 'failure', detail: { job: id, error: (e as Error).message } });
      throw new HttpError(409, (e as Error).message);
    }
    return back(reply, id);
  });

  app.post('/app/imports/:id/retry', async (req, reply) => {
    const r = req as WebRequest;
    const id = jobId(req);
    try {
      await need().retry(id, r.session!.data.professional.id);
    } catch (e) {
      throw new HttpError(409, (e as Error).message);
    }
    return back(reply, id);
  });
}
