import type { Logger } from '../common/log.js';
import { str, type DicomJson } from '../dicom/part10.js';
import { ProfileError, readExamUpdate, readReportMessage } from '../hl7/cisis-report.js';
import type { Hl7Message } from '../hl7/message.js';
import type { Hl7Reply } from '../hl7/mllp.js';
import type { IngestResult } from '../store/ingest.js';
import { KOS_SOP_CLASS } from './manifest.js';
import { PublishError, type ReportPublisher } from './publisher.js';

/**
 * What sets the source function in motion: report messages from the RIS (ORU^R01, MDM^T02/T04/T10/T11), order
 * updates (OMI^O23), and IOCM rejection notes received by C-STORE. Each is turned into a publisher call.
 */

/**
 * Returns undefined for message types the source function does not handle. AA means the request is durably
 * queued (the DRIMbox takes responsibility for publishing it); AE/AR only for a message that can never be
 * published, with an ERR naming the segment and field.
 */
export function sourceHl7Handler(publisher: ReportPublisher, log: Logger) {
  return async (msg: Hl7Message, ctx: { remoteAddress: string }): Promise<Hl7Reply | undefined> => {
    const sender = `${msg.msh.get(3, 1) || 'RIS'}@${msg.msh.get(4, 1) || ctx.remoteAddress}`;
    try {
      if (msg.type === 'OMI^O23') {
        const u = readExamUpdate(msg);
        const r = await publisher.acceptExamChange({ studyUid: u.studyUid, accessionNumber: u.accessionNumber }, sender, msg.controlId);
        log.info({ controlId: msg.controlId, queueId: r.queueId }, 'OMI^O23 queued');
        return { code: 'AA' };
      }
      if (!/^(ORU\^R01|MDM\^T(02|04|10|11))$/.test(msg.type)) return undefined;
      const m = readReportMessage(msg);
      const req = { cda: m.cda, patientIds: m.patientIds, identityReliability: m.identityReliability, accessionNumber: m.accessionNumber, visibility: m.flags, toDmp: m.flags.toDmp, sender, senderAddress: ctx.remoteAddress, controlId: msg.controlId };
      const r = await publisher.accept(req, m.kind === 'withdraw' ? 'withdrawal' : 'report');
      log.info({ controlId: msg.controlId, type: msg.type, result: r.result, queueId: r.queueId, setId: r.setId, studies: r.studyUids }, 'report message accepted');
      return { code: 'AA' };
    } catch (e) {
      if (e instanceof ProfileError) return { code: e.code === '200' ? 'AR' : 'AE', errors: [{ code: e.code, text: e.message, location: e.location }] };
      if (e instanceof PublishError) {
        log.warn({ controlId: msg.controlId, reason: e.message, location: e.location }, 'report refused');
        // 207 (application internal error) for a refusal by the DMP's rules, 204 (unknown key) for a missing exam.
        return { code: 'AE', errors: [{ code: e.transient ? '207' : '204', text: e.message, location: e.location }] };
      }
      throw e;
    }
  };
}

/** IOCM rejection note titles (PS3.16 CID 7011). */
const REJECTION_TITLES: Record<string, string> = {
  '113001': 'Rejected for Quality Reasons',
  '113037': 'Rejected for Patient Safety Reasons',
  '113038': 'Incorrect Modality Worklist Entry',
  '113039': 'Data Retention Policy Expired',
};

/** The study and instances a rejection note rejects, or undefined when the object is not one. */
export function readRejectionNote(header: DicomJson): { studyUid: string; sopUids: string[]; reason: string } | undefined {
  if (str(header, '00080016') !== KOS_SOP_CLASS) return undefined;
  const title = header['0040A043']?.Value?.[0] as DicomJson | undefined;
  const code = title ? str(title, '00080100') : '';
  if (!REJECTION_TITLES[code]) return undefined;
  const out = { studyUid: '', sopUids: [] as string[], reason: REJECTION_TITLES[code]! };
  for (const study of (header['0040A375']?.Value ?? []) as DicomJson[]) {
    out.studyUid ||= str(study, '0020000D');
    for (const series of (study['00081115']?.Value ?? []) as DicomJson[]) {
      for (const sop of (series['00081199']?.Value ?? []) as DicomJson[]) out.sopUids.push(str(sop, '00081155'));
    }
  }
  return out.studyUid && out.sopUids.length ? out : undefined;
}

/** An ingest listener: a rejection note received from the PACS is queued; the manifest is then replaced. */
export function rejectionNoteListener(publisher: ReportPublisher, log: Logger) {
  return (result: IngestResult, header: DicomJson) => {
    const note = readRejectionNote(header);
    if (!note) return;
    publisher
      .acceptExamChange({ studyUid: note.studyUid, rejected: { sopUids: note.sopUids, reason: note.reason } }, `rejection-note:${result.sopUid}`)
      .then((r) => log.info({ studyUid: note.studyUid, rejected: note.sopUids.length, queueId: r.queueId }, 'IOCM rejection note queued'))
      .catch((e) => log.error({ err: e, studyUid: note.studyUid }, 'IOCM rejection note could not be queued'));
  };
}
