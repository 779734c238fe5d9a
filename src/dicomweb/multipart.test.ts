import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { multipartStream, parseMultipart, parseMediaType, MultipartError } from './multipart.js';

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function sink() {
  const parts: { headers: Record<string, string>; data: Buffer }[] = [];
  const onPart = (p: { headers: Record<string, string> }) => {
    const chunks: Buffer[] = [];
    const writable = new Writable({ write(c, _e, cb) { chunks.push(c); cb(); } });
    return { writable, done: async () => { parts.push({ headers: p.headers, data: Buffer.concat(chunks) }); } };
  };
  return { parts, onPart };
}

/** Re-chunks a buffer into pieces of `size` bytes to exercise delimiters split across chunks. */
function chunked(buf: Buffer, size: number): AsyncIterable<Buffer> {
  return (async function* () {
    for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
  })();
}

test('round trip through the writer and the streaming parser, whatever the chunking', async () => {
  const bodies = [Buffer.from('first'), Buffer.alloc(70_000, 0x2d), Buffer.from('\r\n--almost-a-boundary\r\n'), Buffer.alloc(0)];
  const boundary = 'b0undary';
  const wire = await collect(multipartStream(bodies.map((b) => ({ contentType: 'application/dicom', body: b })), boundary));
  for (const size of [1, 3, 7, 64, 1000, wire.length]) {
    const { parts, onPart } = sink();
    const n = await parseMultipart(chunked(wire, size), boundary, onPart);
    assert.equal(n, 4);
    assert.deepEqual(parts.map((p) => p.data), bodies, `chunk size ${size}`);
    assert.equal(parts[0]!.headers['content-type'], 'application/dicom');
  }
});

test('a body cut before the closing boundary is an error, not a silent success', async () => {
  const wire = await collect(multipartStream([{ contentType: 'application/dicom', body: Buffer.from('x'.repeat(100)) }], 'bb'));
  const { onPart } = sink();
  await assert.rejects(parseMultipart(chunked(wire.subarray(0, 60), 10), 'bb', onPart), MultipartError);
});

test('oversized part headers are refused', async () => {
  const wire = Buffer.from(`--bb\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\nbody\r\n--bb--\r\n`);
  const { onPart } = sink();
  await assert.rejects(parseMultipart(chunked(wire, 1000), 'bb', onPart), /headers too large/);
});

test('media type parameters', () => {
  assert.deepEqual(parseMediaType('multipart/related; type="application/dicom"; boundary=abc'), { type: 'multipart/related', params: { type: 'application/dicom', boundary: 'abc' } });
});
