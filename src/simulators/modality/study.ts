/**
 * Writes a synthetic but realistic study (Part 10, Explicit VR Little Endian) for interoperability tests and
 * benchmarks: a 16-bit phantom with noise, unique UIDs, demographics, accession, referring physician and the
 * patient's INS in OtherPatientIDsSequence.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import dcmjs from 'dcmjs';

dcmjs.log?.setLevel?.('error');

export interface StudySpec {
  out: string;
  modality?: 'CT' | 'MR' | 'CR';
  series?: number;
  slices?: number;
  rows?: number;
  cols?: number;
  patientName?: string;
  patientId?: string;
  issuer?: string;
  birthDate?: string;
  sex?: string;
  ins?: string;
  studyDate?: string;
  accession?: string;
  studyUid?: string;
  description?: string;
  referring?: string;
  institution?: string;
}

export interface GeneratedStudy {
  studyUid: string;
  seriesUids: string[];
  sopUids: string[];
  files: string[];
  bytes: number;
}

export const newUid = () => `2.25.${BigInt('0x' + randomBytes(15).toString('hex')).toString()}`;

const SOP_CLASS = { CT: '1.2.840.10008.5.1.4.1.1.2', MR: '1.2.840.10008.5.1.4.1.1.4', CR: '1.2.840.10008.5.1.4.1.1.1' };

function phantom(rows: number, cols: number, slice: number, seed: { v: number }): Uint16Array {
  const px = new Uint16Array(rows * cols);
  const organs = [
    [-0.2, -0.1, 0.12, 1100],
    [0.2, -0.05, 0.1, 1060],
    [0.0, 0.24, 0.06, 2300],
    [0.06 * Math.cos(slice / 15), 0.04, 0.05, 1250],
  ] as const;
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < cols; x++) {
      const nx = x / cols - 0.5;
      const ny = y / rows - 0.5;
      let v = (nx * nx) / 0.17 + (ny * ny) / 0.11 < 1 ? 1040 : 20;
      for (const [ox, oy, r, val] of organs) if ((nx - ox) ** 2 + (ny - oy) ** 2 < r * r) v = val;
      seed.v = (seed.v * 1664525 + 1013904223) >>> 0;
      px[y * cols + x] = v + (seed.v >>> 27);
    }
  }
  return px;
}

export function generateStudy(spec: StudySpec): GeneratedStudy {
  const modality = spec.modality ?? 'CT';
  const nSeries = spec.series ?? 1;
  const nSlices = spec.slices ?? 10;
  const rows = spec.rows ?? (modality === 'CR' ? 1024 : modality === 'MR' ? 256 : 512);
  const cols = spec.cols ?? rows;
  const studyUid = spec.studyUid ?? newUid();
  const frameUid = newUid();
  const seed = { v: 12345 };
  mkdirSync(spec.out, { recursive: true });
  const result: GeneratedStudy = { studyUid, seriesUids: [], sopUids: [], files: [], bytes: 0 };
  for (let s = 0; s < nSeries; s++) {
    const seriesUid = newUid();
    result.seriesUids.push(seriesUid);
    for (let i = 0; i < nSlices; i++) {
      const sopUid = newUid();
      const ds: Record<string, unknown> = {
        SpecificCharacterSet: 'ISO_IR 192',
        SOPClassUID: SOP_CLASS[modality],
        SOPInstanceUID: sopUid,
        StudyInstanceUID: studyUid,
        SeriesInstanceUID: seriesUid,
        FrameOfReferenceUID: frameUid,
        PatientName: spec.patientName ?? 'DUPONT^MARIE',
        PatientID: spec.patientId ?? 'P0001',
        IssuerOfPatientID: spec.issuer ?? 'HOSP_A',
        PatientBirthDate: spec.birthDate ?? '19600101',
        PatientSex: spec.sex ?? 'F',
        StudyDate: spec.studyDate ?? '20261120',
        StudyTime: '101010',
        SeriesDate: spec.studyDate ?? '20261120',
        AccessionNumber: spec.accession ?? 'A0001',
        StudyID: '1',
        StudyDescription: spec.description ?? `${modality} EXAM`,
        SeriesDescription: `${modality} series ${s + 1}`,
        ReferringPhysicianName: spec.referring ?? 'MARTIN^PAUL',
        InstitutionName: spec.institution ?? 'CHU A',
        Modality: modality,
        SeriesNumber: String(s + 1),
        InstanceNumber: String(i + 1),
        ImagePositionPatient: ['-250', '-250', String(-i * 1.25)],
        ImageOrientationPatient: ['1', '0', '0', '0', '1', '0'],
        SliceThickness: '1.25',
        PixelSpacing: ['0.976', '0.976'],
        SamplesPerPixel: 1,
        PhotometricInterpretation: 'MONOCHROME2',
        Rows: rows,
        Columns: cols,
        BitsAllocated: 16,
        BitsStored: 12,
        HighBit: 11,
        PixelRepresentation: 0,
        RescaleIntercept: '-1024',
        RescaleSlope: '1',
        WindowCenter: '40',
        WindowWidth: '400',
        PixelData: [phantom(rows, cols, i, seed).buffer],
        _vrMap: { PixelData: 'OW' },
      };
      if (spec.ins) {
        ds.OtherPatientIDsSequence = [{ PatientID: spec.ins, IssuerOfPatientID: 'ASIP-SANTE-INS-NIR', TypeOfPatientID: 'TEXT' }];
        // Many PACS index only the flat Other Patient IDs (0010,1000); sites fill both.
        ds.OtherPatientIDs = spec.ins;
      }
      const meta = {
        FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
        MediaStorageSOPClassUID: ds.SOPClassUID,
        MediaStorageSOPInstanceUID: sopUid,
        TransferSyntaxUID: '1.2.840.10008.1.2.1',
        ImplementationClassUID: '1.2.826.0.1.3680043.10.1355.99',
        ImplementationVersionName: 'OPENDRIM_TEST',
      };
      const dict = new dcmjs.data.DicomDict(dcmjs.data.DicomMetaDictionary.denaturalizeDataset(meta));
      dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(ds);
      const buf = Buffer.from(dict.write());
      const file = path.join(spec.out, `${String(s + 1).padStart(2, '0')}-${String(i + 1).padStart(4, '0')}.dcm`);
      writeFileSync(file, buf);
      result.files.push(file);
      result.sopUids.push(sopUid);
      result.bytes += buf.length;
    }
  }
  return result;
}

// CLI: tsx src/simulators/modality/study.ts --out DIR [--slices N] [--series N] [--modality CT]
if (process.argv[1] && import.meta.url.endsWith(path.basename(process.argv[1]))) {
  const args: Record<string, string> = {};
  for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i]!.replace(/^--/, '')] = process.argv[i + 1]!;
  const r = generateStudy({ out: args.out ?? './study', slices: Number(args.slices ?? 10), series: Number(args.series ?? 1), modality: (args.modality as 'CT') ?? 'CT', rows: args.rows ? Number(args.rows) : undefined });
  console.log(JSON.stringify({ studyUid: r.studyUid, files: r.files.length, bytes: r.bytes }));
}
