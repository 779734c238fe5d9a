import type { Logger } from '../common/log.js';
import { ProfileError } from '../hl7/cisis-report.js';
import type { Hl7Message } from '../hl7/message.js';
import type { Hl7Reply } from '../hl7/mllp.js';
import { readAppointmentMessage, readScheduledOrder, type AppointmentMessage } from '../hl7/scheduling.js';
import { INS_OIDS } from '../identity/ins.js';
import { AppointmentError, type Prefetcher } from './prefetcher.js';

/**
 * SIU^S12/S13/S14/S15 from the RIS, and orders carrying a scheduled time (ORM^O01, OMI^O23) → the prefetcher.
 * Returns undefined for other messages, and for orders not scheduled yet.
 */
export function prefetchHl7Handler(prefetcher: Prefetcher, log: Logger) {
  return async (msg: Hl7Message): Promise<Hl7Reply | undefined> => {
    const isSiu = /^SIU\^S1[2-5]$/.test(msg.type);
    if (!isSiu && msg.type !== 'ORM^O01' && msg.type !== 'OMI^O23') return undefined;
    try {
      let m: AppointmentMessage | undefined;
      if (isSiu) m = readAppointmentMessage(msg);
      else m = readScheduledOrder(msg);
      if (!m) return undefined;
      const ins = m.patientIds.find((i) => INS_OIDS.includes(i.oid));
      if (!ins) throw new ProfileError('PID-3 carries no INS (identifier with an INS OID): priors are searched in the DMP by INS', 'PID-3', '101');
      const ipp = m.patientIds.find((i) => i !== ins && (i.type === 'PI' || i.type === ''));
      await prefetcher.onAppointment({
        event: m.event,
        appointmentId: m.appointmentId,
        controlId: m.controlId,
        patient: { ins: ins.id, oid: ins.oid, ipp: ipp?.id, name: m.patientName ? `${m.patientName.family} ${m.patientName.given}`.trim() : undefined },
        start: m.start,
        modality: m.modality,
        procedure: m.procedure,
        practitioner: m.practitioner && /^\d{11}$/.test(m.practitioner.id) ? { id: `8${m.practitioner.id}`, familyName: m.practitioner.family, givenName: m.practitioner.given, profession: '10' } : undefined,
      });
      return { code: 'AA' };
    } catch (e) {
      if (e instanceof ProfileError) return { code: e.code === '200' ? 'AR' : 'AE', errors: [{ code: e.code, text: e.message, location: e.location }] };
      if (e instanceof AppointmentError) return { code: 'AE', errors: [{ code: '207', text: e.message }] };
      log.error({ err: e, controlId: msg.controlId }, 'scheduling message failed');
      throw e;
    }
  };
}
