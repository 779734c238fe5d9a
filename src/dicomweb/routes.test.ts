import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startTestNode } from '../../test/harness/node.js';
import { generateStudy, type GeneratedStudy } from '../../test/harness/gen-study.js';
import { DicomwebClient } from './client.js';
import { testDatabases } from '../../test/harness/databases.js';
import { multipartStream, newBoundary, parseMediaType, parseMultipart } from './multipart.js';
import { Writable, Readable } from 'node:stream';

async function parts(res: Response): Promise<Array<{ headers: Record<string, string>; body: Buffer }>> {
  const ct = parseMediaType(res.headers.get('content-type') ?? '');
  const out: Array<{ headers: Record<string, string>; body: Buffer }> = [];
  await parseMultipart(Readable.fromWeb(res.body as any) as AsyncIterable<Buffer>, ct.params.boundary!, (p) => {
    const chunks: Buffer[] = [];
    const writable = new Writable({ write(c, _e, cb) { chunks.push(c); cb(); } });
    return { writable, done: async () => void out.push({ headers: p.headers, body: Buffer.concat(chunks) }) };
  });
  return out;
}

async function stowBody(bodies: Buffer[]): Promise<{ body: Buffer; type: string }> {
  const boundary = newBoundary();
  const chunks: Buffer[] = [];
  for await (const c of multipartStream(bodies.map((b) => ({ contentType: 'application/dicom', body: b })), boundary)) chunks.push(c as Buffer);
  return { body: Buffer.concat(chunks), type: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

const databases = await testDatabases();

for (const database of databases) describe(`DICOMweb (QIDO-RS, WADO-RS, STOW-RS) on ${database.name}`, () => {
  let node: Awaited<ReturnType<typeof startTestNode>>;
  let base: string;
  let ct: GeneratedStudy;
  let mr: GeneratedStudy;
  const get = (p: string, accept?: string) => fetch(base + p, { headers: accept ? { accept } : {} });

  before(async () => {
    node = await startTestNode({ dicomweb: { maxQidoResults: 50, maxStowBytes: 64 * 1024 * 1024 } }, database.url);
    base = `http://127.0.0.1:${node.httpPort}/dicom-web`;
    const dir = mkdtempSync(path.join(tmpdir(), 'dw-'));
    ct = generateStudy({ out: path.join(dir, 'ct'), modality: 'CT', series: 2, slices: 4, rows: 64, patientId: 'W1', patientName: 'WEB^ONE', studyDate: '20230505' });
    mr = generateStudy({ out: path.join(dir, 'mr'), modality: 'MR', series: 1, slices: 3, rows: 32, patientId: 'W2', patientName: 'WEB^TWO', studyDate: '20250101' });
    const r = await new DicomwebClient(base).store([...ct.files, ...mr.files], { batchSize: 4 });
    assert.deepEqual({ stored: r.stored, failed: r.failed }, { stored: 11, failed: 0 });
  });
  after(async () => {
    await node?.cleanup();
    await database.drop();
  });

  test('QIDO-RS: matching, includefield, limit/offset, scoped searches', async () => {
    const c = new DicomwebClient(base);
    assert.equal((await c.search('/studies')).length, 2);
    const byDate = await c.search('/studies', { StudyDate: '20240101-' });
    assert.equal(byDate.length, 1);
    assert.equal(byDate[0]!['0020000D']!.Value![0], mr.studyUid);
    assert.equal((await c.search('/studies', { PatientName: 'web^*' })).length, 2);
    assert.equal((await c.search('/studies', { '00100020': 'W1' })).length, 1);
    const withField = await c.search('/studies', { PatientID: 'W1', includefield: 'InstitutionName,00101010' });
    assert.ok('00080090' in withField[0]!, 'default study attributes');
    const all = await c.search(`/studies/${ct.studyUid}/instances`, { includefield: 'all' });
    assert.equal(all.length, 8);
    assert.ok(all[0]!['00280010'], 'instance attributes with includefield=all');
    assert.equal((await c.search(`/studies/${ct.studyUid}/series`)).length, 2);
    assert.equal((await c.search('/series', { Modality: 'MR' })).length, 1);
    const page = await c.search(`/studies/${ct.studyUid}/series/${ct.seriesUids[0]}/instances`, { limit: 3, offset: 2 });
    assert.equal(page.length, 2);
    assert.match(String(page[0]!['00081190']!.Value![0]), new RegExp(`^${base}/studies/${ct.studyUid}/series/`));
    const one = await get('/instances?limit=1');
    assert.match(one.headers.get('warning') ?? '', /^299/);
  });

  test('QIDO-RS: bad parameters are 400 with a reason, not 500', async () => {
    for (const q of ['?NoSuchAttribute=1', '?StudyDate=yesterday', '?limit=-1', '?includefield=Nope', '?SOPInstanceUID=1.2']) {
      const r = await get(`/studies${q}`);
      assert.equal(r.status, 400, q);
      assert.ok((await r.json()).error, q);
    }
  });

  test('WADO-RS: study, series and instance retrieve as multipart/related application/dicom', async () => {
    const study = await get(`/studies/${ct.studyUid}`, 'multipart/related; type="application/dicom"');
    assert.equal(study.status, 200);
    const sp = await parts(study);
    assert.equal(sp.length, 8);
    assert.equal(sp[0]!.body.toString('ascii', 128, 132), 'DICM');
    assert.match(sp[0]!.headers['content-type']!, /^application\/dicom; transfer-syntax=1\.2\.840\.10008\.1\.2\.1$/);
    assert.equal((await parts(await get(`/studies/${ct.studyUid}/series/${ct.seriesUids[1]}`))).length, 4);
    const inst = await parts(await get(`/studies/${ct.studyUid}/series/${ct.seriesUids[0]}/instances/${ct.sopUids[0]}`, 'multipart/related; type="application/dicom"; transfer-syntax=*'));
    assert.deepEqual(inst[0]!.body.subarray(200), readFileSync(ct.files[0]!).subarray(readFileSync(ct.files[0]!).length - (inst[0]!.body.length - 200)));
    // Asked for Implicit VR Little Endian: converted from the stored Explicit VR Little Endian.
    const implicit = await parts(await get(`/studies/${ct.studyUid}/series/${ct.seriesUids[0]}/instances/${ct.sopUids[0]}`, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2'));
    assert.match(implicit[0]!.headers['content-type']!, /transfer-syntax=1\.2\.840\.10008\.1\.2$/);
    const { parseHeader } = await import('../dicom/part10.js');
    const h = parseHeader(implicit[0]!.body, true);
    assert.equal(h.transferSyntaxUid, '1.2.840.10008.1.2');
    assert.equal(h.dataset['00080018']!.Value![0], ct.sopUids[0]);
    assert.equal((await get(`/studies/${ct.studyUid}`, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50')).status, 406);
    assert.equal((await get(`/studies/1.2.3.999`)).status, 404);
    assert.equal((await get(`/studies/${ct.studyUid}`, 'application/zip')).status, 406);
    assert.equal((await get(`/studies/not-a-uid`)).status, 400);
  });

  test('WADO-RS: metadata from the index, with absolute BulkDataURIs', async () => {
    const r = await get(`/studies/${ct.studyUid}/metadata`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /application\/dicom\+json/);
    const md = (await r.json()) as Array<Record<string, any>>;
    assert.equal(md.length, 8);
    const uri = md[0]!['7FE00010'].BulkDataURI as string;
    assert.ok(uri.startsWith(`${base}/studies/${ct.studyUid}/series/`), uri);
    const bulk = await parts(await fetch(uri));
    assert.equal(bulk[0]!.body.length, 64 * 64 * 2);
    const series = (await (await get(`/studies/${ct.studyUid}/series/${ct.seriesUids[0]}/metadata`)).json()) as unknown[];
    assert.equal(series.length, 4);
  });

  test('WADO-RS: frames, rendered and thumbnail', async () => {
    const p = `/studies/${mr.studyUid}/series/${mr.seriesUids[0]}/instances/${mr.sopUids[1]}`;
    const frames = await parts(await get(`${p}/frames/1`, 'multipart/related; type="application/octet-stream"; transfer-syntax=*'));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.body.length, 32 * 32 * 2);
    assert.equal((await get(`${p}/frames/2`)).status, 404);
    assert.equal((await get(`${p}/frames/0`)).status, 400);
    const jpeg = Buffer.from(await (await get(`${p}/rendered`, 'image/jpeg')).arrayBuffer());
    assert.deepEqual([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff]);
    const png = await get(`/studies/${ct.studyUid}/thumbnail?viewport=32,32`, 'image/png');
    assert.equal(png.headers.get('content-type'), 'image/png');
    const pngBytes = Buffer.from(await png.arrayBuffer());
    assert.equal(pngBytes.toString('ascii', 1, 4), 'PNG');
    assert.equal(pngBytes.readUInt32BE(16), 32, 'width scaled to the viewport');
    assert.equal((await get(`${p}/rendered?window=40,0`, 'image/jpeg')).status, 400);
  });

  test('STOW-RS: partial success is 202 with a FailedSOPSequence; all refused is 409', async () => {
    const fresh = generateStudy({ out: mkdtempSync(path.join(tmpdir(), 'stow-')), slices: 2, rows: 16 });
    const mixed = await stowBody([readFileSync(fresh.files[0]!), Buffer.from('this is not DICOM at all, and is long enough to not be a preamble'.repeat(4))]);
    const r = await fetch(`${base}/studies`, { method: 'POST', headers: { 'content-type': mixed.type }, body: new Uint8Array(mixed.body) });
    assert.equal(r.status, 202);
    const json = (await r.json()) as Record<string, any>;
    assert.equal(json['00081199'].Value.length, 1);
    assert.equal(json['00081198'].Value[0]['00081197'].Value[0], 0xc000);
    const junk = await stowBody([Buffer.from('junk')]);
    assert.equal((await fetch(`${base}/studies`, { method: 'POST', headers: { 'content-type': junk.type }, body: new Uint8Array(junk.body) })).status, 409);
    const wrongStudy = await stowBody([readFileSync(fresh.files[1]!)]);
    const ws = await fetch(`${base}/studies/${ct.studyUid}`, { method: 'POST', headers: { 'content-type': wrongStudy.type }, body: new Uint8Array(wrongStudy.body) });
    assert.equal(ws.status, 409);
    assert.equal(((await ws.json()) as any)['00081198'].Value[0]['00081197'].Value[0], 0xa900);
  });

  test('STOW-RS: wrong media type is 415, a body cut short is 400, and neither leaves files behind', async () => {
    assert.equal((await fetch(`${base}/studies`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 415);
    const fresh = generateStudy({ out: mkdtempSync(path.join(tmpdir(), 'stow-')), slices: 1, rows: 16 });
    const whole = await stowBody([readFileSync(fresh.files[0]!)]);
    const cut = await fetch(`${base}/studies`, { method: 'POST', headers: { 'content-type': whole.type }, body: new Uint8Array(whole.body.subarray(0, whole.body.length - 300)) });
    assert.equal(cut.status, 400);
    assert.equal(await node.index.hasInstance(fresh.sopUids[0]!), false);
    assert.deepEqual(await node.blobs.pendingTempFiles(), []);
  });

  test('anonymous access is refused from networks outside dicomweb.anonymousFrom', async () => {
    const closed = await startTestNode({ dicomweb: { maxQidoResults: 10, maxStowBytes: 1024, anonymousFrom: ['10.9.9.9/32'] } });
    try {
      const r = await fetch(`http://127.0.0.1:${closed.httpPort}/dicom-web/studies`);
      assert.equal(r.status, 401);
      assert.match(((await r.json()) as any).error, /anonymousFrom/);
      assert.equal((await fetch(`http://127.0.0.1:${closed.httpPort}/health`)).status, 200);
    } finally {
      await closed.cleanup();
    }
  });

  test('health, metrics and security headers', async () => {
    const h = await fetch(`http://127.0.0.1:${node.httpPort}/health`);
    assert.equal(h.status, 200);
    assert.equal(((await h.json()) as any).checks.database.ok, true);
    const q = await get('/studies');
    assert.equal(q.headers.get('cache-control'), 'no-store');
    assert.equal(q.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(q.headers.get('x-frame-options'), 'DENY');
    const m = await (await fetch(`http://127.0.0.1:${node.httpPort}/metrics`)).text();
    assert.match(m, /opendrim_instances_received_total\{protocol="stow-rs",outcome="stored"\} \d+/);
    assert.match(m, /opendrim_index_objects\{level="instances"\} \d+/);
    assert.match(m, /opendrim_http_request_seconds_bucket/);
  });
});
