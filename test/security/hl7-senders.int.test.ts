/**
 * Intrusion-test finding "HL7 over MLLP accepts anyone", replayed as the attacks: a forged report, a forged
 * withdrawal and a forged merge, from an undeclared application, an undeclared address, or a declared sender
 * outside its message families; then MLLP over mutual TLS. Each must be refused (AR), audited with the sender's
 * address, and change nothing.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { makeTestPki, type TestPki } from '../harness/certs.js';
import { haveCommand } from '../harness/peers.js';
import { startTestNode } from '../harness/node.js';
import { sendMllp } from '../../src/hl7/mllp.js';
import { parseMessage } from '../../src/hl7/message.js';
import { imagingReportCda, oruR01 } from '../../src/simulators/ris/reports.js';

const spec = { ins: '279035121518989', ipp: 'IPP101', family: 'PAT-TROIS', given: 'DOMINIQUE', birthDate: '19790328', sex: 'F' as const, studyUid: '1.2.3.4.5', accessionNumber: 'ACN1', setId: 'S-1', documentId: '1.2.3.4.5.6' };
const report = oruR01(spec, imagingReportCda(spec));
const as = (msg: string, application: string) => msg.replace('MSH|^~\\&|RIS_SIM|', `MSH|^~\\&|${application}|`);
const merge = `MSH|^~\\&|RIS_SIM|CABINET|OPENDRIM|CABINET|20261203080000||ADT^A40^ADT_A39|M1|P|2.5\rEVN|A40|20261203080000\rPID|||ATTACKER-1^^^HOPITAL&1.2.250.1.213.4.5.2.4&ISO^PI\rMRG|IPP101^^^HOPITAL&1.2.250.1.213.4.5.2.4&ISO^PI\r`;

/** Sends one MLLP message from a chosen local address (another loopback address plays another host). */
function sendFrom(localAddress: string, port: number, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress }, () => s.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(message.replace(/\n/g, '\r')), Buffer.from([0x1c, 0x0d])])));
    let data = '';
    s.on('data', (d) => {
      data += d.toString('utf8');
      if (data.includes('\x1c')) {
        s.destroy();
        resolve(data.replace(/[\x0b\x1c]/g, ''));
      }
    });
    s.on('error', reject);
  });
}

describe('HL7 senders', { skip: haveCommand('openssl') ? false : 'openssl not installed' }, () => {
  let node: Awaited<ReturnType<typeof startTestNode>>;
  const code = (ack: string) => parseMessage(ack).segment('MSA')!.get(1);
  const queued = async () => (await node.publisher!.queue.list({})).length;

  before(async () => {
    node = await startTestNode({
      peers: [{ aeTitle: 'PACS', host: '127.0.0.1', port: 104 }],
      'hl7.senders': [{ name: 'RIS', from: ['127.0.0.1'], application: 'RIS_SIM', messages: ['reports', 'orders'] }],
      source: { pacs: 'PACS', dmp: { registryUrl: 'http://127.0.0.1:9/registry', repositoryUrl: 'http://127.0.0.1:9/repository' }, organisation: { finess: '750803447', name: 'Centre' } },
      incoming: { pacs: 'PACS', issuer: 'HOPITAL' },
    });
  });
  after(async () => node?.cleanup());

  test('a forged report and a forged withdrawal from an undeclared application are refused (AR), audited, not queued', async () => {
    for (const msg of [as(report, 'EVIL'), as(oruR01(spec, imagingReportCda(spec), { orderControl: 'CA' }), 'EVIL')]) {
      const ack = await sendMllp('127.0.0.1', node.hl7Port!, msg);
      assert.equal(code(ack), 'AR');
      assert.match(parseMessage(ack).segment('ERR')!.get(8), /MSH-3\/MSH-4/);
    }
    assert.equal(await queued(), 0);
    await node.audit.flush();
    const refused = await node.audit.search({ action: 'hl7.refused' });
    assert.equal(refused.length, 2);
    assert.ok(refused.every((r) => r.actorAddress === '127.0.0.1' && r.actorId.startsWith('EVIL@')));
  });

  test('the declared application from an undeclared address is refused', async () => {
    const ack = await sendFrom('127.0.0.2', node.hl7Port!, report);
    assert.equal(code(ack), 'AR');
    assert.match(ack, /no HL7 sender is declared for address 127\.0\.0\.2/);
    assert.equal(await queued(), 0);
  });

  test('a declared sender outside its families (the RIS sending a merge) is refused; inside them it is heard', async () => {
    const ack = await sendMllp('127.0.0.1', node.hl7Port!, merge);
    assert.equal(code(ack), 'AR');
    assert.match(ack, /may not send adt/);
    assert.equal(code(await sendMllp('127.0.0.1', node.hl7Port!, report)), 'AA');
    assert.equal(await queued(), 1, 'the declared RIS\'s report is queued');
  });

  describe('MLLP over mutual TLS', () => {
    let pki: TestPki;
    let tlsNode: Awaited<ReturnType<typeof startTestNode>>;
    before(async () => {
      pki = makeTestPki();
      tlsNode = await startTestNode({ tls: { cert: pki.serverCert, key: pki.serverKey, ca: pki.ca }, 'hl7.tls': { mutual: true }, 'hl7.senders': [{ name: 'ADT', from: ['127.0.0.1'], messages: ['adt'] }], incoming: { pacs: 'PACS', issuer: 'HOPITAL' }, peers: [{ aeTitle: 'PACS', host: '127.0.0.1', port: 104 }] });
    });
    after(async () => tlsNode?.cleanup());

    test('a sender with a certificate of the trusted authority is heard; without one, or in clear, it is not', async () => {
      const ok = await sendMllp('127.0.0.1', tlsNode.hl7Port!, merge, { tls: { ca: readFileSync(pki.ca), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey), servername: 'localhost' } });
      assert.notEqual(code(ok), 'AR');
      await assert.rejects(sendMllp('127.0.0.1', tlsNode.hl7Port!, merge, { timeoutMs: 3000, tls: { ca: readFileSync(pki.ca), servername: 'localhost' } }));
      await assert.rejects(sendMllp('127.0.0.1', tlsNode.hl7Port!, merge, { timeoutMs: 3000 }));
    });
  });
});
