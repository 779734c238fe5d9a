import { createHash, randomUUID } from 'node:crypto';
import { closeSync, createReadStream, fdatasync, mkdirSync, open as openCb, openSync, renameSync, writeSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Readable } from 'node:stream';

/**
 * Where instance files live. The filesystem implementation is the embedded default; an object-storage
 * implementation plugs in behind the same interface.
 */
export interface BlobStore {
  /** A writer for a new object; nothing is visible under any key until `commit`. */
  createWriter(opts?: { prefixBytes?: number; maxBytes?: number }): BlobWriter;
  /** A path on the local filesystem for tools that need one (DIMSE sending); undefined for remote stores. */
  localPath(key: string): string | undefined;
  commit(writer: BlobWriter, key: string): Promise<void>;
  read(key: string, range?: { start: number; end?: number }): Readable;
  /** The whole object in one piece, for small objects read ahead of need (one read instead of a stream). */
  readAll?(key: string): Promise<Buffer>;
  size(key: string): Promise<number>;
  remove(key: string): Promise<void>;
  ping(): Promise<void>;
}

export class SizeLimitError extends Error {
  override name = 'SizeLimitError';
}

/**
 * A Writable that streams to a temporary file and keeps the first `prefixBytes` in memory, so the DICOM header
 * can be parsed without reading the file back. `finish` means the bytes are on stable storage (fdatasync).
 *
 * Writes are synchronous on purpose: they only copy into the page cache (tens of microseconds for a PDU),
 * while a thread-pool round trip per chunk cost more than the copy and serialised every C-STORE behind the
 * pool. Only the data sync, which waits for the disk, goes to the thread pool.
 */
export class BlobWriter extends Writable {
  bytes = 0;
  private readonly chunks: Buffer[] = [];
  private prefixLength = 0;
  private failure: Error | undefined;

  constructor(
    readonly tempPath: string,
    private readonly prefixBytes: number,
    private readonly maxBytes: number,
    private readonly sync = true,
    /** An already created and opened temporary file, when the store had one ready. */
    private fd: number | undefined = undefined,
  ) {
    // autoDestroy off: destroying removes the temporary file, which must survive until commit renames it.
    super({ highWaterMark: 1024 * 1024, autoDestroy: false });
    // Errors are reported through finished(); an 'error' nobody listens to must not crash the process.
    this.on('error', (e) => (this.failure ??= e));
  }

  /** The kept prefix (the whole content when `bytes <= prefixBytes`). */
  get prefix(): Buffer {
    return Buffer.concat(this.chunks, this.prefixLength);
  }

  get complete(): boolean {
    return this.bytes <= this.prefixBytes;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      cb(new SizeLimitError(`object larger than the ${this.maxBytes}-byte limit`));
      return;
    }
    if (this.prefixLength < this.prefixBytes) {
      const keep = chunk.subarray(0, this.prefixBytes - this.prefixLength);
      // Copy: the network layer may reuse its buffer after the write callback.
      this.chunks.push(Buffer.from(keep));
      this.prefixLength += keep.length;
    }
    try {
      this.fd ??= openSync(this.tempPath, 'w', 0o600);
      let off = 0;
      while (off < chunk.length) off += writeSync(this.fd, chunk, off);
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    try {
      this.fd ??= openSync(this.tempPath, 'w', 0o600);
    } catch (e) {
      cb(e as Error);
      return;
    }
    const fd = this.fd;
    // close and rename are metadata calls of a few microseconds: done synchronously, as a thread-pool round
    // trip costs more than the call. Only the data sync, which waits on the disk, goes through the pool.
    const closeIt = () => {
      this.fd = undefined;
      try {
        closeSync(fd);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    };
    if (!this.sync) return closeIt();
    fdatasync(fd, (err) => (err ? cb(err) : closeIt()));
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) closeSync(fd);
    rm(this.tempPath, { force: true }).then(() => cb(err), () => cb(err));
  }

  /** Waits until the data is durable; rejects with the write error if any. */
  finished(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      if (this.destroyed && !this.writableFinished) return reject(new Error('write aborted'));
      if (this.writableFinished) return resolve();
      this.once('finish', resolve);
      this.once('error', reject);
      if (!this.writableEnded) this.end();
    });
  }

  /** Drops the temporary file (after a failed or duplicate receive). */
  async discard(): Promise<void> {
    if (!this.destroyed) {
      await new Promise<void>((resolve) => {
        this.once('close', () => resolve());
        this.destroy();
      });
    }
    await rm(this.tempPath, { force: true });
  }
}

export class FsBlobStore implements BlobStore {
  private readonly tmpDir: string;
  private readonly root: string;

  constructor(
    dataDir: string,
    private readonly opts: { fsync?: boolean } = {},
  ) {
    this.root = path.join(dataDir, 'storage');
    this.tmpDir = path.join(dataDir, 'tmp');
    mkdirSync(this.root, { recursive: true });
    mkdirSync(this.tmpDir, { recursive: true });
  }

