import { readFile, rm } from 'node:fs/promises';
import type { Logger } from '../common/log.js';
import { isWholePart10 } from '../dicom/element-walk.js';
import type { FsBlobStore } from './blobs.js';
import { IngestError, type Ingestor } from './ingest.js';

/**
 * Ingests the whole instances a crash left in the temporary directory. An instance is acknowledged once its data
 * is synced, but the rename that puts it in place and the index row that follows are only on disk a few seconds
 * later (the filesystem's journal; SQLite's WAL with synchronous=NORMAL): a power cut in between leaves the
 * synced file under its temporary name, where the sweep would delete it. Files are taken only when no receive has
 * written to them for `olderThanMs` (nodes sharing the directory may be receiving) and when they walk whole; the
 * rest is left to the sweep. Files above `maxBytes` are read whole here, so they are left too (and logged).
 */
export async function recoverTempFiles(blobs: FsBlobStore, ingestor: Ingestor, log: Logger, opts: { olderThanMs?: number; maxBytes?: number } = {}): Promise<{ recovered: number; left: number }> {
  const olderThanMs = opts.olderThanMs ?? 10 * 60_000;
  const maxBytes = opts.maxBytes ?? 512 * 1024 * 1024;
  let recovered = 0;
  let left = 0;
  for (const file of await blobs.staleTempFiles(olderThanMs)) {
    if (file.size === 0) continue;
    if (file.size > maxBytes) {
      log.warn({ file: file.path, bytes: file.size }, 'temporary file too large to check for recovery: left to the sweep');
      left++;
      continue;
    }
    const bytes = await readFile(file.path);
    if (!isWholePart10(bytes)) {
      left++;
      continue;
    }
    const writer = ingestor.begin();
    writer.end(bytes);
    try {
      const r = await ingestor.commit(writer);
      await rm(file.path, { force: true });
      log.warn({ file: file.path, sop: r.sopUid, study: r.studyUid, outcome: r.outcome }, 'instance recovered from a receive interrupted after its data was synced');
      recovered++;
    } catch (e) {
      if (!(e instanceof IngestError)) throw e;
      log.warn({ file: file.path, reason: e.message }, 'temporary file not recovered: left to the sweep');
      left++;
    }
  }
  return { recovered, left };
}
