import { find, get, move, type InstanceSink, type Level, type Remote, type RetrieveOutcome } from '../dicom/scu.js';
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

  /** Instance counts per series of a study (NumberOfSeriesRelatedInstances; undefined where the PACS omits it). */
  async seriesCounts(studyUid: string, seriesUid?: string): Promise<Map<string, number | undefined>> {
    const rows = await find(this.remote, this.callingAe, 'SERIES', { StudyInstanceUID: studyUid, SeriesInstanceUID: seriesUid ?? '', NumberOfSeriesRelatedInstances: '' });
    const out = new Map<string, number | undefined>();
    for (const r of rows) {
      const n = str(r, '00201209');
      out.set(str(r, '0020000E'), n === '' ? undefined : Number(n));
    }
    return out;
  }

  /** The instances of one series (or one instance), with their SOP classes. */
  async seriesInstances(studyUid: string, seriesUid: string | undefined, sopUid?: string): Promise<Array<{ seriesUid: string; sopUid: string; sopClassUid: string }>> {
    const rows = await find(this.remote, this.callingAe, 'IMAGE', { StudyInstanceUID: studyUid, SeriesInstanceUID: seriesUid ?? '', SOPInstanceUID: sopUid ?? '', SOPClassUID: '' });
    return rows.map((r) => ({ seriesUid: str(r, '0020000E'), sopUid: str(r, '00080018'), sopClassUid: str(r, '00080016') })).filter((i) => i.sopUid !== '');
  }

  /** C-GET: the instances come back on our association, each into the sink `open` returns. */
  async get(level: Level, keys: Record<string, string>, sopClasses: string[], open: (info: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string }) => InstanceSink): Promise<RetrieveOutcome> {
    return get(this.remote, this.callingAe, level, keys, sopClasses, open);
  }

  /** C-MOVE to `destinationAe` (this node, whose DICOM service stores what arrives). */
  async move(level: Level, keys: Record<string, string>, destinationAe: string): Promise<RetrieveOutcome> {
    return move(this.remote, this.callingAe, destinationAe, level, keys);
  }

  /** Patient IDs under which the PACS holds studies whose Other Patient IDs (0010,1000) include `otherId` (e.g. the INS). */
  async patientIdsByOtherId(otherId: string): Promise<Array<{ patientId: string; issuer: string }>> {
    const rows = await find(this.remote, this.callingAe, 'STUDY', { PatientID: '', IssuerOfPatientID: '', OtherPatientIDs: otherId, StudyInstanceUID: '' });
    const seen = new Map<string, { patientId: string; issuer: string }>();
    for (const r of rows) {
      const patientId = str(r, '00100020');
      if (patientId) seen.set(`${patientId}|${str(r, '00100021')}`, { patientId, issuer: str(r, '00100021') });
    }
    return [...seen.values()];
  }

  /** Number of instances of a study the PACS holds under a patient ID. */
  async countInstances(studyUid: string, patientId: string): Promise<number> {
    const rows = await find(this.remote, this.callingAe, 'SERIES', { StudyInstanceUID: studyUid, SeriesInstanceUID: '', NumberOfSeriesRelatedInstances: '' });
    if (!rows.length) return 0;
    const study = await find(this.remote, this.callingAe, 'STUDY', { StudyInstanceUID: studyUid, PatientID: patientId });
    if (!study.length) return 0;
    return rows.reduce((n, r) => n + (Number(str(r, '00201209')) || 0), 0);
  }

  /** Instances the PACS holds for a study (0 when it does not know the study). */
  async studyInstanceCount(studyUid: string): Promise<number> {
    const rows = await find(this.remote, this.callingAe, 'STUDY', { StudyInstanceUID: studyUid, NumberOfStudyRelatedInstances: '' });
    return rows.length ? Number(str(rows[0]!, '00201208')) || 0 : 0;
  }

  /** Studies dated within [from, to] (YYYYMMDD) with their instance counts: what a watcher compares over time. */
  async recentStudies(from: string, to: string): Promise<Array<{ studyUid: string; instances: number }>> {
    const rows = await find(this.remote, this.callingAe, 'STUDY', { StudyDate: `${from}-${to}`, StudyInstanceUID: '', NumberOfStudyRelatedInstances: '' });
    return rows.map((r) => ({ studyUid: str(r, '0020000D'), instances: Number(str(r, '00201208')) || 0 })).filter((s) => s.studyUid !== '');
  }

  /** What routing rules look at: modalities, stations and institutions of the series, the referring physician. */
  async studyFacts(studyUid: string): Promise<{ modalities: string[]; stationNames: string[]; institutionNames: string[]; referringPhysicianName?: string }> {
    const study = (await find(this.remote, this.callingAe, 'STUDY', { StudyInstanceUID: studyUid, ReferringPhysicianName: '', InstitutionName: '' }))[0];
    const series = await find(this.remote, this.callingAe, 'SERIES', { StudyInstanceUID: studyUid, SeriesInstanceUID: '', Modality: '', StationName: '', InstitutionName: '' });
    const set = (tag: string) => [...new Set([...(study && tag === '00080080' ? [str(study, tag)] : []), ...series.map((r) => str(r, tag))].filter(Boolean))];
    return { modalities: set('00080060'), stationNames: set('00081010'), institutionNames: set('00080080'), referringPhysicianName: study ? str(study, '00080090') || undefined : undefined };
  }

  /** Patients the PACS knows born on a date (Patient Root), with their names: local identities for reconciliation. */
  async patientsBornOn(birthDate: string): Promise<Array<{ patientId: string; issuer: string; name: string; birthName: string; sex: string }>> {
    const rows = await find(this.remote, this.callingAe, 'PATIENT', { PatientID: '', IssuerOfPatientID: '', PatientName: '', PatientBirthDate: birthDate, PatientSex: '' }, 'PATIENT');
    return rows.map((r) => ({ patientId: str(r, '00100020'), issuer: str(r, '00100021'), name: str(r, '00100010'), birthName: str(r, '00101005'), sex: str(r, '00100040') })).filter((p) => p.patientId !== '');
  }

  /** The studies of a patient (by Patient ID and issuer) with what prior selection looks at. */
  async studiesOfPatient(patientId: string, issuer: string): Promise<Array<{ studyUid: string; date?: string; description?: string; modalities: string[] }>> {
    const rows = await find(this.remote, this.callingAe, 'STUDY', { PatientID: patientId, IssuerOfPatientID: issuer, StudyInstanceUID: '', StudyDate: '', StudyDescription: '', ModalitiesInStudy: '' });
    return rows
      .map((r) => {
        const d = str(r, '00080020');
        const modalities = ((r['00080061']?.Value ?? []) as string[]).flatMap((m) => String(m).split('\\')).map((m) => m.trim()).filter(Boolean);
        return { studyUid: str(r, '0020000D'), date: /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : undefined, description: str(r, '00081030') || undefined, modalities };
      })
      .filter((s) => s.studyUid !== '');
  }
}
