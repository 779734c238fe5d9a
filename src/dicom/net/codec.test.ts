import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommandField, decodeCommand, encodeCommand, NO_DATASET } from './command.js';
import { PduReader, PduType, decodePdu, encodeAssociateAc, encodeAssociateRq, encodePData, ProtocolError } from './pdu.js';

test('command sets round-trip, with odd-length values padded', () => {
  const cmd = { commandField: CommandField.CMoveRq, affectedSopClassUid: '1.2.840.10008.5.1.4.1.2.2.2', messageId: 7, priority: 0, commandDataSetType: 0x0000, moveDestination: 'DEST' };
  const bytes = encodeCommand(cmd);
  assert.equal(bytes.length % 2, 0);
  assert.deepEqual(decodeCommand(bytes), cmd);
  assert.equal(decodeCommand(encodeCommand({ commandField: CommandField.CEchoRsp, status: 0, commandDataSetType: NO_DATASET })).status, 0);
  assert.throws(() => decodeCommand(Buffer.from([0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0])), /Command Field/);
});

test('A-ASSOCIATE-RQ and -AC round-trip, including role selection', () => {
  const rq = {
    calledAe: 'OPENDRIM',
    callingAe: 'GETSCU',
    applicationContext: '1.2.840.10008.3.1.1.1',
    contexts: [{ id: 1, abstractSyntax: '1.2.840.10008.5.1.4.1.2.2.3', transferSyntaxes: ['1.2.840.10008.1.2.1', '1.2.840.10008.1.2'] }],
    user: { maxPduLength: 16384, implementationClassUid: '1.2.3', implementationVersion: 'X', roles: [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', scu: false, scp: true }] },
  };
  const encoded = encodeAssociateRq(rq);
  const reader = new PduReader({ maxPData: 1 << 20, maxOther: 1 << 16 });
  const [p] = reader.push(encoded);
  const decoded = decodePdu(p!.type, p!.body);
  assert.equal(decoded.type, PduType.AssociateRq);
  assert.deepEqual((decoded as any).rq, rq);
  const ac = { calledAe: 'OPENDRIM', callingAe: 'GETSCU', contexts: [{ id: 1, result: 0 as const, transferSyntax: '1.2.840.10008.1.2.1' }], user: { maxPduLength: 65536, roles: [] } };
  const [q] = reader.push(encodeAssociateAc(ac));
  assert.deepEqual((decodePdu(q!.type, q!.body) as any).ac.contexts, ac.contexts);
});

test('the reader reassembles PDUs split at any byte and refuses oversized ones from the header alone', () => {
  const a = encodePData(1, false, true, Buffer.alloc(5000, 3));
  const b = encodePData(3, true, true, Buffer.from('abcd'));
  const wire = Buffer.concat([a, b]);
  for (const size of [1, 5, 6, 7, 4096, wire.length]) {
    const reader = new PduReader({ maxPData: 10_000, maxOther: 1000 });
    const got: Array<{ type: number; body: Buffer }> = [];
    for (let i = 0; i < wire.length; i += size) got.push(...reader.push(wire.subarray(i, i + size)));
    assert.equal(got.length, 2);
    const pd = decodePdu(got[1]!.type, got[1]!.body) as any;
    assert.deepEqual(pd.pdvs[0], { contextId: 3, command: true, last: true, data: Buffer.from('abcd') });
  }
  const reader = new PduReader({ maxPData: 1000, maxOther: 1000 });
  assert.throws(() => reader.push(Buffer.from([4, 0, 0x7f, 0xff, 0xff, 0xff])), ProtocolError);
  assert.throws(() => new PduReader({ maxPData: 1000, maxOther: 1000 }).push(Buffer.from([0x47, 0, 0, 0, 0, 1])), /unknown PDU type/);
});

test('data sets encode and decode in both little-endian syntaxes', async () => {
  const { encodeDataset, decodeDataset } = await import('./dataset.js');
  const json = {
    '00080052': { vr: 'CS', Value: ['STUDY'] },
    '00100010': { vr: 'PN', Value: [{ Alphabetic: 'DUPONT^HÉLÈNE' }] },
    '00080005': { vr: 'CS', Value: ['ISO_IR 192'] },
    '00201208': { vr: 'IS', Value: [12] },
    '0020000D': { vr: 'UI' },
  };
  for (const ts of ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']) {
    const back = decodeDataset(encodeDataset(json, ts), ts);
    assert.deepEqual(back['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'DUPONT^HÉLÈNE' }] });
    assert.deepEqual(back['00201208']!.Value, [12]);
    assert.ok('0020000D' in back, 'empty attributes survive as return keys');
  }
});

test('regression (found by fuzzing): a truncated role selection item is a protocol error, not a RangeError', () => {
  const bad = Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0, 0]), Buffer.alloc(68), Buffer.from([0x50, 0, 0, 5, 0x54, 0, 0, 1, 9])]);
  bad.writeUInt32BE(bad.length - 6, 2);
  const reader = new PduReader({ maxPData: 1000, maxOther: 1000 });
  const [p] = reader.push(bad);
  assert.throws(() => decodePdu(p!.type, p!.body), ProtocolError);
});
