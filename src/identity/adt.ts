import type { Logger } from '../common/log.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import { patientIdentifiers } from '../hl7/cisis-report.js';
import type { Hl7Message, Segment } from '../hl7/message.js';
import type { Hl7Reply } from '../hl7/mllp.js';
import { INS_OIDS } from './ins.js';
import type { LocalIdentities } from './local-identities.js';
import type { Demographics } from './demographics.js';
import type { PatientDirectory } from './patient-directory.js';

/**
 * The demographics of PID: PID-5 repetitions typed L (legal: the birth name in the French PAM profile) and D
 * (display: the used name), the given names in PID-5.2 and the further ones in PID-5.3; PID-7 birth date; PID-8 sex.
 */
export function pidDemographics(pid: Segment): Demographics | undefined {
  const names = pid.repetitions(5).map((rep) => ({ family: pid.part(rep, 1), given: pid.part(rep, 2), more: pid.part(rep, 3), type: pid.part(rep, 7) }));
  const birth = names.find((n) => n.type === 'L') ?? names[0];
  const used = names.find((n) => n.type === 'D' && n.family && n.family !== birth?.family);
  const birthDate = pid.get(7).slice(0, 8);
  if (!birth?.family || !/^\d{8}$/.test(birthDate)) return undefined;
  const givenNames = [birth.given, ...birth.more.split(/[\s,]+/)].map((g) => g.trim()).filter(Boolean);
  return { birthName: birth.family, usedName: used?.family, givenNames, birthDate, sex: pid.get(8) || undefined };
}

const RECORDING = /^ADT\^A(01|04|08|28|31)$/;

/**
 * Keeps the local identity table right from the hospital's ADT feed: admissions, registrations and updates
 * (A01/A04/A08/A28/A31) record which local IPP carries which INS; a merge (A40, MRG-1 the absorbed IPP) moves the
 * INS of the absorbed record to the surviving one. Returns undefined for other message types.
 */
export function adtHl7Handler(identities: LocalIdentities, audit: AuditTrail, log: Logger, directory?: PatientDirectory) {
  return async (msg: Hl7Message): Promise<Hl7Reply | undefined> => {
    if (!RECORDING.test(msg.type) && msg.type !== 'ADT^A40') return undefined;
    const ids = patientIdentifiers(msg.segment('PID'));
    const ins = ids.find((i) => INS_OIDS.includes(i.oid));
    const ipp = ids.find((i) => i !== ins && i.type === 'PI') ?? ids.find((i) => i !== ins);
    if (!ipp) return { code: 'AE', errors: [{ code: '101', text: 'PID-3 carries no local patient identifier (PI)', location: 'PID-3' }] };
    if (msg.type === 'ADT^A40') {
      const absorbed = msg.segment('MRG')?.get(1, 1);
      if (!absorbed) return { code: 'AE', errors: [{ code: '101', text: 'MRG-1 (the absorbed patient identifier) is missing', location: 'MRG-1' }] };
      const moved = await identities.merge(absorbed, ipp.id, 'hl7-adt-merge');
      await directory?.merge(absorbed, ipp.id, 'hl7-adt-merge');
      if (ins) await identities.record(ins.id, ins.oid, ipp.id, 'hl7-adt');
      await audit.record({ actorType: 'system', actorId: `${msg.msh.get(3, 1) || 'ADT'}`, action: 'identity.merge', patientId: ins?.id ?? ipp.id, outcome: 'success', detail: { absorbed, survivor: ipp.id, identitiesMoved: moved, controlId: msg.controlId } });
      log.info({ absorbed, survivor: ipp.id, moved }, 'patient merge applied to local identities');
      return { code: 'AA' };
    }
    // Without an INS there is no national identifier to map, but the demographics still describe a local patient.
    if (ins) await identities.record(ins.id, ins.oid, ipp.id, 'hl7-adt');
    if (directory) {
      const demographics = pidDemographics(msg.segment('PID')!);
      if (demographics) await directory.upsert({ localId: ipp.id, demographics, source: 'hl7-adt' });
      // Other identifiers the hospital already links to this patient (another site's IPP, a regional ID).
      for (const other of ids) if (other !== ins && other !== ipp && other.id && (other.oid || other.namespace)) await directory.addIdentifier({ id: other.id, issuer: other.oid || other.namespace! }, ipp.id, 'hl7-adt');
    }
    return { code: 'AA' };
  };
}