  /**
   * One directory per study, spread over two levels of fan-out: no directory grows to millions of entries, a
   * study's files sit together (one mkdir per study rather than per instance, and one place to delete), and
   * names are hashes so no UID ever reaches the filesystem as a path.
   */
  static keyFor(studyUid: string, sopInstanceUid: string): string {
    const s = createHash('sha1').update(studyUid).digest('hex');
    const i = createHash('sha1').update(sopInstanceUid).digest('hex');
    return `${s.slice(0, 2)}/${s.slice(2, 4)}/${s}/${i}.dcm`;
  }

  private pathOf(key: string): string {
    if (key.includes('..') || path.isAbsolute(key)) throw new Error(`invalid blob key ${key}`);
    return path.join(this.root, key);
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  /**
   * Temporary files created ahead of need: creating a file costs the better part of a millisecond on a busy
   * ext4 journal, which is better paid while the network is idle than while a C-STORE waits.
   */
  private readonly spare: Array<{ path: string; fd: number }> = [];
  private refilling = false;
  /** The empty file being made ahead right now (it exists on disk before it joins `spare`). */
  private preparing: string | undefined;
  private closed = false;

  private refill(): void {
    if (this.refilling || this.closed || this.spare.length >= 4) return;
    this.refilling = true;
    const p = path.join(this.tmpDir, `${randomUUID()}.part`);
    this.preparing = p;
    // Callback API on purpose: it yields a plain descriptor that the writer closes (a FileHandle would close it on GC).
    // Patient data: readable by this service's user only.
    openCb(p, 'w', 0o600, (err, fd) => {
      this.refilling = false;
      this.preparing = undefined;
      if (err) return;
      if (this.closed) {
        closeSync(fd);
        void rm(p, { force: true });
        return;
      }
      this.spare.push({ path: p, fd });
      this.refill();
    });
  }

  createWriter(opts: { prefixBytes?: number; maxBytes?: number } = {}): BlobWriter {
    const ready = this.spare.shift();
    this.refill();
    const file = ready?.path ?? path.join(this.tmpDir, `${randomUUID()}.part`);
    return new BlobWriter(file, opts.prefixBytes ?? 1024 * 1024, opts.maxBytes ?? Number.MAX_SAFE_INTEGER, this.opts.fsync ?? true, ready?.fd);
  }

  /** Temporary files holding data (receives in progress or left over), not counting the empty ones made ahead. */
  async pendingTempFiles(): Promise<string[]> {
    // Listed first, then compared with the spares as they are once the listing is back.
    const files = await readdir(this.tmpDir);
    const spare = new Set([...this.spare.map((x) => path.basename(x.path)), ...(this.preparing ? [path.basename(this.preparing)] : [])]);
    return files.filter((f) => !spare.has(f));
  }

  /** Releases the temporary files made ahead of need. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.spare.splice(0)) {
      try {
        closeSync(s.fd);
      } catch {
        /* already closed */
      }
      await rm(s.path, { force: true });
    }
  }

  private readonly knownDirs = new Set<string>();

  async commit(writer: BlobWriter, key: string): Promise<void> {
    await writer.finished();
    const target = this.pathOf(key);
    const dir = path.dirname(target);
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      if (this.knownDirs.size < 100_000) this.knownDirs.add(dir);
    }
    // rename(2) is atomic: readers see the old file or the new one, never a partial one.
    renameSync(writer.tempPath, target);
  }

  read(key: string, range?: { start: number; end?: number }): Readable {
    return createReadStream(this.pathOf(key), range ? { start: range.start, end: range.end, highWaterMark: 1024 * 1024 } : { highWaterMark: 1024 * 1024 });
  }

  readAll(key: string): Promise<Buffer> {
    return readFile(this.pathOf(key));
  }

  async size(key: string): Promise<number> {
    return (await stat(this.pathOf(key))).size;
  }

  async remove(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }

  async ping(): Promise<void> {
    const probe = path.join(this.tmpDir, `.health-${process.pid}`);
    const fh = await open(probe, 'w');
    await fh.close();
    await rm(probe, { force: true });
  }

  /** Temporary files not written to for `olderThanMs` (no receive is writing them), with their size. */
  async staleTempFiles(olderThanMs: number): Promise<Array<{ path: string; size: number }>> {
    const out: Array<{ path: string; size: number }> = [];
    for (const name of await readdir(this.tmpDir)) {
      const p = path.join(this.tmpDir, name);
      const st = await stat(p).catch(() => undefined);
      if (st?.isFile() && Date.now() - st.mtimeMs > olderThanMs) out.push({ path: p, size: st.size });
    }
    return out;
  }

  /**
   * Leftovers of receives interrupted by a crash; nothing in the index points at them. Only old ones go, since
   * another node sharing this directory may be writing its own temporary files right now.
   */
  async sweepTemp(olderThanMs = 3600_000): Promise<number> {
    let removed = 0;
    for (const name of await readdir(this.tmpDir)) {
      const p = path.join(this.tmpDir, name);
      const st = await stat(p).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > olderThanMs) {
        await rm(p, { force: true });
        removed++;
      }
    }
    return removed;
  }
}
