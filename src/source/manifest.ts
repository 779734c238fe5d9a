import { randomUUID } from 'node:crypto';
import { encodeDataset } from '../dicom/net/dataset.js';
import { fileMetaHeader, type DicomJson, type DicomJsonValue } from '../dicom/part10.js';

/** What a study holds, as the local PACS reports it: enough to list it in an XDS-I.b manifest. */
export interface StudyContent {
  studyUid: string;
  accessionNumber?: string;
  studyDate?: string;
  studyTime?: string;
  studyDescription?: string;
  studyId?: string;
  referringPhysician?: string;
  series: {
    seriesUid: string;
    modality?: string;
    bodyPart?: string;
    description?: string;
    instances: { sopClassUid: string; sopInstanceUid: string }[];
  }[];
}

/**
 * A DICOM PN from a birth name and first given name, each possibly missing (the ANS cross-validator's cases):
 * "FAMILY^Given", "FAMILY", "^Given", or nothing at all (an empty, type 2 Patient's Name).
 */
export function personName(family?: string, given?: string): string | undefined {
  if (!family && !given) return undefined;
  return given ? `${family ?? ''}^${given}` : family;
}

/** The patient as the manifest names them: the INS, as DRIM-M requires, with its issuer. */
export interface ManifestPatient {
  ins: string;
  insOid: string;
  /** IssuerOfPatientID text, e.g. ASIP-SANTE-INS-NIR. */
  issuer: string;
  name?: string;
  birthDate?: string;
  sex?: string;
}

export interface ManifestSource {
  /** AE title from which the images can be retrieved (this DRIMbox). */
  retrieveAeTitle: string;
  /** Retrieve Location UID of this DRIMbox (XDS-I.b: identifies the Imaging Document Source). */
  retrieveLocationUid: string;
  /** Base of this DRIMbox's WADO-RS (…/dicom-web); each series gets its Retrieve URL under it. */
  wadoRsBase: string;
  institutionName?: string;
  /** Optional link to this DRIMbox's viewer for the study, written as a text item of the manifest. */
  viewerUrl?: string;
}

/** The order the exam fulfils, as the report names it (CDA inFulfillmentOf/order). */
export interface ManifestRequest {
  accessionNumber?: { id: string; root?: string };
  placerOrderNumber?: { id: string; root?: string };
  procedureDescription?: string;
}

export interface Manifest {
  sopInstanceUid: string;
  seriesUid: string;
  instanceCount: number;
  part10: Buffer;
}

export const KOS_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.88.59';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

/** A UID under the 2.25 root (PS3.5 B.2), from a random UUID. */
export function newUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

const v = (vr: string, ...values: unknown[]): DicomJsonValue => ({ vr, Value: values.filter((x) => x !== undefined && x !== '') });
const pn = (name?: string): DicomJsonValue => (name ? { vr: 'PN', Value: [{ Alphabetic: name }] } : { vr: 'PN' });
const code = (value: string, scheme: string, meaning: string) => ({ '00080100': v('SH', value), '00080102': v('SH', scheme), '00080104': v('LO', meaning) });
const IMAGE_STORAGE = /^1\.2\.840\.10008\.5\.1\.4\.1\.1\.(1|2|3|4|5|6|7|12|13|20|30|77|128|130|481)(\.|$)/;

function dicomDateTime(d = new Date()): { date: string; time: string; offset: string } {
  const pad = (n: number) => String(n).padStart(2, '0');
  const minutes = -d.getTimezoneOffset();
  const offset = `${minutes < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(minutes) / 60))}${pad(Math.abs(minutes) % 60)}`;
  return { date: `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}`, time: `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`, offset };
}

/** An issuer as PS3.3 10.14 writes it: Universal Entity ID (an OID), type ISO. */
const issuer = (root?: string) => ({ vr: 'SQ', Value: root ? [{ '00400032': v('UT', root), '00400033': v('CS', 'ISO') }] : [] });

/**
 * Builds the Key Object Selection Document that XDS-I.b calls a manifest (PS3.3 A.35.4, TID 2010, title
 * (113030, DCM, "Manifest")), listing every instance of the study with where to retrieve each series: Retrieve AE
 * Title, Retrieve Location UID and the WADO-RS Retrieve URL of this DRIMbox.
 */
