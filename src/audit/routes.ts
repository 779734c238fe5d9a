import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import { anonymousNetworkGuard } from '../common/access.js';
import type { AuditTrail } from './audit-trail.js';

/** Audit search (JSON), chain verification and daily activity (CSV), under /api/audit. */
export async function auditRoutes(app: FastifyInstance, deps: { audit: AuditTrail; config: Config; log: Logger }): Promise<void> {
  app.addHook('onRequest', anonymousNetworkGuard(deps.config.dicomweb.anonymousFrom, deps.log, 'audit'));
  app.get<{ Querystring: Record<string, string> }>('/', async (req, reply) => {
    const q = req.query;
    const int = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
    for (const k of ['from', 'to']) if (q[k] && Number.isNaN(Date.parse(q[k]!))) return reply.code(400).send({ error: `${k} must be an ISO 8601 date or time` });
    return deps.audit.search({ patientId: q.patient, actorId: q.actor, action: q.action, studyUid: q.study, from: q.from, to: q.to, limit: int(q.limit), offset: int(q.offset) });
  });
  app.get('/verify', async () => deps.audit.verify());
  app.get('/stats.csv', async (_req, reply) => reply.type('text/csv; charset=utf-8').send(await deps.audit.dailyStatsCsv()));
  app.get('/kpi.csv', async (_req, reply) => reply.type('text/csv; charset=utf-8').header('Content-Disposition', 'attachment; filename="opendrim-kpi.csv"').send(await deps.audit.kpiCsv()));
}
