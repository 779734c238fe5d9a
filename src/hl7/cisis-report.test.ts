import assert from 'node:assert/strict';
import { test } from 'node:test';
import { imagingReportCda, omiO23, oruR01 } from '../simulators/ris/reports.js';
import { ProfileError, readExamUpdate, readReportMessage } from './cisis-report.js';
import { parseMessage } from './message.js';

const spec = { ins: '279035121518989', ipp: 'IPP101', family: 'PAT-TROIS', given: 'DOMINIQUE', birthDate: '19790328', sex: 'F' as const, studyUid: '1.2.3.4', accessionNumber: 'ACC1' };
const cda = imagingReportCda(spec);

test('reads an ANS ORU^R01: identifiers with their OIDs, the embedded CDA, accession, physician and DMP flags', () => {
  const m = readReportMessage(parseMessage(oruR01(spec, cda, { flags: { MASQUE_PS: 'Y', DESTDMP: 'Y' } })));
  assert.equal(m.kind, 'publish');
  assert.deepEqual(m.patientIds.map((p) => [p.id, p.oid, p.type]), [['279035121518989', '1.2.250.1.213.1.4.10', 'INS'], ['IPP101', '1.2.250.1.213.4.5.2.4', 'PI']]);
  assert.equal(m.cda!.toString('utf8'), cda);
  assert.equal(m.accessionNumber, 'ACC1');
  assert.equal(m.physician!.id, '801234567890');
  assert.equal(m.flags.hiddenFromProfessionals, true);
  assert.equal(m.flags.invisibleToPatient, false);
  assert.equal(m.flags.toDmp, true);
  assert.equal(readReportMessage(parseMessage(oruR01(spec, cda, { flags: { DESTDMP: 'N' } }))).flags.toDmp, false);
});

test('ORC-1 = CA is a withdrawal; other message types and missing parts are refused with a location', () => {
  assert.equal(readReportMessage(parseMessage(oruR01(spec, cda, { orderControl: 'CA' }))).kind, 'withdraw');
  const noEd = oruR01(spec, cda).split('\r').filter((l) => !l.startsWith('OBX|1|')).join('\r');
  assert.throws(() => readReportMessage(parseMessage(noEd)), (e: unknown) => e instanceof ProfileError && e.location === 'OBX-5');
  const notBase64 = oruR01(spec, cda).replace('^Base64^', '^Hex^');
  assert.throws(() => readReportMessage(parseMessage(notBase64)), /expected Base64/);
  assert.throws(() => readReportMessage(parseMessage('MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|||1')), (e: unknown) => e instanceof ProfileError && e.code === '200');
  assert.throws(() => readReportMessage(parseMessage('MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5\rOBR|1')), /PID segment missing/);
});

test('PID-32 gives the identity reliability; OBX-11 = D alone is a de-publication', () => {
  const msg = parseMessage(oruR01(spec, cda));
  assert.equal(msg.segment('PID')!.get(32), 'VALI', 'PID-32 sits where the ANS messages put it');
  assert.deepEqual(readReportMessage(msg).identityReliability, ['VALI']);
  assert.deepEqual(readReportMessage(parseMessage(oruR01(spec, cda, { identityReliability: 'PROV' }))).identityReliability, ['PROV']);
  assert.deepEqual(readReportMessage(parseMessage(oruR01(spec, cda, { identityReliability: '' }))).identityReliability, []);
  const deleted = readReportMessage(parseMessage(oruR01(spec, cda, { resultStatus: 'D' })));
  assert.equal(deleted.kind, 'withdraw');
  assert.equal(readReportMessage(parseMessage(oruR01(spec, cda, { resultStatus: 'C' }))).kind, 'publish');
});

test('reads OMI^O23: accession number and study from IPC', () => {
  const u = readExamUpdate(parseMessage(omiO23(spec)));
  assert.equal(u.accessionNumber, 'ACC1');
  assert.equal(u.studyUid, '1.2.3.4');
});
