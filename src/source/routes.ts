import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import { anonymousNetworkGuard } from '../common/access.js';
import type { PublicationQueue } from './publication-queue.js';

/** The publication queue for supervision (JSON, under /api/publications): entries by status, counts, retry. */
export async function publicationApi(app: FastifyInstance, deps: { queue: PublicationQueue; config: Config; log: Logger }): Promise<void> {
  app.addHook('onRequest', anonymousNetworkGuard(deps.config.dicomweb.anonymousFrom, deps.log, 'publications'));
  app.get<{ Querystring: { status?: string; limit?: string } }>('/', async (req, reply) => {
    const { status, limit } = req.query;
    if (status && !['pending', 'failed', 'done'].includes(status)) return reply.code(400).send({ error: 'status is pending, failed or done' });
    if (limit && !/^\d{1,4}$/.test(limit)) return reply.code(400).send({ error: 'limit is a number up to 9999' });
    const list = await deps.queue.list({ status, limit: limit ? Number(limit) : undefined });
    // The CDA itself stays out of the listing: it is the patient's report.
    return list.map(({ payload: _payload, ...e }) => e);
  });
  app.get('/counts', async () => deps.queue.counts());
  app.post<{ Params: { id: string } }>('/:id/retry', async (req, reply) => {
    if (!/^\d{1,12}$/.test(req.params.id)) return reply.code(400).send({ error: 'publication id must be a number' });
    if (!(await deps.queue.retry(Number(req.params.id)))) return reply.code(409).send({ error: `publication ${req.params.id} is not failed` });
    return { retried: Number(req.params.id) };
  });
}
