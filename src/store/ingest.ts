import { closeSync, openSync, readSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Logger } from '../common/log.js';
import { wholenessProblem } from '../dicom/element-walk.js';
import { DicomParseError, parseHeader, str, withBulkData, type DicomJson, type ParsedHeader } from '../dicom/part10.js';
import { FsBlobStore, type BlobStore, type BlobWriter } from './blobs.js';
import type { StudyIndex } from './study-index.js';

export type IngestOutcome = 'stored' | 'replaced' | 'duplicate';

export interface IngestResult {
  outcome: IngestOutcome;
  patientId: string;
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  sopClassUid: string;
  bytes: number;
}

/** The instance was refused; `reason` is fit to show the sender. Nothing was stored. */
/**
 * Why a received file is not a whole data set, or undefined. Reads by position through one descriptor, opened only
 * if the check needs more than the header in memory (item headers of encapsulated pixels, what follows Pixel Data).
 */
function damageOf(writer: BlobWriter): string | undefined {
  let fd: number | undefined;
  try {
    return wholenessProblem(writer.prefix, writer.bytes, (offset, length) => {
      fd ??= openSync(writer.tempPath, 'r');
      const out = Buffer.alloc(length);
      let n = 0;
      while (n < length) {
        const r = readSync(fd, out, n, length - n, offset + n);
        if (r === 0) break;
        n += r;
      }
      return out.subarray(0, n);
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export class IngestError extends Error {
  override name = 'IngestError';
  constructor(
    message: string,
    readonly kind: 'not-dicom' | 'damaged' | 'missing-attribute' | 'mismatch' | 'too-large' | 'storage',
  ) {
    super(message);
  }
}

export interface IngestListener {
  (result: IngestResult, header: DicomJson): void;
}

/**
 * Prefix of the file kept in memory for header parsing: ordinary headers are a few kilobytes; a larger one
 * (big sequences) is parsed from the file instead. Kept small because it is copied for every instance.
 */
const HEADER_PREFIX = 64 * 1024;

/**
 * Receives instances (from DIMSE, STOW-RS or an import) as Part 10 byte streams and makes them durable and
 * findable: the file is written and synced before it is renamed into place, and only then indexed, so the
 * index never points at a partial file.
 */
export class Ingestor {
  /** Replaced, never changed in place, so a commit can iterate it while a listener stops itself. */
  private listeners: readonly IngestListener[] = [];

  constructor(
    private readonly blobs: BlobStore,
    private readonly index: StudyIndex,
    private readonly opts: { duplicates: 'keep' | 'overwrite'; maxInstanceBytes: number; log: Logger },
  ) {}

  /** Calls `l` after each instance is stored and indexed; returns the function that stops it. */
  onStored(l: IngestListener): () => void {
    this.listeners = [...this.listeners, l];
    return () => {
      this.listeners = this.listeners.filter((x) => x !== l);
    };
  }

  /** A writer for one Part 10 instance; pass it to `commit` once all bytes are written, or `discard` it. */
  begin(): BlobWriter {
    return this.blobs.createWriter({ prefixBytes: HEADER_PREFIX, maxBytes: this.opts.maxInstanceBytes });
  }

  /**
   * The header from the kept prefix; from the whole file when the prefix does not reach Pixel Data (a large
   * header, or an object without pixel data larger than the prefix), so nothing past the prefix is ever lost.
   */
  private async header(writer: BlobWriter): Promise<ParsedHeader> {
    if (writer.complete) return parseHeader(writer.prefix, true);
    try {
      const h = parseHeader(writer.prefix, false);
      if (h.hasPixelData) return h;
    } catch (e) {
      if (!(e instanceof DicomParseError) || /DICM|preamble/.test(e.message)) throw e;
    }
    return parseHeader(await readFile(writer.tempPath), true);
  }

  /** What can be decided before the bytes are durable: the header, its identifying attributes, a known instance. */
  private async check(writer: BlobWriter, expect: { sopInstanceUid?: string; sopClassUid?: string; sourceAe?: string }) {
    const header = await this.header(writer);
    const ds = header.dataset;
    for (const [tag, name] of [
      ['0020000D', 'StudyInstanceUID'],
      ['0020000E', 'SeriesInstanceUID'],
      ['00080018', 'SOPInstanceUID'],
      ['00080016', 'SOPClassUID'],
    ] as const) {
      if (!str(ds, tag)) throw new IngestError(`missing ${name} (${tag.slice(0, 4)},${tag.slice(4)})`, 'missing-attribute');
    }
    const sopUid = str(ds, '00080018');
    const sopClassUid = str(ds, '00080016');
    if (expect.sopInstanceUid && expect.sopInstanceUid !== sopUid) {
      throw new IngestError(`SOP Instance UID in the data set (${sopUid}) differs from the one in the command (${expect.sopInstanceUid})`, 'mismatch');
    }
    if (expect.sopClassUid && expect.sopClassUid !== sopClassUid) {
      throw new IngestError(`SOP Class UID in the data set (${sopClassUid}) differs from the one in the command (${expect.sopClassUid})`, 'mismatch');
    }
    const studyUid = str(ds, '0020000D');
    const seriesUid = str(ds, '0020000E');
    const key = FsBlobStore.keyFor(studyUid, sopUid);
    const stored = withBulkData(ds, `opendrim-base:/studies/${studyUid}/series/${seriesUid}/instances/${sopUid}`, header.hasPixelData, header.transferSyntaxUid);
    const rows = this.index.prepareInstance({ header: stored, transferSyntaxUid: header.transferSyntaxUid, blobKey: key, sourceAe: expect.sourceAe });
    const exists = await this.index.hasInstance(sopUid);
    return { ds, sopUid, sopClassUid, studyUid, seriesUid, key, rows, exists };
  }

  async commit(writer: BlobWriter, expect: { sopInstanceUid?: string; sopClassUid?: string; sourceAe?: string } = {}): Promise<IngestResult> {
    // The data sync runs on the thread pool while the header is parsed and checked and the index rows are
    // prepared here: the sync is most of an instance's wait, and none of this needs durable bytes. The index is
    // only written once the file is in place.
    const durable = writer.finished().then(
      () => undefined,
      (e: Error) => e,
    );
    let checked: Awaited<ReturnType<Ingestor['check']>> | Error;
    try {
      checked = await this.check(writer, expect);
    } catch (e) {
      checked = e as Error;
    }
    const writeError = await durable;
    if (writeError) {
      await writer.discard();
      throw new IngestError(writeError.message, writeError.name === 'SizeLimitError' ? 'too-large' : 'storage');
    }
    try {
      if (checked instanceof Error) throw checked;
      // A truncated or damaged object is refused before it is acknowledged: served later, it would fail to render.
      const damage = damageOf(writer);
      if (damage) throw new IngestError(`the object is not a whole DICOM data set: ${damage}`, 'damaged');
      const { ds, sopUid, sopClassUid, studyUid, seriesUid, key, rows, exists } = checked;
      if (exists && this.opts.duplicates === 'keep') {
        await writer.discard();
        return { outcome: 'duplicate', patientId: str(ds, '00100020'), studyUid, seriesUid, sopUid, sopClassUid, bytes: writer.bytes };
      }
      await this.blobs.commit(writer, key);
      try {
        await this.index.writeInstance(rows, writer.bytes);
      } catch (e) {
        // The database failed (a dropped connection, a timeout): the instance is refused, so a new file must not
        // stay in storage with nothing pointing at it. A replaced file keeps its earlier row, which still fits.
        if (!exists) await this.blobs.remove(key).catch((err) => this.opts.log.error({ err, key }, 'could not remove the file of an instance the index refused'));
        throw new IngestError(`index failure: ${(e as Error).message}`, 'storage');
      }
      const result: IngestResult = { outcome: exists ? 'replaced' : 'stored', patientId: str(ds, '00100020'), studyUid, seriesUid, sopUid, sopClassUid, bytes: writer.bytes };
      for (const l of this.listeners) {
        try {
          l(result, ds);
        } catch (e) {
          this.opts.log.error({ err: e }, 'ingest listener failed');
        }
      }
      return result;
    } catch (e) {
      await writer.discard();
      if (e instanceof IngestError) throw e;
      if (e instanceof DicomParseError) throw new IngestError(e.message, 'not-dicom');
      throw new IngestError(`storage failure: ${(e as Error).message}`, 'storage');
    }
  }
}
