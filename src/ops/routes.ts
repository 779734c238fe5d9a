import type { FastifyInstance } from 'fastify';
import type { StudyIndex } from '../store/study-index.js';
import type { BlobStore } from '../store/blobs.js';
import type { Metrics } from './metrics.js';

/** Liveness, readiness and Prometheus metrics. */
export async function opsRoutes(app: FastifyInstance, deps: { index: StudyIndex; blobs: BlobStore; metrics: Metrics; isShuttingDown: () => boolean; version: string; /** Refresh gauges computed from the database before each scrape. */ collectors?: Array<() => Promise<void>> }): Promise<void> {
  app.get('/health', async (_req, reply) => {
    const checks: Record<string, { ok: boolean; error?: string; ms?: number }> = {};
    for (const [name, probe] of [
      ['database', () => deps.index.ping()],
      ['storage', () => deps.blobs.ping()],
    ] as const) {
      const t = Date.now();
      try {
        await probe();
        checks[name] = { ok: true, ms: Date.now() - t };
      } catch (e) {
        checks[name] = { ok: false, error: (e as Error).message };
      }
    }
    const ready = Object.values(checks).every((c) => c.ok) && !deps.isShuttingDown();
    reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : deps.isShuttingDown() ? 'shutting-down' : 'degraded', live: true, ready, version: deps.version, checks });
  });

  app.get('/metrics', async (_req, reply) => {
    try {
      const c = await deps.index.counts();
      deps.metrics.indexSize.set({ level: 'patients' }, c.patients);
      deps.metrics.indexSize.set({ level: 'studies' }, c.studies);
      deps.metrics.indexSize.set({ level: 'series' }, c.series);
      deps.metrics.indexSize.set({ level: 'instances' }, c.instances);
      for (const collect of deps.collectors ?? []) await collect();
    } catch {
      deps.metrics.errors.inc({ component: 'metrics' });
    }
    reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}
