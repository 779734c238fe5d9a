import { str, type DicomJson } from './part10.js';

/** One Scheduled Procedure Step of a Modality Worklist answer (PS3.4 K.6), as plain values. */
export interface WorklistItem {
  stepId: string;
  accessionNumber?: string;
  studyUid?: string;
  patientId: string;
  issuer?: string;
  /** Other Patient IDs with their assigning authority OID (Issuer of Patient ID Qualifiers, Universal Entity ID). */
  otherIds: Array<{ id: string; issuer?: string; oid?: string }>;
  patientName?: string;
  birthDate?: string;
  sex?: string;
  /** ISO 8601, from the step's start date and time (local time of this machine). */
  start?: string;
  modality?: string;
  procedure?: { code: string; text?: string; scheme?: string };
  description?: string;
}

const empty = (vr: string) => ({ vr });
const seq = (items: DicomJson[]) => ({ vr: 'SQ', Value: items });
const ymd = (d: Date) => `${d.getFullYear()}${String(d.getMonth() + 1).padStart(2, '0')}${String(d.getDate()).padStart(2, '0')}`;

/** A worklist query for the steps scheduled between two days (inclusive), optionally for one modality. */
export function worklistQuery(from: Date, to: Date, modality?: string): DicomJson {
  return {
    '00100010': empty('PN'),
    '00100020': empty('LO'),
    '00100021': empty('LO'),
    '00101002': seq([]),
    '00100030': empty('DA'),
    '00100040': empty('CS'),
    '00080050': empty('SH'),
    '0020000D': empty('UI'),
    '00401001': empty('SH'),
    '00321060': empty('LO'),
    '00321064': seq([]),
    '00400100': seq([
      {
        '00080060': modality ? { vr: 'CS', Value: [modality] } : empty('CS'),
        '00400001': empty('AE'),
        '00400002': { vr: 'DA', Value: [`${ymd(from)}-${ymd(to)}`] },
        '00400003': empty('TM'),
        '00400009': empty('SH'),
        '00400007': empty('LO'),
      },
    ]),
  };
}

function startOf(date: string, time: string): string | undefined {
  if (!/^\d{8}$/.test(date)) return undefined;
  const t = (time.replace(/[^0-9.]/g, '') + '000000').slice(0, 6);
  const d = new Date(Number(date.slice(0, 4)), Number(date.slice(4, 6)) - 1, Number(date.slice(6, 8)), Number(t.slice(0, 2)), Number(t.slice(2, 4)), Number(t.slice(4, 6)));
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** Reads one worklist answer; undefined when it has no Scheduled Procedure Step. */
export function readWorklistItem(ds: DicomJson): WorklistItem | undefined {
  const step = (ds['00400100']?.Value?.[0] ?? undefined) as DicomJson | undefined;
  if (!step) return undefined;
  const code = (ds['00321064']?.Value?.[0] ?? undefined) as DicomJson | undefined;
  const others = ((ds['00101002']?.Value ?? []) as DicomJson[]).map((o) => {
    const q = (o['00100024']?.Value?.[0] ?? undefined) as DicomJson | undefined;
    return { id: str(o, '00100020'), issuer: str(o, '00100021') || undefined, oid: q ? str(q, '00400032') || undefined : undefined };
  });
  const stepId = str(step, '00400009') || str(ds, '00401001') || str(ds, '00080050');
  return {
    stepId,
    accessionNumber: str(ds, '00080050') || undefined,
    studyUid: str(ds, '0020000D') || undefined,
    patientId: str(ds, '00100020'),
    issuer: str(ds, '00100021') || undefined,
    otherIds: others.filter((o) => o.id),
    patientName: str(ds, '00100010').replace(/\^/g, ' ').trim() || undefined,
    birthDate: str(ds, '00100030') || undefined,
    sex: str(ds, '00100040') || undefined,
    start: startOf(str(step, '00400002'), str(step, '00400003')),
    modality: str(step, '00080060').toUpperCase() || undefined,
    procedure: code && str(code, '00080100') ? { code: str(code, '00080100'), text: str(code, '00080104') || undefined, scheme: str(code, '00080102') || undefined } : undefined,
    description: str(ds, '00321060') || str(step, '00400007') || undefined,
  };
}
