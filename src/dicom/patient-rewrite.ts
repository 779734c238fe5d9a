import dcmjs from 'dcmjs';
import { headerLayout, sequenceItems, type ElementSpan } from './element-walk.js';
import { explicitElement } from './part10.js';

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
  return rewriteInPlace(part10, target, alsoKeep, set) ?? rewriteWhole(part10, target, alsoKeep, set);
}

/**
 * The rewrite as a byte splice: the elements it changes are encoded here and every other byte (the rest of the
 * header, existing Other Patient IDs items, Pixel Data and what follows) is copied as it is. dcmjs decoded and
 * re-encoded the whole file, pixels included, at about 1 ms per instance even for the header alone (its writer
 * allocates per element), most of the CPU of an import (measured by bench:prefetch). Undefined when the file is
 * not one the walker handles, or a value needs a character set other than ASCII, UTF-8 or Latin-1: dcmjs then.
 */
function rewriteInPlace(part10: Buffer, target: PatientIdentity, alsoKeep: PatientIdentity[], set: Settable): Buffer | undefined {
  const layout = headerLayout(part10);
  if (!layout) return undefined;
  const { implicit, elements } = layout;
  const find = (list: ElementSpan[], tag: number) => list.find((e) => e.tag === tag);
  const text = (e: ElementSpan | undefined) => (e ? part10.toString('latin1', e.value, e.value + e.length).replace(/[\0 ]+$/, '').replace(/^ +/, '') : '');
  const charset = text(find(elements, 0x00080005)).split('\\').pop() ?? '';
  const encode = (value: string): Buffer | undefined => {
    if (/^[\x20-\x7e]*$/.test(value)) return Buffer.from(value, 'latin1');
    if (charset === 'ISO_IR 192') return Buffer.from(value, 'utf8');
    if (charset === 'ISO_IR 100' && /^[\x20-\xff]*$/.test(value)) return Buffer.from(value, 'latin1');
    return undefined;
  };
  const element = (tag: number, vr: string, value: Buffer): Buffer => {
    const even = value.length % 2 ? Buffer.concat([value, Buffer.from(vr === 'UI' ? '\0' : ' ')]) : value;
    if (!implicit) return explicitElement(tag, vr, even);
    const head = Buffer.alloc(8);
    head.writeUInt16LE(tag >>> 16, 0);
    head.writeUInt16LE(tag & 0xffff, 2);
    head.writeUInt32LE(even.length, 4);
    return Buffer.concat([head, even]);
  };

  // Other Patient IDs: existing items kept byte for byte, the identifiers not there yet appended.
  const others = find(elements, 0x00101002);
  const items = others ? sequenceItems(part10, others, implicit) : [];
  if (!items) return undefined;
  const known = new Set(items.map((i) => `${text(find(i.elements, 0x00100020))}|${text(find(i.elements, 0x00100021))}`));
  const itemBytes: Buffer[] = items.map((i) => part10.subarray(i.start, i.end));
  const keep = (id: PatientIdentity): boolean => {
    const key = `${id.patientId}|${id.issuer}`;
    if (!id.patientId || known.has(key) || (id.patientId === target.patientId && id.issuer === target.issuer)) return true;
    known.add(key);
    const [pid, issuer] = [encode(id.patientId), encode(id.issuer)];
    if (!pid || !issuer) return false;
    const body = Buffer.concat([element(0x00100020, 'LO', pid), element(0x00100021, 'LO', issuer), element(0x00100022, 'CS', Buffer.from('TEXT'))]);
    const head = Buffer.alloc(8);
    head.writeUInt16LE(0xfffe, 0);
    head.writeUInt16LE(0xe000, 2);
    head.writeUInt32LE(body.length, 4);
    itemBytes.push(head, body);
    return true;
  };
  if (!keep({ patientId: text(find(elements, 0x00100020)), issuer: text(find(elements, 0x00100021)) })) return undefined;
  for (const id of alsoKeep) if (!keep(id)) return undefined;

  const replaced = new Map<number, Buffer>();
  const [pid, issuer] = [encode(target.patientId), encode(target.issuer)];
  if (!pid || !issuer) return undefined;
  replaced.set(0x00100020, element(0x00100020, 'LO', pid));
  replaced.set(0x00100021, element(0x00100021, 'LO', issuer));
  replaced.set(0x00101002, element(0x00101002, 'SQ', Buffer.concat(itemBytes)));
  for (const [keyword, value] of Object.entries(set)) {
    const def = SETTABLE[keyword as keyof typeof SETTABLE];
    if (!def || value === undefined) continue;
    const bytes = encode(value);
    if (!bytes) return undefined;
    replaced.set(parseInt(def.tag, 16), element(parseInt(def.tag, 16), def.vr, bytes));
  }

  // Elements in ascending tag order: the file's, with the changed ones swapped in or inserted where they belong.
  const out: Buffer[] = [part10.subarray(0, layout.datasetStart)];
  const pending = [...replaced.keys()].sort((a, b) => a - b);
  for (const e of elements) {
    while (pending.length && pending[0]! < e.tag) out.push(replaced.get(pending.shift()!)!);
    if (pending[0] === e.tag) out.push(replaced.get(pending.shift()!)!);
    else out.push(part10.subarray(e.start, e.end));
  }
  for (const tag of pending) out.push(replaced.get(tag)!);
  if (layout.pixelData !== undefined) out.push(part10.subarray(layout.pixelData));
  return Buffer.concat(out);
}

/** The general path: dcmjs decodes and re-encodes the whole file (exported for comparison in tests). */
export function rewriteWhole(part10: Buffer, target: PatientIdentity, alsoKeep: PatientIdentity[], set: Settable): Buffer {
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
