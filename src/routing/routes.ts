import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import { anonymousNetworkGuard, clientAddress } from '../common/access.js';
import type { RouteOutbox } from './outbox.js';
import type { StudyWatch } from './study-watch.js';

const STATUSES = new Set(['queued', 'sending', 'done', 'failed']);

/**
 * Operations API of routing, under /api/routing: the outbox transfers (queued, sending n/m, done, failed with
 * the reason) with a retry, and the studies received from other boxes with their reconciliation state.
 * Administrators' networks only (dicomweb.anonymousFrom), like the audit API.
 */
export async function routingApi(app: FastifyInstance, deps: { outbox?: RouteOutbox; watch: StudyWatch; config: Config; log: Logger }): Promise<void> {
  app.addHook('onRequest', anonymousNetworkGuard(deps.config.dicomweb.anonymousFrom, deps.log, 'routing'));
  const view = (t: Awaited<ReturnType<RouteOutbox['list']>>[number]) => ({
    id: Number(t.id),
    studyUid: t.study_uid,
    destination: t.destination,
    rule: t.rule,
    status: t.status,
    sent: Number(t.sent),
    total: Number(t.total),
    attempts: Number(t.attempts),
    nextAttemptAt: t.status === 'queued' ? t.next_attempt_at : undefined,
    error: t.error ?? undefined,
    createdAt: t.created_at,
    updatedAt: t.updated_at,
  });
  app.get<{ Querystring: Record<string, string> }>('/transfers', async (req, reply) => {
    if (!deps.outbox) return reply.code(404).send({ error: 'routing has no rules on this node' });
    const { status, study } = req.query;
    if (status && !STATUSES.has(status)) return reply.code(400).send({ error: `status must be one of ${[...STATUSES].join(', ')}` });
    return { transfers: (await deps.outbox.list({ status, studyUid: study })).map(view) };
  });
  app.get<{ Params: { id: string } }>('/transfers/:id', async (req, reply) => {
    const t = /^\d{1,12}$/.test(req.params.id) ? await deps.outbox?.get(Number(req.params.id)) : undefined;
    return t ? view(t) : reply.code(404).send({ error: `transfer ${req.params.id.slice(0, 20)} does not exist` });
  });
  app.post<{ Params: { id: string } }>('/transfers/:id/retry', async (req, reply) => {
    if (!/^\d{1,12}$/.test(req.params.id) || !deps.outbox) return reply.code(404).send({ error: 'no such transfer' });
    const ok = await deps.outbox.retry(Number(req.params.id), `admin@${clientAddress(req)}`);
    return ok ? reply.code(202).send({ retried: true }) : reply.code(409).send({ error: 'only a failed or waiting transfer can be retried' });
  });
  app.get('/incoming', async () => ({
    studies: (await deps.watch.list('inbound')).map((w) => ({ studyUid: w.study_uid, origin: w.origin, instances: Number(w.instances), state: w.state, case: w.case_id ?? undefined, error: w.error ?? undefined, updatedAt: w.updated_at })),
  }));
}
