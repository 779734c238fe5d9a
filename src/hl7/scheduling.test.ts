import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMessage } from './message.js';
import { ProfileError } from './cisis-report.js';
import { hl7DateTime, readAppointmentMessage } from './scheduling.js';
import { siu } from '../simulators/ris/schedule.js';

const spec = { appointmentId: 'RDV-1', ins: '280067512345690', ipp: 'IPP-B-55', family: 'PAT-ECHANGE', given: 'CAMILLE', birthDate: '19800615', sex: 'F' as const, start: new Date('2026-12-01T08:30:00Z'), modality: 'CT', procedure: { code: 'ZBQK002', text: 'Scanographie du thorax' }, radiologist: { rpps: '899700218896', family: 'RADIO', given: 'Jeanne' } };

test('SIU^S12..S15: appointment, patient identifiers, start, procedure, modality and radiologist', () => {
  const a = readAppointmentMessage(parseMessage(siu('S12', spec)));
  assert.equal(a.event, 'new');
  assert.equal(a.appointmentId, 'RDV-1');
  assert.equal(a.start, '2026-12-01T08:30:00.000Z');
  assert.deepEqual(a.procedure, { code: 'ZBQK002', text: 'Scanographie du thorax', system: 'CCAM' });
  assert.equal(a.modality, 'CT');
  assert.deepEqual(a.practitioner, { id: '899700218896', family: 'RADIO', given: 'Jeanne' });
  assert.deepEqual(a.patientIds.map((i) => [i.id, i.type, i.oid]), [['280067512345690', 'INS', '1.2.250.1.213.1.4.10'], ['IPP-B-55', 'PI', '1.2.250.1.213.4.5.2.4']]);
  assert.equal(readAppointmentMessage(parseMessage(siu('S13', spec))).event, 'rescheduled');
  assert.equal(readAppointmentMessage(parseMessage(siu('S15', spec))).event, 'cancelled');
});

test('what cannot be scheduled is refused with the field at fault', () => {
  const noStart = siu('S12', spec).replace(/\|\^\^\^\d{14}\+0000\|/, '|^^^|').replace(/AIS\|1\|A\|([^|]*)\|\d{14}\+0000\|/, 'AIS|1|A|$1||');
  assert.throws(() => readAppointmentMessage(parseMessage(noStart)), (e: Error) => e instanceof ProfileError && e.location === 'AIS');
  const noId = siu('S12', spec).replace('SCH|RDV-1^RIS_SIM|RDV-1^RIS_SIM|', 'SCH|||');
  assert.throws(() => readAppointmentMessage(parseMessage(noId)), (e: Error) => e instanceof ProfileError && e.location === 'SCH-1');
  assert.throws(() => readAppointmentMessage(parseMessage(siu('S12', spec).replace('SIU^S12', 'SIU^S99'))), /not a handled scheduling message/);
  assert.equal(hl7DateTime('20261201093000+0100'), '2026-12-01T08:30:00.000Z');
  assert.equal(hl7DateTime('2026-12-01'), undefined);
});

test('orders with a scheduled time (ORM^O01, OMI^O23) read as appointments; without one they are not for prefetch', async () => {
  const { readScheduledOrder } = await import('./scheduling.js');
  const pid = 'PID|||280067512345690^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS~IPP-B-55^^^HOPITAL&1.2.250.1.213.4.5.2.4&ISO^PI||PAT^CAMILLE||19800615|F';
  const orm = ['MSH|^~\\&|RIS|CAB|OPENDRIM|CAB|20261129120000||ORM^O01|C1|P|2.5', pid, 'ORC|NW|CMD-42^RIS', 'OBR|1|CMD-42^RIS||ZBQK002^Scanographie du thorax^CCAM||||||||||||||ACC-9||||||CT|||^^^20261201083000+0100'].join('\r');
  const a = readScheduledOrder(parseMessage(orm))!;
  assert.equal(a.appointmentId, 'ORD-CMD-42');
  assert.equal(a.event, 'new');
  assert.equal(a.start, '2026-12-01T07:30:00.000Z');
  assert.equal(a.modality, 'CT');
  assert.equal(a.procedure?.code, 'ZBQK002');
  const omi = ['MSH|^~\\&|RIS|CAB|OPENDRIM|CAB|20261129120000||OMI^O23|C2|P|2.5', pid, 'ORC|CA|CMD-42^RIS', 'OBR|1|CMD-42^RIS||ZBQK002^Scanographie du thorax^CCAM', 'IPC|ACC-9||1.2.3|1|MR'].join('\r');
  assert.equal(readScheduledOrder(parseMessage(omi))?.event, 'cancelled');
  const unscheduled = orm.replace('^^^20261201083000+0100', '');
  assert.equal(readScheduledOrder(parseMessage(unscheduled)), undefined);
  assert.equal(readScheduledOrder(parseMessage(orm.replace('ORM^O01', 'ORU^R01'))), undefined);
});
