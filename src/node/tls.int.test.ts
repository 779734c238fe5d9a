/** HTTPS and DICOM TLS with mutual authentication: our SCU, DCMTK's echoscu, and refusals. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { makeTestPki, type TestPki } from '../../test/harness/certs.js';
import { dcmtk, freePort, haveCommand } from '../../test/harness/peers.js';
import { startTestNode } from '../../test/harness/node.js';
import { echo } from '../dicom/scu.js';

function httpsGet(port: number, pki: TestPki, client?: { cert: string; key: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/dicom-web/studies', ca: readFileSync(pki.ca), ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}) }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
  });
}

describe('TLS', { skip: haveCommand('openssl') ? false : 'openssl not installed' }, () => {
  let pki: TestPki;
  let node: Awaited<ReturnType<typeof startTestNode>>;
  let tlsPort: number;

  before(async () => {
    pki = makeTestPki();
    tlsPort = await freePort();
    node = await startTestNode({
      dicomTlsPort: tlsPort,
      tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requireClientCert: true },
      dicom: { acceptUnknownCallingAe: true, checkCalledAe: true, maxPduLength: 262144, maxAssociations: 16, idleTimeoutMs: 30000, maxFindResults: 100 },
    });
  });
  after(async () => node?.cleanup());

  test('HTTPS with a client certificate from the trusted authority; refused without one or with a stranger', async () => {
    assert.equal(await httpsGet(node.httpPort, pki, { cert: pki.clientCert, key: pki.clientKey }), 200);
    await assert.rejects(httpsGet(node.httpPort, pki));
    await assert.rejects(httpsGet(node.httpPort, pki, { cert: pki.strangerCert, key: pki.strangerKey }));
  });

  test('DICOM TLS: mutual authentication accepted, no or untrusted certificate refused, plain port still plain', async () => {
    const tls = (cert: string, key: string) => ({ cert: readFileSync(cert), key: readFileSync(key), ca: readFileSync(pki.ca) });
    await echo({ aeTitle: 'OPENDRIM', host: '127.0.0.1', port: tlsPort, tls: tls(pki.clientCert, pki.clientKey) }, 'TLSSCU');
    await assert.rejects(echo({ aeTitle: 'OPENDRIM', host: '127.0.0.1', port: tlsPort, tls: tls(pki.strangerCert, pki.strangerKey) }, 'TLSSCU'));
    await assert.rejects(echo({ aeTitle: 'OPENDRIM', host: '127.0.0.1', port: tlsPort, tls: { ca: readFileSync(pki.ca) } }, 'TLSSCU'));
    await echo({ aeTitle: 'OPENDRIM', host: '127.0.0.1', port: node.dicomPort }, 'PLAINSCU');
  });

  test("DCMTK's echoscu over TLS", { skip: haveCommand('echoscu') ? false : 'DCMTK not installed' }, async () => {
    const ok = await dcmtk('echoscu', ['+tls', pki.clientKey, pki.clientCert, '+cf', pki.ca, '-aec', 'OPENDRIM', '127.0.0.1', String(tlsPort)]);
    assert.equal(ok.code, 0, ok.out);
    const anonymous = await dcmtk('echoscu', ['+tla', '+cf', pki.ca, '-aec', 'OPENDRIM', '127.0.0.1', String(tlsPort)]);
    assert.notEqual(anonymous.code, 0);
  });
});
