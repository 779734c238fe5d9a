import { createReadStream, readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import yazl from 'yazl';
import { ConfigError, type Config } from '../config/config.js';
import { mtlsFetch } from '../common/mtls-fetch.js';
import type { MediaReport } from './media-import.js';

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(p);
    else if (entry.isFile()) yield p;
  }
}

/** A folder as a zip stream (stored, not deflated: DICOM compresses poorly and the node is usually local). */
function zipFolder(dir: string): Readable {
  const zip = new yazl.ZipFile();
  const out = new PassThrough();
  zip.outputStream.pipe(out);
  void (async () => {
    for await (const f of walk(dir)) zip.addFile(f, path.relative(dir, f).split(path.sep).join('/'), { compress: false });
    zip.end();
  })().catch((e: Error) => out.destroy(e));
  return out;
}

/**
 * The CLI side of media import: a folder (zipped on the fly) or an archive, streamed to the running node's
 * /api/media/imports, which does the import (it holds the PACS connection and the identity domain).
 */
export async function sendMedia(config: Config, source: string, url?: string): Promise<MediaReport> {
  const st = await stat(source).catch(() => undefined);
  if (!st) throw new ConfigError(`${source} does not exist`);
  const body = st.isDirectory() ? zipFolder(source) : createReadStream(source);
  const https = Boolean(config.tls);
  const base = (url ?? `${https ? 'https' : 'http'}://127.0.0.1:${config.httpPort}`).replace(/\/$/, '');
  const target = `${base}/api/media/imports?label=${encodeURIComponent(path.basename(path.resolve(source)))}`;
  const headers = { 'content-type': 'application/zip' };
  const res = base.startsWith('https:')
    ? await mtlsFetch({ cert: readFileSync(config.tls!.cert), key: readFileSync(config.tls!.key), ca: config.tls!.ca ? readFileSync(config.tls!.ca) : undefined })(target, { method: 'POST', headers, body })
    : await fetch(target, { method: 'POST', headers, body: Readable.toWeb(body) as ReadableStream, duplex: 'half' } as RequestInit);
  const json = (await res.json().catch(() => ({ error: `HTTP ${res.status}` }))) as MediaReport & { error?: string };
  if (res.status !== 200) throw new ConfigError(`media import refused by ${base}: ${json.error ?? res.status}`);
  return json;
}
