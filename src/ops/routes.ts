import type { FastifyInstance } from 'fastify';
import type { StudyIndex } from '../store/study-index.js';
import type { BlobStore } from '../store/blobs.js';
import type { Metrics } from './metrics.js';
import type { StorageSpace } from '../store/space.js';

/** Liveness, readiness and Prometheus metrics. */
export async function opsRoutes(app: FastifyInstance, deps: { index: StudyIndex; blobs: BlobStore; space?: StorageSpace; metrics: Metrics; isShuttingDown: () => boolean; version: string; /** Refresh gauges computed from the database before each scrape. */ collectors?: Array<() => Promise<void>> }): Promise<void> {
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
    const space = deps.space;
    if (space) {
      await space.refresh();
      checks.space = space.low ? { ok: false, error: `${Math.round((space.free ?? 0) / 1048576)} MB free on the storage, below the ${Math.round(space.minFreeBytes / 1048576)} MB threshold (storage.minFreeMegabytes): receiving is refused` } : { ok: true };
    }
    const ready = Object.values(checks).every((c) => c.ok) && !deps.isShuttingDown();
    reply.code(ready ? 200 : 503).send({ status: ready ? 'ok' : deps.isShuttingDown() ? 'shutting-down' : 'degraded', live: true, ready, version: deps.version, checks });
  });

  app.get('/metrics', async (_req, reply) => {
    if (deps.space?.free !== undefined) deps.metrics.storageFree.set(deps.space.free);
    // Each source on its own: a database that is down must not hide the gauges that say so.
    const sources: Array<() => Promise<void>> = [
      async () => {
        const c = await deps.index.counts();
        deps.metrics.indexSize.set({ level: 'patients' }, c.patients);
        deps.metrics.indexSize.set({ level: 'studies' }, c.studies);
        deps.metrics.indexSize.set({ level: 'series' }, c.series);
        deps.metrics.indexSize.set({ level: 'instances' }, c.instances);
      },
      ...(deps.collectors ?? []),
    ];
    for (const collect of sources) {
      try {
        await collect();
      } catch {
        deps.metrics.errors.inc({ component: 'metrics' });
      }
    }
    reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}
