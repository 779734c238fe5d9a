import { find, type Remote } from '../dicom/scu.js';
import { str } from '../dicom/part10.js';
import type { StudyContent } from './manifest.js';

/**
 * What the source function asks of the local PACS, over C-FIND (Study Root): where an exam is and what it holds.
 * Works with any PACS that answers STUDY, SERIES and IMAGE level queries (Orthanc, dcm4chee, DCMTK's dcmqrscp).
 */
export class PacsGateway {
  constructor(
    private readonly remote: Remote,
    private readonly callingAe: string,
  ) {}

  get aeTitle(): string {
    return this.remote.aeTitle;
  }

  /** The study UID of an exam known by its study UID or, failing that, its accession number; undefined if absent. */
  async locate(ref: { studyUid?: string; accessionNumber?: string }): Promise<string | undefined> {
    if (ref.studyUid) {
      const m = await find(this.remote, this.callingAe, 'STUDY', { StudyInstanceUID: ref.studyUid });
      if (m.length) return ref.studyUid;
    }
    if (ref.accessionNumber) {
      const m = await find(this.remote, this.callingAe, 'STUDY', { AccessionNumber: ref.accessionNumber, StudyInstanceUID: '' });
      // An accession number should name one study; if several match, none is chosen rather than a wrong one.
      if (m.length === 1) return str(m[0]!, '0020000D');
      if (m.length > 1) throw new Error(`accession number ${ref.accessionNumber} matches ${m.length} studies in ${this.remote.aeTitle}`);
    }
    return undefined;
  }

  /** Every series and instance of the study, with the study attributes the manifest repeats. */
  async content(studyUid: string): Promise<StudyContent | undefined> {
    const studies = await find(this.remote, this.callingAe, 'STUDY', {
      StudyInstanceUID: studyUid,
      AccessionNumber: '',
      StudyDate: '',
      StudyTime: '',
      StudyDescription: '',
      StudyID: '',
      ReferringPhysicianName: '',
    });
    const s = studies[0];
    if (!s) return undefined;
    const series = await find(this.remote, this.callingAe, 'SERIES', { StudyInstanceUID: studyUid, SeriesInstanceUID: '', Modality: '', BodyPartExamined: '', SeriesDescription: '' });
    const out: StudyContent = {
      studyUid,
      accessionNumber: str(s, '00080050') || undefined,
      studyDate: str(s, '00080020') || undefined,
      studyTime: str(s, '00080030') || undefined,
      studyDescription: str(s, '00081030') || undefined,
      studyId: str(s, '00200010') || undefined,
      referringPhysician: str(s, '00080090') || undefined,
      series: [],
    };
    for (const se of series) {
      const seriesUid = str(se, '0020000E');
      const instances = await find(this.remote, this.callingAe, 'IMAGE', { StudyInstanceUID: studyUid, SeriesInstanceUID: seriesUid, SOPInstanceUID: '', SOPClassUID: '' });
      out.series.push({
        seriesUid,
        modality: str(se, '00080060') || undefined,
        bodyPart: str(se, '00180015') || undefined,
        description: str(se, '0008103E') || undefined,
        instances: instances.map((i) => ({ sopClassUid: str(i, '00080016'), sopInstanceUid: str(i, '00080018') })).filter((i) => i.sopInstanceUid !== ''),
      });
    }
    return out;
  }
}
