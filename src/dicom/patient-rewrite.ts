import dcmjs from 'dcmjs';
import { pixelDataOffset } from './element-walk.js';

export interface PatientIdentity {
  patientId: string;
  issuer: string;
}

/**
 * Puts an instance under another patient identifier (PS3.3 C.7.1.1): Patient ID and Issuer of Patient ID are
 * replaced, and the identifiers the instance carried are kept in Other Patient IDs Sequence (0010,1002), so the
 * origin of the images stays traceable. Works on one instance in memory; pixel data is copied as is.
 */
/** Attributes an import may set as well, by keyword (to mark external priors). */
export const SETTABLE = { InstitutionName: { tag: '00080080', vr: 'LO' }, StationName: { tag: '00081010', vr: 'SH' }, InstitutionalDepartmentName: { tag: '00081040', vr: 'LO' } } as const;
export type Settable = Partial<Record<keyof typeof SETTABLE, string>>;

export function rewritePatient(part10: Buffer, target: PatientIdentity, alsoKeep: PatientIdentity[] = [], set: Settable = {}): Buffer {
  // Only the header is decoded and re-encoded; Pixel Data and what follows it are copied as they are. dcmjs would
  // otherwise read and rewrite every pixel byte (most of the CPU of an import, measured by bench:prefetch).
  const cut = pixelDataOffset(part10);
  if (cut === undefined) return rewriteWhole(part10, target, alsoKeep, set);
  const header = rewriteWhole(part10.subarray(0, cut), target, alsoKeep, set);
  return Buffer.concat([header, part10.subarray(cut)]);
}

function rewriteWhole(part10: Buffer, target: PatientIdentity, alsoKeep: PatientIdentity[], set: Settable): Buffer {
  const message = dcmjs.data.DicomMessage.readFile(part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.length) as ArrayBuffer, { untilTag: undefined, includeUntilTagValue: false } as any);
  const dict = message.dict as Record<string, { vr: string; Value?: any[] }>;
  const value = (tag: string) => (dict[tag]?.Value?.[0] !== undefined ? String(dict[tag]!.Value![0]) : '');
  const others: Array<Record<string, { vr: string; Value: any[] }>> = (dict['00101002']?.Value ?? []) as any;
  const known = new Set(others.map((o) => `${o['00100020']?.Value?.[0] ?? ''}|${o['00100021']?.Value?.[0] ?? ''}`));
  const keep = (id: PatientIdentity) => {
    const key = `${id.patientId}|${id.issuer}`;
    if (!id.patientId || known.has(key) || (id.patientId === target.patientId && id.issuer === target.issuer)) return;
    known.add(key);
    others.push({ '00100020': { vr: 'LO', Value: [id.patientId] }, '00100021': { vr: 'LO', Value: [id.issuer] }, '00100022': { vr: 'CS', Value: ['TEXT'] } });
  };
  keep({ patientId: value('00100020'), issuer: value('00100021') });
  for (const id of alsoKeep) keep(id);
  dict['00100020'] = { vr: 'LO', Value: [target.patientId] };
  dict['00100021'] = { vr: 'LO', Value: [target.issuer] };
  dict['00101002'] = { vr: 'SQ', Value: others };
  for (const [keyword, value] of Object.entries(set)) {
    const def = SETTABLE[keyword as keyof typeof SETTABLE];
    if (def && value !== undefined) dict[def.tag] = { vr: def.vr, Value: [value] };
  }
  return Buffer.from(message.write());
}
