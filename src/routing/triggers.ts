import type { Logger } from '../common/log.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { Hl7Message } from '../hl7/message.js';
import type { Hl7Reply } from '../hl7/mllp.js';
import type { PacsGateway } from '../source/pacs.js';
import type { Router } from './router.js';

const TRIGGERS = /^(ORU\^R01|ORM\^O01|OMI\^O23|MDM\^T0[24])$/;

/**
 * What an order or report says that routing rules may test: the ordering physician (ORC-12, OBR-16, by
 * identifier and by FAMILY^GIVEN) and the destination facility (MSH-6 receiving facility, ORC-21 ordering
 * facility, ORC-17 entering organisation); and which exam it is about (IPC-3 or ZDS-1 study UID, else the
 * accession number of IPC-1 or OBR-18).
 */
export function routingFieldsOf(msg: Hl7Message): { studyUid?: string; accessionNumber?: string; orderingPhysician: string[]; destinationFacility: string[] } {
  const orc = msg.segment('ORC');
  const obr = msg.segment('OBR');
  const physicians: string[] = [];
  for (const [seg, field] of [[orc, 12], [obr, 16]] as const) {
    if (!seg?.raw(field)) continue;
    const id = seg.get(field, 1);
    const name = [seg.get(field, 2), seg.get(field, 3)].filter(Boolean).join('^');
    if (id) physicians.push(id);
    if (name) physicians.push(name);
  }
  const facilities = [msg.msh.get(6, 1), orc?.get(21, 1), orc?.get(17, 1), orc?.get(17, 2)].filter((v): v is string => Boolean(v));
  const ipc = msg.segment('IPC');
  const studyUid = ipc?.get(3, 1) || msg.segment('ZDS')?.get(1, 1) || undefined;
  const accessionNumber = ipc?.get(1, 1) || obr?.get(18) || undefined;
  return { studyUid, accessionNumber, orderingPhysician: [...new Set(physicians)], destinationFacility: [...new Set(facilities)] };
}

/**
 * Routing triggered by an order or a report (rules with `trigger: hl7`): the exam is located in the PACS and
 * queued for the destinations whose rules match. Takes no message when no rule is HL7-triggered; never turns
 * a message away for routing's sake (a missing exam is reported in the ACK as a warning-level AE).
 */
export function routingHl7Handler(router: Router, pacs: PacsGateway | undefined, audit: AuditTrail, log: Logger, hasHl7Rules: boolean) {
  return async (msg: Hl7Message): Promise<Hl7Reply | undefined> => {
    if (!hasHl7Rules || !TRIGGERS.test(msg.type)) return undefined;
    const f = routingFieldsOf(msg);
    let studyUid = f.studyUid;
    if (!studyUid && f.accessionNumber && pacs) studyUid = await pacs.locate({ accessionNumber: f.accessionNumber }).catch(() => undefined);
    if (!studyUid) return { code: 'AE', errors: [{ code: '204', text: `routing: the exam ${f.accessionNumber ?? ''} is not in the PACS (no study UID, accession not found)`, location: 'OBR-18' }] };
    const routes = await router.routeForMessage(studyUid, { orderingPhysician: f.orderingPhysician, destinationFacility: f.destinationFacility });
    await audit.record({ actorType: 'system', actorId: `${msg.msh.get(3, 1) || 'HL7'}`, action: 'routing.trigger', studyUid, outcome: 'success', detail: { message: msg.type, controlId: msg.controlId, routes } });
    if (routes.length) log.info({ study: studyUid, routes, message: msg.type }, 'exam routed on an HL7 trigger');
    return { code: 'AA' };
  };
}
