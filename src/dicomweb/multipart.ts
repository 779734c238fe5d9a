import { randomBytes } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';

export interface OutgoingPart {
  contentType: string;
  headers?: Record<string, string>;
  /** A stream (e.g. a file) or bytes already in memory. */
  body: Readable | Buffer;
}

export function newBoundary(): string {
  return `opendrim-${randomBytes(12).toString('hex')}`;
}

/** Streams parts as a multipart/related body (PS3.18 8.7.1): one part at a time, with backpressure. */
export function multipartStream(parts: AsyncIterable<OutgoingPart> | Iterable<OutgoingPart>, boundary: string): Readable {
  async function* gen() {
    for await (const part of parts) {
      let head = `\r\n--${boundary}\r\nContent-Type: ${part.contentType}\r\n`;
      for (const [k, v] of Object.entries(part.headers ?? {})) head += `${k}: ${v}\r\n`;
      if (Buffer.isBuffer(part.body)) head += `Content-Length: ${part.body.length}\r\n`;
      yield Buffer.from(head + '\r\n');
      if (Buffer.isBuffer(part.body)) yield part.body;
      else for await (const chunk of part.body) yield chunk as Buffer;
    }
    yield Buffer.from(`\r\n--${boundary}--\r\n`);
  }
  return Readable.from(gen(), { objectMode: false });
}

export class MultipartError extends Error {
  override name = 'MultipartError';
}

/** Parses `multipart/related; type="..."; boundary=...` into its parameters. */
export function parseMediaType(header: string | undefined): { type: string; params: Record<string, string> } {
  const [type, ...rest] = (header ?? '').split(';');
  const params: Record<string, string> = {};
  for (const p of rest) {
    const i = p.indexOf('=');
    if (i < 0) continue;
    params[p.slice(0, i).trim().toLowerCase()] = p.slice(i + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return { type: (type ?? '').trim().toLowerCase(), params };
}

export interface IncomingPart {
  headers: Record<string, string>;
}

/**
 * Streaming multipart parser. Written here because the maintained npm parsers (busboy, @fastify/multipart) only
 * handle multipart/form-data, and dicer is unmaintained. Each part's bytes go to the Writable that `onPart`
 * returns, with backpressure; a part is never held whole in memory.
 */
export async function parseMultipart(
  body: AsyncIterable<Buffer>,
  boundary: string,
  onPart: (part: IncomingPart) => { writable: Writable; done: () => Promise<void> },
  limits: { maxHeaderBytes?: number; maxParts?: number } = {},
): Promise<number> {
  if (!boundary || boundary.length > 200) throw new MultipartError(`missing or invalid multipart boundary "${boundary.slice(0, 80)}"`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const maxHeader = limits.maxHeaderBytes ?? 16 * 1024;
  const maxParts = limits.maxParts ?? 100_000;
  let state: 'preamble' | 'afterDelimiter' | 'headers' | 'body' | 'end' = 'preamble';
  // A leading CRLF makes a boundary at the very start look like every other delimiter.
  let buf: Buffer = Buffer.from('\r\n');
  let current: { writable: Writable; done: () => Promise<void> } | undefined;
  let count = 0;

  const write = async (data: Buffer) => {
    if (!current || data.length === 0) return;
    const w = current.writable;
    // A part whose sink failed (a full disk) is read to its end and dropped: its own outcome says why, and the
    // parts after it are still stored and listed.
    if (w.errored || w.destroyed) return;
    if (!w.write(data)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          w.off('drain', done);
          w.off('error', done);
          w.off('close', done);
          resolve();
        };
        w.on('drain', done);
        w.on('error', done);
        w.on('close', done);
      });
    }
  };

  const process = async (final: boolean) => {
    for (;;) {
      if (state === 'preamble' || state === 'body') {
        const i = buf.indexOf(delimiter);
        if (i < 0) {
          const keep = delimiter.length - 1;
          if (state === 'body' && buf.length > keep) await write(buf.subarray(0, buf.length - keep));
          if (buf.length > keep) buf = buf.subarray(buf.length - keep);
          return;
        }
        if (state === 'body') {
          await write(buf.subarray(0, i));
          const part = current!;
          current = undefined;
          part.writable.end();
          await part.done();
        }
        buf = buf.subarray(i + delimiter.length);
        state = 'afterDelimiter';
      }
      if (state === 'afterDelimiter') {
        if (buf.length < 2) return;
        if (buf[0] === 0x2d && buf[1] === 0x2d) {
          state = 'end';
          return;
        }
        const eol = buf.indexOf('\r\n');
        if (eol < 0) {
          if (buf.length > 1024) throw new MultipartError('malformed multipart delimiter line');
          return;
        }
        buf = buf.subarray(eol + 2);
        state = 'headers';
      }
      if (state === 'headers') {
        const end = buf.indexOf('\r\n\r\n');
        const empty = buf.length >= 2 && buf[0] === 0x0d && buf[1] === 0x0a;
        if (end < 0 && !empty) {
          if (buf.length > maxHeader) throw new MultipartError('multipart part headers too large');
          return;
        }
        const headerText = empty ? '' : buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(empty ? 2 : end + 4);
        const headers: Record<string, string> = {};
        for (const line of headerText.split('\r\n')) {
          const c = line.indexOf(':');
          if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
        }
        if (++count > maxParts) throw new MultipartError(`more than ${maxParts} parts`);
        current = onPart({ headers });
        state = 'body';
        continue;
      }
      return;
    }
  };

  try {
    for await (const chunk of body) {
      if ((state as string) === 'end') break;
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      await process(false);
    }
    await process(true);
  } catch (e) {
    // Destroyed without an error: the owner of the part is told through the exception below.
    current?.writable.destroy();
    throw e;
  }
  if ((state as string) !== 'end') {
    current?.writable.destroy();
    throw new MultipartError('multipart body ended before its closing boundary');
  }
  return count;
}
