import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase, type Database } from '../store/db.js';
import { migrateToLatest } from '../store/migrations.js';
import { createLogger } from '../common/log.js';
import { AuditTrail } from '../audit/audit-trail.js';
import { parseMessage } from '../hl7/message.js';
import { LocalIdentities } from './local-identities.js';
import { adtHl7Handler } from './adt.js';
import { PatientDirectory } from './patient-directory.js';

const msh = (type: string) => `MSH|^~\\&|DPI|HOPITAL|OPENDRIM|HOPITAL|20261129120000||${type}|C${Math.random()}|P|2.5`;
const pid = (ipp: string, ins?: string) => `PID|||${ins ? `${ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS~` : ''}${ipp}^^^HOPITAL&1.2.250.1.213.4.5.2.4&ISO^PI||DUPONT^MARIE||19700101|F`;

describe('ADT feed → local identities', () => {
  let dir: string;
  let database: Database;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'adt-'));
    database = openDatabase({ dataDir: dir });
    await migrateToLatest(database.db, database.dialect);
  });
  after(async () => {
    await database.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('A04/A08 record the IPP of an INS; A40 moves it to the surviving record; others are not handled here', async () => {
    const ids = new LocalIdentities(database.db, 'HOPITAL');
    const audit = new AuditTrail(database.db, database.dialect, createLogger('silent'));
    const handle = adtHl7Handler(ids, audit, createLogger('silent'));
    const send = (...segments: string[]) => handle(parseMessage(segments.join('\r')));
    assert.deepEqual(await send(msh('ADT^A04^ADT_A01'), pid('IPP-1', '170017512345612')), { code: 'AA' });
    assert.equal((await ids.lookup('170017512345612'))?.localId, 'IPP-1');
    assert.deepEqual(await send(msh('ADT^A08^ADT_A01'), pid('IPP-2', '170017512345612')), { code: 'AA' });
    assert.equal((await ids.lookup('170017512345612'))?.localId, 'IPP-2', 'updated');
    assert.deepEqual(await send(msh('ADT^A40^ADT_A39'), pid('IPP-9'), 'MRG|IPP-2^^^HOPITAL&1.2.250.1.213.4.5.2.4&ISO^PI'), { code: 'AA' });
    assert.equal((await ids.lookup('170017512345612'))?.localId, 'IPP-9', 'merged into the survivor');
    assert.equal((await send(msh("ADT^A40^ADT_A39"), pid("IPP-9")))?.code, "AE", "no MRG");
    assert.equal(await send(msh('ADT^A03^ADT_A03'), pid('IPP-9')), undefined, 'discharge: not an identity event');
    await audit.flush();
    assert.equal((await audit.search({ action: 'identity.merge' })).length, 1);
  });

  test('A28 fills the local directory: birth name (L), used name (D), given names, birth date, sex, other identifiers', async () => {
    const ids = new LocalIdentities(database.db, 'HOPITAL');
    const directory = new PatientDirectory(database.db, 'HOPITAL');
    const handle = adtHl7Handler(ids, new AuditTrail(database.db, database.dialect, createLogger('silent')), createLogger('silent'), directory);
    const reply = await handle(parseMessage([msh('ADT^A28^ADT_A05'), 'PID|||IPP-50^^^HOPITAL&1.2.250.1.213.4.5.2.4&ISO^PI~A1234^^^CHU-A&1.2.250.1.999&ISO^PI||LÉVÊQUE^HÉLÈNE^MARIE ROSE^^^^L~MARTIN^HÉLÈNE^^^^^D||19610412|F'].join('\r')));
    assert.deepEqual(reply, { code: 'AA' });
    const p = await directory.get('IPP-50');
    assert.deepEqual(p?.demographics, { birthName: 'LÉVÊQUE', usedName: 'MARTIN', givenNames: ['HÉLÈNE', 'MARIE', 'ROSE'], birthDate: '19610412', sex: 'F' });
    assert.equal(await directory.byIdentifier({ id: 'A1234', issuer: '1.2.250.1.999' }), 'IPP-50');
  });
});
