import type { Hl7Message, Segment } from './message.js';

/**
 * Reads the French "CI-SIS CDA in HL7 v2" profile (ORU^R01, MDM^T02/T04/T10/T11 carrying a base64 CDA in OBX type
 * ED, with the DMP/MSSanté flags in further OBX rows) and OMI^O23 (imaging order update), as in the ANS DRIM-M
 * test data sets. Produces plain values; what to do with them is the source function's business.
 */

export interface HL7Identifier {
  id: string;
  /** Assigning authority OID (PID-3.4.2). */
  oid: string;
  namespace?: string;
  /** PID-3.5: INS, PI, … */
  type: string;
}

export interface ReportFlags {
  /** MASQUE_PS: hidden from health professionals. */
  hiddenFromProfessionals: boolean;
  invisibleToPatient: boolean;
  invisibleToLegalRepresentatives: boolean;
  /** MODIF_CONF_CODE: the patient asked for a non-default confidentiality. */
  confidentialityChanged: boolean;
  /** DESTDMP: to be sent to the DMP at all. */
  toDmp: boolean;
}

export interface ReportMessage {
  kind: 'publish' | 'withdraw';
  messageType: string;
  controlId: string;
  cda?: Buffer;
  patientIds: HL7Identifier[];
  /** PID-32 Identity Reliability Code (RNIV statuses: PROV, RECUP, VALI, QUAL; DOUTE, FICTI). */
  identityReliability: string[];
  patientName?: { family: string; given: string };
  birthDate?: string;
  sex?: string;
  accessionNumber?: string;
  placerOrderNumber?: string;
  /** OBR-32 or OBR-16: the validating/ordering physician, as RPPS when given so. */
  physician?: { id: string; family?: string; given?: string; idType?: string };
  flags: ReportFlags;
}

export interface ExamUpdateMessage {
  messageType: string;
  controlId: string;
  patientIds: HL7Identifier[];
  accessionNumber?: string;
  studyUid?: string;
  orderControl: string;
}

export class ProfileError extends Error {
  override name = 'ProfileError';
  constructor(
    message: string,
    readonly location: string,
    readonly code = '101',
  ) {
    super(message);
  }
}

export function patientIdentifiers(pid: Segment | undefined): HL7Identifier[] {
  if (!pid) return [];
  return pid.repetitions(3).map((rep) => ({
    id: pid.part(rep, 1),
    namespace: pid.part(rep, 4, 1) || undefined,
    oid: pid.part(rep, 4, 2),
    type: pid.part(rep, 5),
  })).filter((i) => i.id !== '');
}

const yes = (v: string) => v.toUpperCase() === 'Y';

