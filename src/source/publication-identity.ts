import type { PublicationTable } from '../store/db.js';
import type { ImagingReport } from './cda.js';
import type { Visibility } from './dmp-submission.js';

/**
 * The identity of a publication (docs/ihe-integration.md, "Publication identity"): one report document
 * (ClinicalDocument/id) for one exam (study). The setId only chains the versions of one report *for one exam*: the
 * ANS test reports of different exams share a setId and a version, so it can never identify a publication alone.
 *
 * Given what is already published here, a report received for publication is one of:
 * - `unchanged`: the same document, byte for byte, with the same DMP flags (a RIS retry): nothing to do;
 * - `visibility`: the same document with other DMP flags: an ITI-57 metadata update of its entries;
 * - `replace`: another document of the same setId for the same exam, of a version not below the published one:
 *   it replaces the published report and manifest (RPLC);
 * - `new`: anything else (a first report, or a report for another exam even when its setId is shared);
 * - `refused`, with the field that makes it undecidable; the RIS gets AE with that field in ERR.
 */
export type Decision =
  | { action: 'unchanged'; rows: PublicationTable[] }
  | { action: 'visibility'; rows: PublicationTable[] }
  | { action: 'replace'; previous: PublicationTable[] }
  | { action: 'new' }
  | { action: 'refused'; field: string; reason: string };

export const sameVisibility = (a: Visibility, b: Visibility) =>
  a.hiddenFromProfessionals === b.hiddenFromProfessionals && a.invisibleToPatient === b.invisibleToPatient && a.invisibleToLegalRepresentatives === b.invisibleToLegalRepresentatives;

/**
 * @param sameDocument every row, any status, of this document id
 * @param sameChain published rows of this setId for the report's studies
 * @param studies the report's studies as far as they are known (the CDA's serviceEvent ids, or located in the PACS)
 */
export function decidePublication(report: ImagingReport, cdaHash: string, visibility: Visibility, studies: string[], sameDocument: PublicationTable[], sameChain: PublicationTable[]): Decision {
  if (sameDocument.length) {
    const elsewhere = sameDocument.find((r) => studies.length > 0 && !studies.includes(r.study_uid));
    if (elsewhere) return { action: 'refused', field: 'ClinicalDocument/id', reason: `document ${report.uniqueId} was published for study ${elsewhere.study_uid}; this report names study ${studies.join(', ')}: a report for another exam needs its own document id` };
    const current = sameDocument.filter((r) => r.status === 'published');
    if (!current.length) {
      const state = sameDocument[0]!.status === 'replaced' ? 'was replaced by a later version' : 'was withdrawn';
      return { action: 'refused', field: 'ClinicalDocument/id', reason: `document ${report.uniqueId} ${state}; the DMP keeps its id: a new publication needs a new document id (and a higher versionNumber)` };
    }
    // Rows migrated from before CDA hashes were kept have an empty hash: the same id then counts as the same bytes.
    if (current.some((r) => r.cda_hash && r.cda_hash !== cdaHash)) {
      return { action: 'refused', field: 'ClinicalDocument/id', reason: `document ${report.uniqueId} is already published with other content; a corrected report needs a new ClinicalDocument/id and a higher versionNumber (same setId) to replace it` };
    }
    const published = JSON.parse(current[0]!.visibility || '{}') as Partial<Visibility>;
    const known = published.hiddenFromProfessionals !== undefined;
    return known && !sameVisibility(published as Visibility, visibility) ? { action: 'visibility', rows: current } : { action: 'unchanged', rows: current };
  }
  if (sameChain.length) {
    const newer = sameChain.find((r) => r.report_version > report.version);
    if (newer) return { action: 'refused', field: 'ClinicalDocument/versionNumber', reason: `version ${report.version} of report ${report.setId} for study ${newer.study_uid} is older than the published version ${newer.report_version}` };
    return { action: 'replace', previous: sameChain };
  }
  return { action: 'new' };
}
