import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { XMLParser } from 'fast-xml-parser';
import { makeTestPki, type TestPki } from '../../test/harness/certs.js';
import { freePort, haveCommand } from '../../test/harness/peers.js';
import { startTestNode } from '../../test/harness/node.js';
import { echo } from '../dicom/scu.js';
import { toAuditMessage, syslogFrame } from './atna.js';

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' });

test('audit messages follow the DICOM audit schema and escape what they carry', () => {
  const xml = toAuditMessage(
    { id: 1, at: '2026-11-24T10:00:00.000Z', actorType: 'dicom-ae', actorId: 'CT<1>&', actorAddress: '10.0.0.5', action: 'dicom.store', patientId: 'P"1', studyUid: '1.2.3', outcome: 'success', detail: {}, prevHash: '', hash: '' },
    { aeTitle: 'OPENDRIM', host: 'drimbox.local' },
  );
  const m = parser.parse(xml).AuditMessage;
  assert.equal(m.EventIdentification.EventID['@csd-code'], '110104');
  assert.equal(m.EventIdentification['@EventActionCode'], 'C');
  assert.equal(m.ActiveParticipant[0]['@UserID'], 'CT<1>&');
  assert.deepEqual(m.ParticipantObjectIdentification.map((p: Record<string, string>) => p['@ParticipantObjectID']), ['P"1', '1.2.3']);
  const frame = syslogFrame(xml).toString('utf8');
  const [len, rest] = [Number(frame.slice(0, frame.indexOf(' '))), frame.slice(frame.indexOf(' ') + 1)];
  assert.equal(len, Buffer.byteLength(rest));
  assert.match(rest, /^<85>1 \S+ \S+ OpenDRIM \d+ IHE\+RFC-3881 - \uFEFF<\?xml/);
});

describe('ATNA export to a syslog collector over TLS', { skip: haveCommand('openssl') ? false : 'openssl not installed' }, () => {
  let pki: TestPki;
  let collector: tls.Server;
  let received = '';
  let node: Awaited<ReturnType<typeof startTestNode>>;

  before(async () => {
    pki = makeTestPki();
    collector = tls.createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.ca), requestCert: true, rejectUnauthorized: true }, (s) => s.on('data', (d) => (received += d.toString('utf8'))));
    const port = await freePort();
    await new Promise<void>((r) => collector.listen(port, '127.0.0.1', r));
    node = await startTestNode({ tls: { cert: pki.clientCert, key: pki.clientKey, ca: pki.ca, requireClientCert: false }, dicomTlsPort: await freePort(), audit: { syslog: { host: '127.0.0.1', port, tls: true } } });
  });
  after(async () => {
    await node?.cleanup();
    await new Promise((r) => collector.close(r));
  });

  test('a refused association reaches the collector as a Security Alert', async () => {
    await assert.rejects(echo({ aeTitle: 'OPENDRIM', host: '127.0.0.1', port: node.dicomPort }, 'ROGUE'));
    for (let i = 0; i < 100 && !received.includes('ROGUE'); i++) await new Promise((r) => setTimeout(r, 50));
    const frame = received.slice(received.indexOf(' ') + 1);
    const xml = frame.slice(frame.indexOf('<?xml'));
    const m = parser.parse(xml).AuditMessage;
    assert.equal(m.EventIdentification.EventID['@csd-code'], '110113');
    assert.equal(m.EventIdentification['@EventOutcomeIndicator'], '4');
    assert.equal(m.ActiveParticipant[0]['@UserID'], 'ROGUE');
    assert.equal(m.AuditSourceIdentification['@AuditSourceID'], 'OPENDRIM');
  });
});
