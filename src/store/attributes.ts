/**
 * Which attributes live at which level of the Patient/Study/Series/Instance hierarchy, and which of them the
 * index can match on (PS3.4 C.6). The same table drives C-FIND and QIDO-RS so both behave identically.
 */
export type Level = 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE';

export type MatchKind = 'uid' | 'text' | 'pn' | 'date' | 'time' | 'number' | 'modalities' | 'otherIds';

export interface Matchable {
  keyword: string;
  tag: string;
  level: Level;
  /** table.column in the index; absent for attributes matched another way. */
  column?: string;
  kind: MatchKind;
}

export const MATCHABLE: Matchable[] = [
  { keyword: 'PatientName', tag: '00100010', level: 'PATIENT', column: 'patients.patient_name_norm', kind: 'pn' },
  { keyword: 'PatientID', tag: '00100020', level: 'PATIENT', column: 'patients.patient_id', kind: 'text' },
  { keyword: 'IssuerOfPatientID', tag: '00100021', level: 'PATIENT', column: 'patients.issuer', kind: 'text' },
  { keyword: 'PatientBirthDate', tag: '00100030', level: 'PATIENT', column: 'patients.birth_date', kind: 'date' },
  { keyword: 'PatientSex', tag: '00100040', level: 'PATIENT', column: 'patients.sex', kind: 'text' },
  { keyword: 'OtherPatientIDs', tag: '00101000', level: 'PATIENT', column: 'patients.other_ids', kind: 'otherIds' },
  { keyword: 'StudyInstanceUID', tag: '0020000D', level: 'STUDY', column: 'studies.study_uid', kind: 'uid' },
  { keyword: 'StudyDate', tag: '00080020', level: 'STUDY', column: 'studies.study_date', kind: 'date' },
  { keyword: 'StudyTime', tag: '00080030', level: 'STUDY', column: 'studies.study_time', kind: 'time' },
  { keyword: 'AccessionNumber', tag: '00080050', level: 'STUDY', column: 'studies.accession_number', kind: 'text' },
  { keyword: 'StudyID', tag: '00200010', level: 'STUDY', column: 'studies.study_id', kind: 'text' },
  { keyword: 'StudyDescription', tag: '00081030', level: 'STUDY', column: 'studies.description', kind: 'text' },
  { keyword: 'ReferringPhysicianName', tag: '00080090', level: 'STUDY', column: 'studies.referring_physician_norm', kind: 'pn' },
  { keyword: 'ModalitiesInStudy', tag: '00080061', level: 'STUDY', kind: 'modalities' },
  { keyword: 'SeriesInstanceUID', tag: '0020000E', level: 'SERIES', column: 'series.series_uid', kind: 'uid' },
  { keyword: 'Modality', tag: '00080060', level: 'SERIES', column: 'series.modality', kind: 'text' },
  { keyword: 'SeriesNumber', tag: '00200011', level: 'SERIES', column: 'series.series_number', kind: 'number' },
  { keyword: 'SeriesDescription', tag: '0008103E', level: 'SERIES', column: 'series.description', kind: 'text' },
  { keyword: 'SeriesDate', tag: '00080021', level: 'SERIES', column: 'series.series_date', kind: 'date' },
  { keyword: 'BodyPartExamined', tag: '00180015', level: 'SERIES', column: 'series.body_part', kind: 'text' },
  { keyword: 'InstitutionName', tag: '00080080', level: 'SERIES', column: 'series.institution_name', kind: 'text' },
  { keyword: 'StationName', tag: '00081010', level: 'SERIES', column: 'series.station_name', kind: 'text' },
  { keyword: 'SOPInstanceUID', tag: '00080018', level: 'IMAGE', column: 'instances.sop_uid', kind: 'uid' },
  { keyword: 'SOPClassUID', tag: '00080016', level: 'IMAGE', column: 'instances.sop_class_uid', kind: 'uid' },
  { keyword: 'InstanceNumber', tag: '00200013', level: 'IMAGE', column: 'instances.instance_number', kind: 'number' },
];

export const MATCHABLE_BY_TAG = new Map(MATCHABLE.map((m) => [m.tag, m]));

/** Attributes copied from an instance's header into each level's stored record (returned by C-FIND / QIDO). */
export const LEVEL_TAGS: Record<Exclude<Level, 'IMAGE'>, string[]> = {
  PATIENT: ['00080005', '00100010', '00100020', '00100021', '00100024', '00100030', '00100032', '00100040', '00101000', '00101001', '00101002', '00102160', '00104000'],
  STUDY: ['00080020', '00080030', '00080050', '00080051', '00080090', '00080096', '00081030', '00081032', '0020000D', '00200010', '00101010', '00101020', '00101030', '00321032', '00321060', '00400275'],
  SERIES: ['00080021', '00080031', '00080060', '00080070', '00080080', '00081010', '0008103E', '00081040', '00081090', '00180015', '0020000E', '00200011', '00200060', '00400244', '00400245', '00400253'],
};

export const LEVEL_ORDER: Level[] = ['PATIENT', 'STUDY', 'SERIES', 'IMAGE'];

export function levelRank(level: Level): number {
  return LEVEL_ORDER.indexOf(level);
}

/** Normalised form used to match Person Names case- and accent-insensitively, as PACS users expect. */
export function normalizePersonName(name: string): string {
  return name
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .toUpperCase()
    .replace(/\s+/g, ' ')
    .trim();
}
