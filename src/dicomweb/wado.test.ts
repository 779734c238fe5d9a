import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import Fastify from 'fastify';
import type { BlobStore } from '../store/blobs.js';
import type { StoredInstance } from '../store/study-index.js';
import { parseMediaType, parseMultipart } from './multipart.js';
import { sendInstances } from './wado.js';

const TS = '1.2.840.10008.1.2.1';
const instance = (n: number, size = 1000): StoredInstance => ({ studyUid: '1.2', seriesUid: '1.2.1', sopUid: `1.2.1.${n}`, sopClassUid: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxUid: TS, blobKey: `k${n}`, size, instanceNumber: n, frames: null });
const bytesOf = (key: string, size: number) => Buffer.alloc(size, key.charCodeAt(key.length - 1));

function fakeBlobs(sizes: Map<string, number>, reads: string[]): BlobStore {
  return {
    read: (key: string) => Readable.from([bytesOf(key, sizes.get(key)!)]),
    readAll: async (key: string) => {
      reads.push(key);
      return bytesOf(key, sizes.get(key)!);
    },
    localPath: () => undefined,
  } as unknown as BlobStore;
}

async function serve(provider: () => AsyncIterable<StoredInstance>, blobs: BlobStore) {
  const app = Fastify();
  app.get('/study', (req, reply) => sendInstances(req, reply, provider(), { blobs, notFound: 'none' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as { port: number }).port;
  return { app, url: `http://127.0.0.1:${port}/study` };
}

async function readParts(res: Response, onPartDone?: (n: number) => void): Promise<Buffer[]> {
  const ct = parseMediaType(res.headers.get('content-type') ?? '');
  const out: Buffer[] = [];
  await parseMultipart(Readable.fromWeb(res.body as any) as AsyncIterable<Buffer>, ct.params.boundary!, () => {
    const chunks: Buffer[] = [];
    return {
      writable: new Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) }),
      done: async () => {
        out.push(Buffer.concat(chunks));
        onPartDone?.(out.length);
      },
    };
  });
  return out;
}

test('retrieve reads ahead yet sends every instance, in order, each whole', async () => {
  const list = Array.from({ length: 12 }, (_, n) => instance(n, 1000 + n));
  const reads: string[] = [];
  const { app, url } = await serve(async function* () {
    yield* list;
  }, fakeBlobs(new Map(list.map((i) => [i.blobKey, i.size])), reads));
  try {
    const parts = await readParts(await fetch(url, { headers: { accept: 'multipart/related; type="application/dicom"' } }));
    assert.deepEqual(parts.map((p) => p.length), list.map((i) => i.size));
    assert.deepEqual(parts.map((p) => p[0]), list.map((i) => i.blobKey.charCodeAt(i.blobKey.length - 1)));
    assert.equal(reads.length, 12, 'small instances read whole, ahead of need');
  } finally {
    await app.close();
  }
});

test('an instance already here is sent while the next one is still arriving', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const list = [instance(1), instance(2)];
  const { app, url } = await serve(async function* () {
    yield list[0]!;
    await gate; // the second instance is still crossing from another box
    yield list[1]!;
  }, fakeBlobs(new Map(list.map((i) => [i.blobKey, i.size])), []));
  try {
    const timer = setTimeout(release, 5000); // were the first held back, only this would let it go
    const t0 = Date.now();
    let firstAt = 0;
    let received = 0;
    const res = await fetch(url, { headers: { accept: 'multipart/related; type="application/dicom"' } });
    // A multipart part ends at the next delimiter, so the first part's bytes, not its end, are what can be seen.
    for await (const chunk of Readable.fromWeb(res.body as any) as AsyncIterable<Buffer>) {
      received += chunk.length;
      if (!firstAt && received >= list[0]!.size) {
        firstAt = Date.now() - t0;
        release();
      }
    }
    clearTimeout(timer);
    assert.ok(received > list[0]!.size + list[1]!.size, 'both parts sent');
    assert.ok(firstAt < 2000, `the first instance's bytes came after ${firstAt} ms, held back by the second`);
  } finally {
    await app.close();
  }
});
