import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';

export interface ZipLimits {
  /** Total bytes once extracted. */
  maxBytes: number;
  maxFiles: number;
  /** Largest extracted/compressed ratio of the whole archive (a zip bomb expands by thousands). */
  maxRatio: number;
}

export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

/**
 * An entry name made safe to join under the destination, or a reason to refuse the whole archive: absolute
 * paths, drive letters, `..` segments, NUL bytes (path traversal, "zip slip").
 */
export function safeEntryPath(name: string): string {
  if (name.includes('\0')) throw new ArchiveError(`entry name with a NUL byte refused`);
  const n = name.replace(/\\/g, '/');
  if (n.startsWith('/') || /^[A-Za-z]:/.test(n)) throw new ArchiveError(`entry "${name.slice(0, 200)}" has an absolute path: refused (path traversal)`);
  const parts = n.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw new ArchiveError(`entry "${name.slice(0, 200)}" climbs out of the archive (..): refused (path traversal)`);
  return parts.join('/');
}

/**
 * Extracts a zip archive under `dest`, refusing path traversal and zip bombs. Sizes in the archive's headers
 * are not trusted: bytes are counted as they are inflated, and extraction stops as soon as a limit is crossed.
 * yauzl also validates each entry's declared sizes against what it inflates.
 */
export async function extractZip(zipPath: string, dest: string, limits: ZipLimits): Promise<{ files: string[]; bytes: number }> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(zipPath, { lazyEntries: true, autoClose: true, strictFileNames: false, validateEntrySizes: true }, (err, z) => (err ? reject(new ArchiveError(`not a readable zip archive: ${err.message}`)) : resolve(z!))),
  );
  const files: string[] = [];
  let total = 0;
  let compressed = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (e: unknown) => {
        zip.close();
        const m = (e as Error).message;
        // yauzl checks entry names too (defence in depth): its refusals are reported as what they are.
        if (!(e instanceof ArchiveError) && /invalid relative path|absolute path/i.test(m)) return reject(new ArchiveError(`${m}: refused (path traversal)`));
        reject(e instanceof ArchiveError ? e : new ArchiveError(`the archive could not be read: ${m}`));
      };
      zip.on('error', fail);
      zip.on('end', () => resolve());
      zip.on('entry', (entry: yauzl.Entry) => {
        void (async () => {
          const rel = safeEntryPath(entry.fileName);
          if (entry.fileName.endsWith('/') || rel === '') return zip.readEntry();
          // Symbolic links (Unix mode in the external attributes) could point anywhere: not extracted.
          if (((entry.externalFileAttributes >>> 16) & 0o170000) === 0o120000) return zip.readEntry();
          if (files.length >= limits.maxFiles) throw new ArchiveError(`the archive holds more than ${limits.maxFiles} files`);
          compressed += entry.compressedSize;
          const target = path.join(dest, rel);
          await mkdir(path.dirname(target), { recursive: true });
          const stream = await new Promise<NodeJS.ReadableStream>((res, rej) => zip.openReadStream(entry, (err, s) => (err ? rej(err) : res(s!))));
          const counter = new Transform({
            transform(chunk: Buffer, _enc, cb) {
              total += chunk.length;
              if (total > limits.maxBytes) return cb(new ArchiveError(`the archive expands beyond ${limits.maxBytes} bytes`));
              if (total > 16 * 1024 * 1024 && total / Math.max(1, compressed) > limits.maxRatio) return cb(new ArchiveError(`the archive expands ${Math.round(total / Math.max(1, compressed))} times its compressed size: refused as a zip bomb`));
              cb(null, chunk);
            },
          });
          await pipeline(stream, counter, createWriteStream(target, { flags: 'wx' }));
          files.push(target);
          zip.readEntry();
        })().catch(fail);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  return { files, bytes: total };
}
