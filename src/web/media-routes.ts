import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import multipart from '@fastify/multipart';
import type { FastifyInstance } from 'fastify';
import { HttpError } from '../dicomweb/wado.js';
import { ArchiveError, safeEntryPath } from '../media/safe-zip.js';
import { esc, page } from './html.js';
import { pageContext, type WebDeps, type WebRequest } from './plugin.js';

/**
 * A patient's CD in the browser: a folder (the CD's root, with its DICOMDIR) or a zip/XDM archive uploaded with
 * a progress bar; each exam then goes through identity reconciliation into the local PACS.
 */
export async function mediaRoutes(app: FastifyInstance, { deps }: { deps: WebDeps }): Promise<void> {
  const media = deps.media!;
  const limits = deps.mediaLimits!;
  // preservePath: a folder upload names each file by its path inside the folder (a CD's DICOMDIR refers to its
  // files by those paths, and two files of different folders often share a name); busboy keeps only the base
  // name otherwise. The path is confined to the upload directory below (safeEntryPath).
  await app.register(multipart, { preservePath: true, limits: { fileSize: limits.maxBytes, files: limits.maxFiles, fields: 4, parts: limits.maxFiles + 4 } });

  app.get('/app/media', async (req, reply) => {
    const r = req as WebRequest;
    const { t } = r;
    return reply.type('text/html').send(
      page(
        pageContext(r),
        t.mediaImport,
        `<section class="card"><h1>${esc(t.mediaImport)}</h1><p>${esc(t.mediaIntro)}</p>
<form id="media-form" data-csrf="${esc(r.session!.csrf)}">
<p><label>${esc(t.mediaFolder)} <input type="file" id="media-folder" webkitdirectory directory multiple></label></p>
<p><label>${esc(t.mediaArchive)} <input type="file" id="media-zip" accept=".zip,application/zip"></label></p>
<button type="submit" id="media-send">${esc(t.mediaSend)}</button></form>
<p><progress id="media-progress" max="100" value="0" hidden></progress> <span id="media-status"></span></p>
<div id="media-report"></div></section>`,
        { scripts: ['/app/static/media.js'] },
      ),
    );
  });

  app.post('/app/media/upload', async (req, reply) => {
    const r = req as WebRequest;
    if (!req.isMultipart()) throw new HttpError(415, 'send the media as multipart/form-data');
    const dir = await mkdtemp(path.join(deps.mediaWorkDir!, 'web-'));
    try {
      const root = path.join(dir, 'media');
      await mkdir(root);
      const saved: string[] = [];
      let bytes = 0;
      for await (const part of req.files()) {
        // The browser sends each file of a folder with its path inside the folder; it must stay inside ours.
        const rel = safeEntryPath(part.filename || `file-${saved.length}`);
        const target = path.join(root, rel || `file-${saved.length}`);
        await mkdir(path.dirname(target), { recursive: true });
        await pipeline(part.file, createWriteStream(target, { flags: 'wx' }));
        if (part.file.truncated) throw new ArchiveError(`${rel} exceeds the ${limits.maxBytes}-byte limit`);
        bytes += part.file.bytesRead;
        if (bytes > limits.maxBytes) throw new ArchiveError(`the upload exceeds the ${limits.maxBytes}-byte limit`);
        saved.push(target);
      }
      if (!saved.length) throw new HttpError(400, 'no file was sent');
      const by = r.session!.data.professional.id;
      const label = path.basename(saved[0]!).slice(0, 60);
      const single = saved.length === 1 && /\.zip$/i.test(saved[0]!);
      const report = single ? await media.importZip(saved[0]!, label, by) : await media.importFolder(root, label, by);
      return reply.send(report);
    } catch (e) {
      if (e instanceof ArchiveError) return reply.code(422).send({ error: e.message });
      if ((e as { code?: string }).code === 'FST_FILES_LIMIT' || (e as { code?: string }).code === 'FST_PARTS_LIMIT') return reply.code(413).send({ error: `more than ${limits.maxFiles} files` });
      throw e;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
