import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
/** A package's folder: its package.json is not always exported, so resolve its main entry and walk up. */
function packageDir(name: string): string {
  let dir = path.dirname(require.resolve(name));
  while (!existsSync(path.join(dir, 'package.json')) || path.basename(dir) === 'dist' || path.basename(dir) === 'lib') dir = path.dirname(dir);
  return dir;
}
/** Files the browser may load: the viewer library (dwv) and its dependencies, from node_modules; our own assets. */
const STATIC: Record<string, { file: string; type: string }> = {
  'app.css': { file: path.join(here, 'static/app.css'), type: 'text/css; charset=utf-8' },
  'viewer.js': { file: path.join(here, 'static/viewer.js'), type: 'text/javascript; charset=utf-8' },
  'media.js': { file: path.join(here, 'static/media.js'), type: 'text/javascript; charset=utf-8' },
  'dwv.min.js': { file: path.join(packageDir('dwv'), 'dist/dwv.min.js'), type: 'text/javascript; charset=utf-8' },
  'konva.min.js': { file: path.join(packageDir('konva'), 'konva.min.js'), type: 'text/javascript; charset=utf-8' },
  'jszip.min.js': { file: path.join(packageDir('jszip'), 'dist/jszip.min.js'), type: 'text/javascript; charset=utf-8' },
  'shim-konva.js': { file: path.join(here, 'static/shim-konva.js'), type: 'text/javascript; charset=utf-8' },
  'shim-jszip.js': { file: path.join(here, 'static/shim-jszip.js'), type: 'text/javascript; charset=utf-8' },
  'shim-magic-wand.js': { file: path.join(here, 'static/shim-magic-wand.js'), type: 'text/javascript; charset=utf-8' },
  'magic-wand.js': { file: path.join(packageDir('magic-wand-tool'), 'dist/magic-wand.js'), type: 'text/javascript; charset=utf-8' },
};

/**
 * The browser assets of OpenDRIM's pages (the practitioners' application, the patients' share links): the dwv
 * viewer and its dependencies from node_modules, our scripts and styles. Registered once per node.
 */
export async function staticAssets(app: FastifyInstance): Promise<void> {
  // dwv's decoders for compressed images run in workers it loads from its own folder.
  app.get('/app/static/assets/workers/:file', async (req, reply) => {
    const file = (req.params as { file: string }).file;
    if (!/^[a-z0-9]+\.worker\.min\.js$/.test(file)) return reply.code(404).send({ error: 'no such file' });
    reply.header('Cache-Control', 'public, max-age=3600');
    return reply.type('text/javascript; charset=utf-8').send(await readFile(path.join(packageDir('dwv'), 'dist/assets/workers', file)));
  });

  app.get('/app/static/:file', async (req, reply) => {
    const entry = STATIC[(req.params as { file: string }).file];
    if (!entry) return reply.code(404).send({ error: 'no such file' });
    reply.header('Cache-Control', 'public, max-age=3600');
    return reply.type(entry.type).send(await readFile(entry.file));
  });

}
