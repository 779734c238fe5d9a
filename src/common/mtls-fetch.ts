import https from 'node:https';
import { Readable } from 'node:stream';

export interface ClientTls {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
}

/**
 * fetch over HTTPS presenting a client certificate (mutual TLS). Node's built-in fetch cannot present one
 * without undici's dispatcher, which is not a dependency here; node:https does the request and the answer is
 * returned as a standard Response, so callers (the DICOMweb client, openid-client's customFetch) stay unchanged.
 */
export function mtlsFetch(tls: ClientTls, defaults: { timeoutMs?: number } = {}) {
  return (input: string | URL, init: { method?: string; headers?: HeadersInit | Record<string, string>; body?: unknown; signal?: AbortSignal | null } = {}): Promise<Response> => {
    const url = new URL(String(input));
    if (url.protocol !== 'https:') return Promise.reject(new Error(`mutual TLS needs an https URL, not ${url.protocol}`));
    const headers: Record<string, string> = {};
    new Headers(init.headers as HeadersInit | undefined).forEach((v, k) => (headers[k] = v));
    const raw = init.body;
    // Streams (a STOW-RS body) are piped as they come; anything else is sent in one piece.
    const stream = raw instanceof ReadableStream ? Readable.fromWeb(raw as any) : raw instanceof Readable ? raw : undefined;
    const body = stream || raw === undefined || raw === null ? undefined : raw instanceof URLSearchParams ? raw.toString() : typeof raw === 'string' ? raw : Buffer.from(raw as Uint8Array);
    if (body !== undefined && headers['content-length'] === undefined) headers['content-length'] = String(Buffer.byteLength(body));
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method: init.method ?? 'GET', headers, cert: tls.cert, key: tls.key, ca: tls.ca, minVersion: 'TLSv1.2', timeout: defaults.timeoutMs ?? 600_000, signal: init.signal ?? undefined }, (res) => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
        const status = res.statusCode ?? 502;
        resolve(new Response(status === 204 || status === 304 ? null : (Readable.toWeb(res) as ReadableStream), { status, headers: h }));
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      if (stream) {
        stream.on('error', (e) => req.destroy(e));
        stream.pipe(req);
      } else req.end(body);
    });
  };
}