export function buildManifest(study: StudyContent, patient: ManifestPatient, source: ManifestSource, request: ManifestRequest = {}, now = new Date()): Manifest {
  const sopInstanceUid = newUid();
  const seriesUid = newUid();
  const { date, time, offset } = dicomDateTime(now);
  const accession = request.accessionNumber?.id ?? study.accessionNumber;
  const series = study.series.filter((s) => s.instances.length > 0);
  const wado = source.wadoRsBase.replace(/\/$/, '');
  const issuerQualifiers = { vr: 'SQ', Value: [{ '00400032': v('UT', patient.insOid), '00400033': v('CS', 'ISO') }] };
  const content: DicomJson[] = series.flatMap((s) =>
    s.instances.map((i) => ({
      '0040A010': v('CS', 'CONTAINS'),
      '0040A040': v('CS', IMAGE_STORAGE.test(i.sopClassUid) ? 'IMAGE' : 'COMPOSITE'),
      '00081199': { vr: 'SQ', Value: [{ '00081150': v('UI', i.sopClassUid), '00081155': v('UI', i.sopInstanceUid) }] },
    })),
  );
  if (source.viewerUrl) {
    content.unshift({ '0040A010': v('CS', 'CONTAINS'), '0040A040': v('CS', 'TEXT'), '0040A043': { vr: 'SQ', Value: [code('113012', 'DCM', 'Key Object Description')] }, '0040A160': v('UT', `Viewer: ${source.viewerUrl}`) });
  }
  const ds: DicomJson = {
    '00080005': v('CS', 'ISO_IR 192'),
    '00080012': v('DA', date),
    '00080013': v('TM', time),
    '00080016': v('UI', KOS_SOP_CLASS),
    '00080018': v('UI', sopInstanceUid),
    '00080020': v('DA', study.studyDate),
    '00080023': v('DA', date),
    '00080030': v('TM', study.studyTime),
    '00080033': v('TM', time),
    '00080050': v('SH', accession),
    '00080051': issuer(request.accessionNumber?.root),
    '00080060': v('CS', 'KO'),
    '00080070': v('LO', 'OpenDRIM'),
    '00080080': v('LO', source.institutionName),
    '00080090': pn(study.referringPhysician),
    '00080201': v('SH', offset),
    '00081030': v('LO', study.studyDescription),
    '0008103E': v('LO', 'XDS-I.b manifest'),
    '00081111': { vr: 'SQ', Value: [] },
    '00100010': pn(patient.name),
    '00100020': v('LO', patient.ins),
    '00100021': v('LO', patient.issuer),
    '00100024': issuerQualifiers,
    '00100030': v('DA', patient.birthDate),
    '00100040': v('CS', patient.sex),
    '00101002': { vr: 'SQ', Value: [{ '00100020': v('LO', patient.ins), '00100021': v('LO', patient.issuer), '00100022': v('CS', 'TEXT'), '00100024': issuerQualifiers }] },
    '0020000D': v('UI', study.studyUid),
    '0020000E': v('UI', seriesUid),
    '00200010': v('SH', study.studyId),
    '00200011': v('IS', 9999),
    '00200013': v('IS', 1),
    '0040A040': v('CS', 'CONTAINER'),
    '0040A043': { vr: 'SQ', Value: [code('113030', 'DCM', 'Manifest')] },
    '0040A050': v('CS', 'SEPARATE'),
    '0040A504': { vr: 'SQ', Value: [{ '00080105': v('CS', 'DCMR'), '0040DB00': v('CS', '2010') }] },
    // The order as PS3.3 C.17.6 (Key Object Document) and the ANS KOS samples list it.
    '0040A370': {
      vr: 'SQ',
      Value: [
        {
          '00080050': v('SH', accession),
          '00080051': issuer(request.accessionNumber?.root),
          '00081110': { vr: 'SQ', Value: [] },
          '0020000D': v('UI', study.studyUid),
          '00321060': v('LO', request.procedureDescription ?? study.studyDescription),
          '00321064': { vr: 'SQ', Value: [] },
          '00400026': issuer(request.placerOrderNumber?.root),
          '00401001': v('SH', accession),
          '00402016': v('LO', request.placerOrderNumber?.id),
          '00402017': v('LO'),
        },
      ],
    },
    '0040A375': {
      vr: 'SQ',
      Value: [
        {
          '0020000D': v('UI', study.studyUid),
          '00081115': {
            vr: 'SQ',
            Value: series.map((s) => ({
              '0020000E': v('UI', s.seriesUid),
              '00080054': v('AE', source.retrieveAeTitle),
              '0040E011': v('UI', source.retrieveLocationUid),
              '00081190': v('UR', `${wado}/studies/${study.studyUid}/series/${s.seriesUid}`),
              '00081199': { vr: 'SQ', Value: s.instances.map((i) => ({ '00081150': v('UI', i.sopClassUid), '00081155': v('UI', i.sopInstanceUid) })) },
            })),
          },
        },
      ],
    },
    '0040A730': { vr: 'SQ', Value: content },
  };
  const body = encodeDataset(ds, EXPLICIT_LE);
  const part10 = Buffer.concat([fileMetaHeader({ sopClassUid: KOS_SOP_CLASS, sopInstanceUid, transferSyntaxUid: EXPLICIT_LE }), body]);
  return { sopInstanceUid, seriesUid, instanceCount: content.length - (source.viewerUrl ? 1 : 0), part10 };
}

/** The instances a manifest lists, as "series/sop" keys in a stable order: to tell whether a study's content changed. */
export function contentDigest(study: StudyContent): string {
  return study.series
    .flatMap((s) => s.instances.map((i) => `${s.seriesUid}/${i.sopInstanceUid}`))
    .sort()
    .join('\n');
}
