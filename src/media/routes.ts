import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import { anonymousNetworkGuard, clientAddress } from '../common/access.js';
import type { MediaImport } from './media-import.js';
import { ArchiveError } from './safe-zip.js';

/**
 * POST /api/media/imports (application/zip): a CD's content or an XDM package, as the CLI sends it. The body is
 * streamed to a temporary file (never held in memory), extracted with the archive limits, imported; the answer
 * is the import report. Administrators' networks only.
 */
export async function mediaApi(app: FastifyInstance, deps: { media: MediaImport; workDir: string; config: Config; log: Logger }): Promise<void> {
  app.addHook('onRequest', anonymousNetworkGuard(deps.config.dicomweb.anonymousFrom, deps.log, 'media import'));
  app.addContentTypeParser(['application/zip', 'application/octet-stream'], (_req, payload, done) => done(null, payload));
  app.post<{ Querystring: { label?: string } }>('/imports', async (req, reply) => {
    const limits = deps.config.incoming!.media;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limits.maxBytes) return reply.code(413).send({ error: `archive of ${declared} bytes exceeds the ${limits.maxBytes}-byte limit` });
    const label = (req.query.label ?? 'upload').replace(/[^\w.\- ]/g, '_').slice(0, 80);
    const dir = await mkdtemp(path.join(deps.workDir, 'upload-'));
    try {
      const zip = path.join(dir, 'media.zip');
      let received = 0;
      const body = req.body as Readable;
      body.on('data', (c: Buffer) => {
        received += c.length;
        if (received > limits.maxBytes) body.destroy(new ArchiveError(`archive exceeds the ${limits.maxBytes}-byte limit`));
      });
      await pipeline(body, createWriteStream(zip));
      const report = await deps.media.importZip(zip, label, `admin@${clientAddress(req)}`);
      return reply.code(200).send(report);
    } catch (e) {
      if (e instanceof ArchiveError) return reply.code(422).send({ error: e.message });
      throw e;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
