import { escape, hl7Now } from '../../hl7/message.js';
import { pid, type PatientSpec } from './reports.js';

/** SIU messages as a RIS sends them when it books, moves or cancels an appointment (see src/hl7/scheduling.ts). */
export interface AppointmentSpec extends PatientSpec {
  appointmentId: string;
  /** Start, as a Date. */
  start: Date;
  modality: string;
  procedure: { code: string; text: string };
  radiologist?: { rpps: string; family: string; given: string };
}

const dtm = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + '+0000';

export function siu(trigger: 'S12' | 'S13' | 'S14' | 'S15', a: AppointmentSpec, controlId = `SIU${Date.now()}${Math.floor(Math.random() * 1000)}`): string {
  const status = trigger === 'S15' ? 'Cancelled' : 'Booked';
  return [
    `MSH|^~\\&|RIS_SIM|CABINET|OPENDRIM|CABINET|${hl7Now()}||SIU^${trigger}^SIU_S12|${controlId}|P|2.5|||||FRA|UNICODE UTF-8`,
    `SCH|${a.appointmentId}^RIS_SIM|${a.appointmentId}^RIS_SIM|||||||15|min^^ISO+|^^^${dtm(a.start)}|||||||||||||||${status}`,
    pid(a),
    `RGS|1|A`,
    `AIS|1|A|${a.procedure.code}^${escape(a.procedure.text)}^CCAM|${dtm(a.start)}|||15|min`,
    `AIG|1|A|${a.modality}1^${a.modality} salle 1|${a.modality}`,
    ...(a.radiologist ? [`AIP|1|A|${a.radiologist.rpps}^${escape(a.radiologist.family)}^${escape(a.radiologist.given)}^^^^^^RPPS|RAD`] : []),
  ].join('\r') + '\r';
}

/** An ORM^O01 imaging order carrying its scheduled time (OBR-27.4), as RIS without SIU send them. */
export function ormO01(a: AppointmentSpec & { orderControl?: 'NW' | 'XO' | 'CA' }, controlId = `ORM${Date.now()}${Math.floor(Math.random() * 1000)}`): string {
  const obr = ['OBR', '1', `${a.appointmentId}^RIS_SIM`, '', `${a.procedure.code}^${escape(a.procedure.text)}^CCAM`, ...Array(13).fill(''), `ACC-${a.appointmentId}`, ...Array(5).fill(''), a.modality, '', '', `^^^${dtm(a.start)}`];
  return [
    `MSH|^~\\&|RIS_SIM|CABINET|OPENDRIM|CABINET|${hl7Now()}||ORM^O01^ORM_O01|${controlId}|P|2.5|||||FRA|UNICODE UTF-8`,
    pid(a),
    `ORC|${a.orderControl ?? 'NW'}|${a.appointmentId}^RIS_SIM`,
    obr.join('|'),
  ].join('\r') + '\r';
}
