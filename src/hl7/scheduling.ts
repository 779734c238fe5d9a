import type { Hl7Message } from './message.js';
import { patientIdentifiers, ProfileError, type HL7Identifier } from './cisis-report.js';

/**
 * Reads scheduling messages from the RIS (HL7 v2.5 SIU^S12 new, S13 rescheduled, S14 modified, S15 cancelled):
 * the appointment, the patient, the procedure and when it starts. Profile expected (documented in
 * docs/configuration.md): SCH-1 placer appointment ID (or SCH-2 filler), PID-3 with the INS and the local IPP,
 * AIS-3 procedure (code^text^system), AIS-4 start (else SCH-11.4), AIG-4 the modality (e.g. "CT"),
 * AIP-3 the radiologist (RPPS) when known.
 */
export interface AppointmentMessage {
  event: 'new' | 'rescheduled' | 'modified' | 'cancelled';
  messageType: string;
  controlId: string;
  appointmentId: string;
  patientIds: HL7Identifier[];
  patientName?: { family: string; given: string };
  birthDate?: string;
  sex?: string;
  /** ISO 8601 start of the appointment. */
  start?: string;
  procedure?: { code: string; text?: string; system?: string };
  modality?: string;
  practitioner?: { id: string; family?: string; given?: string };
}

const EVENTS: Record<string, AppointmentMessage['event']> = { S12: 'new', S13: 'rescheduled', S14: 'modified', S15: 'cancelled' };

/** HL7 DTM "YYYYMMDDHHMM[SS][+ZZZZ]" → ISO 8601; undefined when not a date-time. */
export function hl7DateTime(v: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$/.exec(v.trim());
  if (!m) return undefined;
  const [, y, mo, d, h = '00', mi = '00', s = '00', tz] = m;
  const iso = `${y}-${mo}-${d}T${h}:${mi}:${s}${tz ? `${tz.slice(0, 3)}:${tz.slice(3)}` : ''}`;
  const t = new Date(tz ? iso : `${iso}`);
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}

export function readAppointmentMessage(msg: Hl7Message): AppointmentMessage {
  const [kind, trigger] = msg.type.split('^');
  const event = kind === 'SIU' ? EVENTS[trigger ?? ''] : undefined;
  if (!event) throw new ProfileError(`message type ${msg.type} is not a handled scheduling message (SIU^S12/S13/S14/S15)`, 'MSH-9', '200');
  const sch = msg.segment('SCH');
  if (!sch) throw new ProfileError('SCH segment missing', 'SCH', '100');
  const appointmentId = sch.get(1, 1) || sch.get(2, 1);
  if (!appointmentId) throw new ProfileError('no appointment ID (SCH-1 placer or SCH-2 filler)', 'SCH-1', '101');
  const pid = msg.segment('PID');
  if (!pid) throw new ProfileError('PID segment missing', 'PID', '100');
  const ais = msg.segment('AIS');
  const aig = msg.segment('AIG');
  const aip = msg.segment('AIP');
  const startRaw = ais?.get(4, 1) || sch.get(11, 4);
  const start = startRaw ? hl7DateTime(startRaw) : undefined;
  if (event !== 'cancelled' && !start) throw new ProfileError(`no valid start date-time (AIS-4 or SCH-11.4): "${startRaw}"`, startRaw ? 'AIS-4' : 'AIS', '102');
  const code = ais?.get(3, 1) ?? '';
  return {
    event,
    messageType: msg.type,
    controlId: msg.controlId,
    appointmentId,
    patientIds: patientIdentifiers(pid),
    patientName: pid.get(5, 1) ? { family: pid.get(5, 1), given: pid.get(5, 2) } : undefined,
    birthDate: pid.get(7, 1) || undefined,
    sex: pid.get(8) || undefined,
    start,
    procedure: code ? { code, text: ais?.get(3, 2) || undefined, system: ais?.get(3, 3) || undefined } : undefined,
    modality: (aig?.get(4, 1) || '').toUpperCase() || undefined,
    practitioner: aip?.get(3, 1) ? { id: aip.get(3, 1), family: aip.get(3, 2) || undefined, given: aip.get(3, 3) || undefined } : undefined,
  };
}

/**
 * An imaging order that carries when it is scheduled (ORM^O01 or OMI^O23 with TQ1-7, OBR-27.4 or OBR-36): read as
 * an appointment, keyed by the placer order number. Undefined when the order carries no scheduled time (nothing to
 * prefetch for yet). ORC-1 CA/OC/DC cancels.
 */
export function readScheduledOrder(msg: Hl7Message): AppointmentMessage | undefined {
  if (msg.type !== 'ORM^O01' && msg.type !== 'OMI^O23') return undefined;
  const orc = msg.segment('ORC');
  const obr = msg.segment('OBR');
  const ipc = msg.segment('IPC');
  const control = (orc?.get(1) ?? '').toUpperCase();
  const cancelled = ['CA', 'OC', 'DC', 'CR'].includes(control);
  const raw = msg.segment('TQ1')?.get(7, 1) || obr?.get(27, 4) || obr?.get(36, 1) || '';
  const start = raw ? hl7DateTime(raw) : undefined;
  if (!start && !cancelled) return undefined;
  const orderId = orc?.get(2, 1) || obr?.get(2, 1) || ipc?.get(1, 1) || obr?.get(18) || '';
  if (!orderId) throw new ProfileError('the order has no placer order number (ORC-2/OBR-2) nor accession number', 'ORC-2', '101');
  const pid = msg.segment('PID');
  const code = obr?.get(4, 1) ?? '';
  return {
    event: cancelled ? 'cancelled' : control === 'XO' || control === 'SC' ? 'modified' : 'new',
    messageType: msg.type,
    controlId: msg.controlId,
    appointmentId: `ORD-${orderId}`,
    patientIds: patientIdentifiers(pid),
    patientName: pid?.get(5, 1) ? { family: pid.get(5, 1), given: pid.get(5, 2) } : undefined,
    birthDate: pid?.get(7, 1) || undefined,
    sex: pid?.get(8) || undefined,
    start,
    procedure: code ? { code, text: obr?.get(4, 2) || undefined, system: obr?.get(4, 3) || undefined } : undefined,
    modality: (ipc?.get(5, 1) || obr?.get(24) || '').toUpperCase() || undefined,
  };
}
