import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMessage } from '../hl7/message.js';
import { routingFieldsOf } from './triggers.js';

test('HL7 routing facts: ordering physician by id and name, facilities, study or accession', () => {
  const msg = parseMessage(
    [
      'MSH|^~\\&|RIS|CHU-A|OPENDRIM|HOPITAL-B|20261203110000||OMI^O23^OMI_O23|C1|P|2.5',
      'PID|||A-1||X^Y',
      'ORC|NW|PL-1||||||||||810001234567^MARTIN^PAUL|||||ENT-1^Urgences||||CHU A SITE NORD',
      'OBR|1|PL-1||CT^Scanner||||||||||||810001234567^MARTIN^PAUL||ACC-9',
      'IPC|ACC-9||1.2.3.4.5',
    ].join('\r'),
  );
  assert.deepEqual(routingFieldsOf(msg), { studyUid: '1.2.3.4.5', accessionNumber: 'ACC-9', orderingPhysician: ['810001234567', 'MARTIN^PAUL'], destinationFacility: ['HOPITAL-B', 'CHU A SITE NORD', 'ENT-1', 'Urgences'] });
  const orm = parseMessage(['MSH|^~\\&|RIS|A|OPENDRIM|B|20261203||ORM^O01|C2|P|2.5', 'ORC|NW', 'OBR|1|||||||||||||||||ACC-2'].join('\r'));
  assert.deepEqual(routingFieldsOf(orm), { studyUid: undefined, accessionNumber: 'ACC-2', orderingPhysician: [], destinationFacility: ['B'] });
});
