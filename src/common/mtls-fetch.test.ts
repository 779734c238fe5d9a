import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { readFileSync, rmSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { Readable } from 'node:stream';
import { makeTestPki, type TestPki } from '../../test/harness/certs.js';
import { mtlsFetch } from './mtls-fetch.js';

let pki: TestPki;
let server: https.Server;
let url: string;

before(async () => {
  pki = makeTestPki();
  server = https.createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.ca), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const cn = (req.socket as TLSSocket).getPeerCertificate().subject?.CN;
      res.writeHead(201, { 'content-type': 'application/json', 'x-seen': 'yes' });
      res.end(JSON.stringify({ method: req.method, cn, body: Buffer.concat(chunks).toString(), type: req.headers['content-type'] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `https://127.0.0.1:${(server.address() as { port: number }).port}/token`;
});
after(async () => {
  await new Promise((r) => server.close(r));
  rmSync(pki.dir, { recursive: true, force: true });
});

test('requests go out with the client certificate, bodies of every kind, and come back as a fetch Response', async () => {
  const f = mtlsFetch({ cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey), ca: readFileSync(pki.ca) });
  const form = await f(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'authorization_code', code: 'abc' }) });
  assert.equal(form.status, 201);
  assert.equal(form.headers.get('x-seen'), 'yes');
  assert.deepEqual(await form.json(), { method: 'POST', cn: 'client', body: 'grant_type=authorization_code&code=abc', type: 'application/x-www-form-urlencoded' });
  const streamed = await f(url, { method: 'PUT', body: Readable.toWeb(Readable.from([Buffer.from('part1-'), Buffer.from('part2')])) as unknown as ReadableStream });
  assert.equal(((await streamed.json()) as { body: string }).body, 'part1-part2');
  const get = await f(url);
  assert.equal(((await get.json()) as { method: string }).method, 'GET');
});

test('without a certificate the server refuses the handshake; http URLs are refused', async () => {
  const noCert = mtlsFetch({ cert: readFileSync(pki.strangerCert), key: readFileSync(pki.strangerKey), ca: readFileSync(pki.ca) });
  await assert.rejects(noCert(url));
  await assert.rejects(mtlsFetch({ cert: Buffer.alloc(0), key: Buffer.alloc(0) })('http://127.0.0.1/x'), /needs an https URL/);
});
