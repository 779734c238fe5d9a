import dcmjs from 'dcmjs';

export interface ManifestSeries {
  seriesUid: string;
  /** WADO-RS Retrieve URL of the series at the source box. */
  retrieveUrl?: string;
  retrieveAeTitle?: string;
  retrieveLocationUid?: string;
  /** Found in a peer PACS by C-FIND (prefetch): retrieved from that AE (one of `peers`) by C-GET, not from a box. */
  pacs?: string;
  instances: Array<{ sopClassUid: string; sopUid: string }>;
}

export interface Manifest {
  sopInstanceUid: string;
  studyUid: string;
  patientId?: string;
  accessionNumber?: string;
  series: ManifestSeries[];
}

export class ManifestError extends Error {
  override name = 'ManifestError';
}

const KOS_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.88.59';
const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
/** A text value without its padding (PS3.5 6.2: UR, UI, AE values of odd length are padded). */
const text = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : String(v).replace(/[\s\0]+$/, '').trim() || undefined);

/**
 * Reads an XDS-I.b imaging manifest (Key Object Selection, Part 10): the study, and per series the instances
 * and where to fetch them (Retrieve URL, Retrieve AE Title, Retrieve Location UID).
 */
export function readManifest(part10: Buffer): Manifest {
  let ds: any;
  try {
    const dict = dcmjs.data.DicomMessage.readFile(part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.length) as ArrayBuffer);
    ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(dict.dict);
  } catch (e) {
    throw new ManifestError(`the manifest is not a readable DICOM file: ${(e as Error).message}`);
  }
  if (ds.SOPClassUID !== KOS_SOP_CLASS) throw new ManifestError(`the manifest is not a Key Object Selection document (SOP class ${ds.SOPClassUID})`);
  const evidence = list<any>(ds.CurrentRequestedProcedureEvidenceSequence);
  if (!evidence.length) throw new ManifestError('the manifest lists no evidence (CurrentRequestedProcedureEvidenceSequence is empty)');
  const studyUid = evidence[0].StudyInstanceUID ?? ds.StudyInstanceUID;
  const series: ManifestSeries[] = evidence.flatMap((st: any) =>
    list<any>(st.ReferencedSeriesSequence).map((se: any) => ({
      seriesUid: text(se.SeriesInstanceUID) ?? '',
      retrieveUrl: text(se.RetrieveURL),
      retrieveAeTitle: text(se.RetrieveAETitle),
      retrieveLocationUid: text(se.RetrieveLocationUID),
      instances: list<any>(se.ReferencedSOPSequence).map((i: any) => ({ sopClassUid: text(i.ReferencedSOPClassUID) ?? '', sopUid: text(i.ReferencedSOPInstanceUID) ?? '' })),
    })),
  );
  const ref = list<any>(ds.ReferencedRequestSequence)[0];
  return { sopInstanceUid: text(ds.SOPInstanceUID) ?? '', studyUid: text(studyUid) ?? '', patientId: text(ds.PatientID), accessionNumber: text(ref?.AccessionNumber ?? ds.AccessionNumber), series };
}
