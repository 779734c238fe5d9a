import { createReadStream } from 'node:fs';
import { mtlsFetch } from '../common/mtls-fetch.js';
import { throttled, type Bandwidth, type BandwidthFlow } from '../common/bandwidth.js';
import { Readable } from 'node:stream';
import type { DicomJson } from '../dicom/part10.js';
import { multipartStream, newBoundary, parseMediaType, parseMultipart, type OutgoingPart } from './multipart.js';

export class DicomwebError extends Error {
  override name = 'DicomwebError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

export interface PartSink {
  writable: NodeJS.WritableStream & import('node:stream').Writable;
  done(): Promise<void>;
}

/**
 * DICOMweb client (PS3.18) used to pull from and push to other nodes and PACS: QIDO-RS search, WADO-RS
 * retrieve streamed part by part into a sink (never a whole study in memory), STOW-RS in batches.
 */
export class DicomwebClient {
  private readonly base: string;

  constructor(
    baseUrl: string,
    private readonly opts: { headers?: Record<string, string>; timeoutMs?: number; tls?: { cert: Buffer; key: Buffer; ca?: Buffer } } = {},
  ) {
    this.base = baseUrl.replace(/\/+$/, '');
  }

  private async request(path: string, init: RequestInit & { duplex?: 'half' } = {}): Promise<Response> {
    const url = this.base + path;
    let res: Response;
    try {
      res = this.opts.tls ? await mtlsFetch(this.opts.tls, { timeoutMs: this.opts.timeoutMs })(url, { ...init, headers: { ...(this.opts.headers ?? {}), ...((init.headers as Record<string, string>) ?? {}) } }) : await fetch(url, { ...init, headers: { ...(this.opts.headers ?? {}), ...((init.headers as Record<string, string>) ?? {}) }, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 600_000) } as RequestInit);
    } catch (e) {
      throw new DicomwebError(`${init.method ?? 'GET'} ${url}: ${(e as Error).message}`);
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw new DicomwebError(`${init.method ?? 'GET'} ${url}: HTTP ${res.status} ${text.slice(0, 300)}`, res.status);
    }
    return res;
  }

  /** QIDO-RS: `path` is /studies, /studies/{uid}/series, /instances, ... */
  async search(path: string, params: Record<string, string | number | string[]> = {}): Promise<DicomJson[]> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const x of Array.isArray(v) ? v : [v]) qs.append(k, String(x));
    const res = await this.request(`${path}${qs.size ? `?${qs}` : ''}`, { headers: { accept: 'application/dicom+json' } });
    if (res.status === 204) return [];
    const text = await res.text();
    return text.trim() ? (JSON.parse(text) as DicomJson[]) : [];
  }

  /** WADO-RS metadata of a study/series/instance. */
  async metadata(studyUid: string, seriesUid?: string): Promise<DicomJson[]> {
    const res = await this.request(`/studies/${studyUid}${seriesUid ? `/series/${seriesUid}` : ''}/metadata`, { headers: { accept: 'application/dicom+json' } });
    return (await res.json()) as DicomJson[];
  }

  /**
   * WADO-RS retrieve of a study or series: each instance is streamed into the sink `open` returns, and
   * `done` is awaited before the next part is read. Returns the number of instances received.
   */
  async retrieve(target: { studyUid: string; seriesUid?: string; sopUid?: string }, open: () => PartSink, opts: { bandwidth?: Bandwidth | BandwidthFlow } = {}): Promise<number> {
    let path = `/studies/${target.studyUid}`;
    if (target.seriesUid) path += `/series/${target.seriesUid}`;
    if (target.sopUid) path += `/instances/${target.sopUid}`;
    const res = await this.request(path, { headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
    const ct = parseMediaType(res.headers.get('content-type') ?? '');
    if (ct.type !== 'multipart/related' || !ct.params.boundary) throw new DicomwebError(`GET ${path}: expected multipart/related, got ${res.headers.get('content-type')}`);
    if (!res.body) throw new DicomwebError(`GET ${path}: empty body`);
    return parseMultipart(throttled(Readable.fromWeb(res.body as any) as AsyncIterable<Buffer>, opts.bandwidth), ct.params.boundary, () => open());
  }

  /** STOW-RS of local Part 10 files, `batchSize` instances per request (one round trip per batch, not per instance). */
  async store(files: Array<string | Buffer>, opts: { studyUid?: string; batchSize?: number } = {}): Promise<{ stored: number; failed: number; responses: DicomJson[] }> {
    const batchSize = opts.batchSize ?? 50;
    const out = { stored: 0, failed: 0, responses: [] as DicomJson[] };
    for (let i = 0; i < files.length; i += batchSize) {
      const batch = files.slice(i, i + batchSize);
      const boundary = newBoundary();
      const parts: OutgoingPart[] = batch.map((f) => ({ contentType: 'application/dicom', body: typeof f === 'string' ? createReadStream(f) : f }));
      const body = Readable.toWeb(multipartStream(parts, boundary));
      let res: Response;
      try {
        res = await this.request(`/studies${opts.studyUid ? `/${opts.studyUid}` : ''}`, {
          method: 'POST',
          headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: 'application/dicom+json' },
          body: body as any,
          duplex: 'half',
        });
      } catch (e) {
        // 409 (all refused) still carries a response body worth reading.
        if (e instanceof DicomwebError && e.status === 409) {
          out.failed += batch.length;
          continue;
        }
        throw e;
      }
      const json = (await res.json().catch(() => ({}))) as DicomJson;
      out.responses.push(json);
      out.stored += (json['00081199']?.Value ?? []).length;
      out.failed += (json['00081198']?.Value ?? []).length;
    }
    return out;
  }
}
