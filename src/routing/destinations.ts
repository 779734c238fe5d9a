import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { mtlsFetch, type ClientTls } from '../common/mtls-fetch.js';
import { multipartStream, newBoundary } from '../dicomweb/multipart.js';
import { storeInstances, type OutboundInstance, type Remote } from '../dicom/scu.js';

export interface SendOutcome {
  sent: number;
  failed: number;
  error?: string;
}

/** Where routed studies go: another OpenDRIM (STOW-RS over mutual TLS) or any DICOM AE (C-STORE). */
export interface RouteDestination {
  readonly name: string;
  readonly describe: string;
  send(files: OutboundInstance[], onProgress: (sent: number) => void): Promise<SendOutcome>;
}

/**
 * Another OpenDRIM's exchange port: STOW-RS with this box's certificate (the receiver checks it against the
 * trust list), the body streamed from the files as it is sent, several requests in flight so that a long link
 * stays busy while the receiver stores, and optionally gzip (worth it for uncompressed CT/MR over a WAN).
 */
export class OpendrimDestination implements RouteDestination {
  private readonly fetch: ReturnType<typeof mtlsFetch>;
  constructor(
    private readonly opts: { name: string; url: string; tls: ClientTls; gzip: boolean; parallel: number; batch: number },
  ) {
    this.fetch = mtlsFetch(opts.tls);
  }

  get name(): string {
    return this.opts.name;
  }

  get describe(): string {
    return `OpenDRIM ${new URL(this.opts.url).origin}`;
  }

  async send(files: OutboundInstance[], onProgress: (sent: number) => void): Promise<SendOutcome> {
    const batches: OutboundInstance[][] = [];
    for (let i = 0; i < files.length; i += this.opts.batch) batches.push(files.slice(i, i + this.opts.batch));
    const out: SendOutcome = { sent: 0, failed: 0 };
    let next = 0;
    const worker = async () => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        const r = await this.post(batch).catch((e: Error) => ({ sent: 0, failed: batch.length, error: e.message }));
        out.sent += r.sent;
        out.failed += r.failed;
        if (r.error) out.error = r.error;
        onProgress(out.sent);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.parallel, batches.length) }, worker));
    return out;
  }

  private async post(batch: OutboundInstance[]): Promise<SendOutcome> {
    const boundary = newBoundary();
    let body: Readable = multipartStream(batch.map((f) => ({ contentType: 'application/dicom', body: createReadStream(f.path) })), boundary);
    const headers: Record<string, string> = { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: 'application/dicom+json' };
    if (this.opts.gzip) {
      body = body.pipe(createGzip({ level: 3 }));
      headers['content-encoding'] = 'gzip';
    }
    const res = await this.fetch(`${this.opts.url.replace(/\/$/, '')}/dicom-web/studies`, { method: 'POST', headers, body });
    const text = await res.text();
    let json: Record<string, { Value?: unknown[] }> = {};
    try {
      json = JSON.parse(text) as typeof json;
    } catch {
      // not JSON: an error page or message
    }
    const sent = (json['00081199']?.Value ?? []).length;
    const failed = (json['00081198']?.Value ?? []).length;
    if (res.status >= 400 && res.status !== 409) return { sent, failed: batch.length - sent, error: `HTTP ${res.status}: ${((json as { error?: string }).error ?? text).toString().slice(0, 300)}` };
    return { sent, failed: Math.max(failed, batch.length - sent), ...(failed ? { error: `${failed} instance(s) refused by the receiver` } : {}) };
  }
}

/** Any DICOM AE, by C-STORE on one association. */
export class DicomDestination implements RouteDestination {
  constructor(private readonly opts: { name: string; remote: Remote; callingAe: string }) {}

  get name(): string {
    return this.opts.name;
  }

  get describe(): string {
    return `DICOM ${this.opts.remote.aeTitle}@${this.opts.remote.host}:${this.opts.remote.port}`;
  }

  async send(files: OutboundInstance[], onProgress: (sent: number) => void): Promise<SendOutcome> {
    const r = await storeInstances(this.opts.remote, this.opts.callingAe, files, { onProgress: (p) => onProgress(p.completed + p.warning) });
    return { sent: r.completed + r.warning, failed: r.failed + (files.length - r.completed - r.warning - r.failed), error: r.error };
  }
}