export function readReportMessage(msg: Hl7Message): ReportMessage {
  const [type, trigger] = msg.type.split('^');
  if (!(type === 'ORU' && trigger === 'R01') && !(type === 'MDM' && ['T02', 'T04', 'T10', 'T11'].includes(trigger ?? ''))) {
    throw new ProfileError(`${msg.type} is not a report message (ORU^R01 or MDM^T02/T04/T10/T11)`, 'MSH-9', '200');
  }
  const pid = msg.segment('PID');
  if (!pid) throw new ProfileError('PID segment missing', 'PID', '100');
  const patientIds = patientIdentifiers(pid);
  if (!patientIds.length) throw new ProfileError('PID-3 carries no patient identifier', 'PID-3');
  const orc = msg.segment('ORC');
  const obr = msg.segment('OBR');
  const txa = msg.segment('TXA');
  // De-publication: ORC-1 = CA (ORU), MDM^T04/T11 with TXA-17 CA/DE, or the document's OBX-11 = D ("deleted").
  const edObx = msg.all('OBX').find((o) => o.get(2) === 'ED');
  const withdraw = orc?.get(1) === 'CA' || trigger === 'T11' || (txa !== undefined && ['CA', 'DE'].includes(txa.get(17))) || edObx?.get(11) === 'D';
  let cda: Buffer | undefined;
  const flags: ReportFlags = { hiddenFromProfessionals: false, invisibleToPatient: false, invisibleToLegalRepresentatives: false, confidentialityChanged: false, toDmp: true };
  for (const [i, obx] of msg.all('OBX').entries()) {
    const valueType = obx.get(2);
    const code = obx.get(3, 1);
    if (valueType === 'ED') {
      // OBX-5 ED: ^TEXT^XML^Base64^data (source application, type, subtype, encoding, data).
      const encoding = obx.get(5, 4);
      const data = obx.get(5, 5);
      if (!/^base64$/i.test(encoding)) throw new ProfileError(`OBX ${i + 1}: encoded data is "${encoding}", expected Base64`, `OBX-5`, '102');
      if (!data) throw new ProfileError(`OBX ${i + 1}: the embedded document is empty`, 'OBX-5');
      cda = Buffer.from(data.replace(/\s+/g, ''), 'base64');
      if (cda.length === 0) throw new ProfileError(`OBX ${i + 1}: the embedded document is not base64`, 'OBX-5', '102');
    } else if (valueType === 'CE' || valueType === 'CWE') {
      const v = yes(obx.get(5, 1));
      if (code === 'MASQUE_PS') flags.hiddenFromProfessionals = v;
      else if (code === 'INVISIBLE_PATIENT') flags.invisibleToPatient = v;
      else if (code === 'INVISIBLE_REP_LEGAUX' || code === 'INVISIBLE_REPRESENTANTS_LEGAUX') flags.invisibleToLegalRepresentatives = v;
      else if (code === 'MODIF_CONF_CODE' || code === 'MODIF_CONFIDENTIALITY_CODE') flags.confidentialityChanged = v;
      else if (code === 'DESTDMP') flags.toDmp = v;
    }
  }
  if (!cda && !withdraw) throw new ProfileError('no OBX of type ED carrying the CDA report', 'OBX-5');
  const physicianSrc = obr?.raw(32) ? { id: obr.get(32, 1, 1), family: obr.get(32, 1, 2), given: obr.get(32, 1, 3) } : obr?.raw(16) ? { id: obr.get(16, 1), family: obr.get(16, 2), given: obr.get(16, 3), idType: obr.get(16, 13) } : undefined;
  return {
    kind: withdraw ? 'withdraw' : 'publish',
    messageType: msg.type,
    controlId: msg.controlId,
    cda,
    patientIds,
    identityReliability: pid.repetitions(32).map((r) => pid.part(r, 1).toUpperCase()).filter(Boolean),
    patientName: pid.get(5, 1) ? { family: pid.get(5, 1), given: pid.get(5, 2) } : undefined,
    birthDate: pid.get(7) || undefined,
    sex: pid.get(8) || undefined,
    accessionNumber: obr?.get(18) || obr?.get(3, 1) || undefined,
    placerOrderNumber: obr?.get(2, 1) || orc?.get(2, 1) || undefined,
    physician: physicianSrc?.id ? physicianSrc : undefined,
    flags,
  };
}

/** OMI^O23: an imaging order whose content changed (series added/removed): IPC carries accession and study. */
export function readExamUpdate(msg: Hl7Message): ExamUpdateMessage {
  if (msg.type !== 'OMI^O23') throw new ProfileError(`${msg.type} is not OMI^O23`, 'MSH-9', '200');
  const ipc = msg.segment('IPC');
  const obr = msg.segment('OBR');
  const accession = ipc?.get(1, 1) || obr?.get(18) || undefined;
  const studyUid = ipc?.get(3, 1) || undefined;
  if (!accession && !studyUid) throw new ProfileError('OMI^O23 names neither an accession number (IPC-1/OBR-18) nor a study (IPC-3)', 'IPC-1');
  return { messageType: msg.type, controlId: msg.controlId, patientIds: patientIdentifiers(msg.segment('PID')), accessionNumber: accession, studyUid, orderControl: msg.segment('ORC')?.get(1) ?? '' };
}
