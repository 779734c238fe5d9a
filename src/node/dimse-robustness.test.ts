/**
 * What a DICOM node must survive: peers that vanish mid-transfer, send garbage, announce absurd PDU sizes,
 * or send a data set that does not decode. Each leaves no partial file, no index entry and a working node.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RawAssociation, associateRq, cStoreCommand, pdata, responseStatus } from '../../test/harness/raw-dicom.js';
import { startTestNode } from '../../test/harness/node.js';
import { echo } from '../dicom/scu.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';

describe('DIMSE robustness', () => {
  let node: Awaited<ReturnType<typeof startTestNode>>;
  const associate = async () => {
    const a = await RawAssociation.connect(node.dicomPort);
    a.send(associateRq('OPENDRIM', 'RAWSCU', [{ id: 1, abstract: CT, syntaxes: [EXPLICIT] }]));
    assert.ok(await a.waitFor((b) => b[0] === 0x02), 'association accepted');
    return a;
  };
  const stillServing = async () => echo({ aeTitle: 'OPENDRIM', host: '127.0.0.1', port: node.dicomPort }, 'RAWSCU');
  const tmpFiles = async () => (await node.blobs.pendingTempFiles()).length;

  before(async () => {
    node = await startTestNode({ dicom: { acceptUnknownCallingAe: true, checkCalledAe: true, maxPduLength: 65536, maxAssociations: 8, idleTimeoutMs: 3000, maxFindResults: 100 } });
  });
  after(async () => node?.cleanup());

  test('a peer that drops the association in the middle of a C-STORE leaves nothing behind', async () => {
    const a = await associate();
    a.send(pdata(1, true, true, cStoreCommand(CT, '1.2.3.4.5.6.7')));
    a.send(pdata(1, false, false, Buffer.alloc(30_000, 1)));
    await new Promise((r) => setTimeout(r, 100));
    a.destroy();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await tmpFiles(), 0);
    assert.equal(await node.index.hasInstance('1.2.3.4.5.6.7'), false);
    await stillServing();
  });

  test('a data set that does not decode in the negotiated transfer syntax is refused with 0xC000', async () => {
    const a = await associate();
    a.send(pdata(1, true, true, cStoreCommand(CT, '1.2.3.4.5.6.8')));
    // An element claiming a 4 GB length: not a valid Explicit VR Little Endian data set.
    a.send(pdata(1, false, true, Buffer.from([0x08, 0x00, 0x18, 0x00, 0x4f, 0x42, 0, 0, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3])));
    assert.ok(await a.waitFor((b) => responseStatus(b) !== undefined));
    assert.equal(responseStatus(a.data), 0xc000);
    a.destroy();
    assert.equal(await node.index.hasInstance('1.2.3.4.5.6.8'), false);
    assert.equal(await tmpFiles(), 0);
  });

  test('a P-DATA PDU larger than the negotiated maximum is aborted before it is buffered', async () => {
    const a = await associate();
    const header = Buffer.from([0x04, 0, 0x7f, 0xff, 0xff, 0xff]);
    a.send(Buffer.concat([header, Buffer.alloc(1000)]));
    assert.ok(await a.waitFor((b) => b.includes(Buffer.from([0x07, 0x00])), 3000) || a.closed);
    await a.waitFor(() => false, 300);
    assert.ok(a.closed, 'connection closed');
    await stillServing();
  });

  test('an unknown PDU type is aborted', async () => {
    const a = await RawAssociation.connect(node.dicomPort);
    a.send(Buffer.from([0x55, 0, 0, 0, 0, 4, 1, 2, 3, 4]));
    await a.waitFor(() => false, 500);
    assert.ok(a.closed);
    await stillServing();
  });

  test('an oversized A-ASSOCIATE-RQ is refused', async () => {
    const a = await RawAssociation.connect(node.dicomPort);
    const h = Buffer.from([0x01, 0, 0x10, 0, 0, 0]);
    a.send(Buffer.concat([h, Buffer.alloc(2000)]));
    await a.waitFor(() => false, 500);
    assert.ok(a.closed);
  });

  test('garbage instead of an association request does not take the node down', async () => {
    const a = await RawAssociation.connect(node.dicomPort);
    a.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await a.waitFor(() => false, 500);
    a.destroy();
    await stillServing();
  });

  test('an idle association is closed after the configured timeout', async () => {
    const a = await associate();
    assert.ok(await a.waitFor(() => a.closed, 6000), 'closed by the server');
  });

  test('associations beyond the configured maximum are rejected (transient), others continue', async () => {
    const held: RawAssociation[] = [];
    for (let i = 0; i < 8; i++) held.push(await associate());
    const extra = await RawAssociation.connect(node.dicomPort);
    extra.send(associateRq('OPENDRIM', 'RAWSCU', [{ id: 1, abstract: CT, syntaxes: [EXPLICIT] }]));
    assert.ok(await extra.waitFor((b) => b[0] === 0x03), 'A-ASSOCIATE-RJ');
    assert.equal(extra.data[7], 2, 'transient rejection');
    for (const h of held) h.destroy();
    await new Promise((r) => setTimeout(r, 200));
    await stillServing();
  });
});
