import dcmjs from 'dcmjs';
import { headerWithoutUnSequences, pixelDataOffset } from './element-walk.js';
import { decodeHeaderJson } from './header-json.js';

const { DicomMessage } = dcmjs.data;

export const IMPLEMENTATION_CLASS_UID = '1.2.826.0.1.3680043.10.1355.1';
export const IMPLEMENTATION_VERSION = 'OPENDRIM_010';
export const PIXEL_DATA = '7FE00010';

/** DICOM JSON model (PS3.18 F.2): tag → { vr, Value | BulkDataURI | InlineBinary }. */
export type DicomJsonValue = { vr: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string };
export type DicomJson = Record<string, DicomJsonValue>;

export const UNCOMPRESSED_SYNTAXES = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99']);

export class DicomParseError extends Error {
  override name = 'DicomParseError';
}

/** One element in Explicit VR Little Endian, the value already padded to even length. */
export function explicitElement(tag: number, vr: string, value: Buffer): Buffer {
  const longVr = vr === 'OB' || vr === 'OW' || vr === 'SQ' || vr === 'UN' || vr === 'UT' || vr === 'UC' || vr === 'UR';
  const head = Buffer.alloc(longVr ? 12 : 8);
  head.writeUInt16LE(tag >>> 16, 0);
  head.writeUInt16LE(tag & 0xffff, 2);
  head.write(vr, 4, 'ascii');
  if (longVr) head.writeUInt32LE(value.length, 8);
  else head.writeUInt16LE(value.length, 6);
  return Buffer.concat([head, value]);
}

function padded(text: string, pad: string): Buffer {
  const b = Buffer.from(text, 'ascii');
  return b.length % 2 ? Buffer.concat([b, Buffer.from(pad, 'ascii')]) : b;
}

/**
 * The 128-byte preamble, "DICM" and the File Meta Information group (PS3.10 7.1), written by hand because
 * it is six elements and this lets a received C-STORE data set be streamed to disk untouched behind it.
 */
export function fileMetaHeader(meta: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string; sourceAeTitle?: string }): Buffer {
  const els = [
    explicitElement(0x00020001, 'OB', Buffer.from([0, 1])),
    explicitElement(0x00020002, 'UI', padded(meta.sopClassUid, '\0')),
    explicitElement(0x00020003, 'UI', padded(meta.sopInstanceUid, '\0')),
    explicitElement(0x00020010, 'UI', padded(meta.transferSyntaxUid, '\0')),
    explicitElement(0x00020012, 'UI', padded(IMPLEMENTATION_CLASS_UID, '\0')),
    explicitElement(0x00020013, 'SH', padded(IMPLEMENTATION_VERSION, ' ')),
  ];
  if (meta.sourceAeTitle) els.push(explicitElement(0x00020016, 'AE', padded(meta.sourceAeTitle.trim(), ' ')));
  const body = Buffer.concat(els);
  const groupLength = explicitElement(0x00020000, 'UL', Buffer.alloc(4));
  groupLength.writeUInt32LE(body.length, 8);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'ascii'), groupLength, body]);
}

export interface ParsedHeader {
  meta: DicomJson;
  dataset: DicomJson;
  transferSyntaxUid: string;
  /** True when parsing stopped at Pixel Data (its value was not read). */
  hasPixelData: boolean;
}

function isPart10(buf: Buffer): boolean {
  return buf.length >= 132 && buf.toString('ascii', 128, 132) === 'DICM';
}

/**
 * Parses a Part 10 file's meta group and data set up to (not including) Pixel Data, from a prefix of the file.
 * Throws DicomParseError for non-DICOM or truncated input; `complete` says whether `buf` is the whole file.
 */
export function parseHeader(buf: Buffer, complete: boolean): ParsedHeader {
  if (!isPart10(buf)) {
    throw new DicomParseError(buf.length < 132 ? 'not a DICOM file (shorter than the Part 10 preamble)' : 'not a DICOM Part 10 file (no DICM prefix)');
  }
  return decodeHeaderJson(buf) ?? parseHeaderWithDcmjs(buf, complete);
}

/**
 * dcmjs' parse, for what `decodeHeaderJson` leaves (big endian, deflated, code extensions, UN elements,
 * malformed input), and the reference its results are compared with in tests.
 */
export function parseHeaderWithDcmjs(buf: Buffer, complete: boolean): ParsedHeader {
  if (!isPart10(buf)) {
    throw new DicomParseError(buf.length < 132 ? 'not a DICOM file (shorter than the Part 10 preamble)' : 'not a DICOM Part 10 file (no DICM prefix)');
  }
  let dict: any;
  // dcmjs is handed the header only, cut where the walker finds Pixel Data: it copies what it is given, and a
  // prefix that runs into the pixels cost several times the header's own parse.
  const cut = pixelDataOffset(buf);
  try {
    const head = cut === undefined ? buf : buf.subarray(0, cut);
    const ab = head.buffer.slice(head.byteOffset, head.byteOffset + head.byteLength);
    dict = DicomMessage.readFile(ab, { ignoreErrors: false, untilTag: PIXEL_DATA, includeUntilTagValue: false, noCopy: true });
  } catch (e) {
    // A sequence encoded as UN of undefined length is valid DICOM that dcmjs cannot read: the header is parsed
    // again without it (the file is stored as received, with it), rather than the instance being refused.
    const retry = headerWithoutUnSequences(buf);
    try {
      if (!retry) throw e;
      dict = DicomMessage.readFile(retry.header.buffer.slice(retry.header.byteOffset, retry.header.byteOffset + retry.header.byteLength), { ignoreErrors: false, untilTag: PIXEL_DATA, includeUntilTagValue: false, noCopy: true });
    } catch {
      const msg = (e as Error).message ?? String(e);
      throw new DicomParseError(complete ? `malformed DICOM data set: ${msg}` : `header larger than the parsed prefix: ${msg}`);
    }
  }
  try {
    const meta = cleanDict(dict.meta);
    // Found by fuzzing: a meta element with a wrong VR yields a number here, not a string.
    const raw = meta['00020010']?.Value?.[0];
    const ts = typeof raw === 'string' ? raw.replace(/\0/g, '').trim() : '';
    if (!/^[0-9.]+$/.test(ts)) throw new DicomParseError('File Meta Information has no valid Transfer Syntax UID');
    const hasPixelData = cut !== undefined || PIXEL_DATA in dict.dict;
    delete dict.dict[PIXEL_DATA];
    return { meta, dataset: cleanDict(dict.dict), transferSyntaxUid: ts, hasPixelData };
  } catch (e) {
    if (e instanceof DicomParseError) throw e;
    throw new DicomParseError(`malformed DICOM data set: ${(e as Error).message}`);
  }
}

const BINARY_VRS = new Set(['OB', 'OW', 'OF', 'OD', 'OL', 'OV', 'UN']);

/** dcmjs' dictionary → DICOM JSON (drops raw values, turns binary into InlineBinary, AT into hex strings). */
function cleanDict(dict: Record<string, any>): DicomJson {
  const out: DicomJson = {};
  for (const [tag, el] of Object.entries(dict)) {
    if (!el || typeof el !== 'object') continue;
    const vr: string = typeof el.vr === 'string' ? el.vr : 'UN';
    const values: unknown[] = Array.isArray(el.Value) ? el.Value : [];
    const item: DicomJsonValue = { vr };
    if (vr === 'SQ') {
      if (values.length) item.Value = values.map((v) => cleanDict(v as Record<string, any>));
    } else if (BINARY_VRS.has(vr)) {
      const bufs = values.filter((v) => v instanceof ArrayBuffer || ArrayBuffer.isView(v)).map((v) => Buffer.from(ArrayBuffer.isView(v) ? (v.buffer as ArrayBuffer).slice(v.byteOffset, v.byteOffset + v.byteLength) : (v as ArrayBuffer)));
      const joined = Buffer.concat(bufs);
      if (joined.length) item.InlineBinary = joined.toString('base64');
    } else if (vr === 'AT') {
      const vals = values.map((v) => (typeof v === 'number' ? v.toString(16).toUpperCase().padStart(8, '0') : String(v)));
      if (vals.length) item.Value = vals;
    } else if (vr === 'DS' || vr === 'IS') {
      const vals = values.map((v) => (v === '' || v === null || v === undefined ? null : Number.isFinite(Number(v)) ? Number(v) : null));
      if (vals.some((v) => v !== null)) item.Value = vals;
    } else if (vr === 'PN') {
      const vals = values.map((v) => (v && typeof v === 'object' ? stripEmpty(v as Record<string, string>) : typeof v === 'string' && v !== '' ? { Alphabetic: v } : null));
      if (vals.some((v) => v !== null)) item.Value = vals;
    } else {
      const vals = values.map((v) => (typeof v === 'string' ? (v === '' ? null : v.replace(/\0+$/, '')) : v ?? null));
      if (vals.some((v) => v !== null && v !== '')) item.Value = vals;
    }
    out[tag.toUpperCase()] = item;
  }
  return out;
}

function stripEmpty(pn: Record<string, string>): Record<string, string> | null {
  const o: Record<string, string> = {};
  for (const k of ['Alphabetic', 'Ideographic', 'Phonetic']) if (pn[k]) o[k] = pn[k]!;
  return Object.keys(o).length ? o : null;
}

/** First value of a tag as a trimmed string ('' if absent). PN gives its alphabetic form. */
export function str(ds: DicomJson, tag: string): string {
  const v = ds[tag]?.Value?.[0];
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return String((v as Record<string, string>).Alphabetic ?? '').trim();
  return String(v).trim();
}

export function num(ds: DicomJson, tag: string): number | null {
  const s = str(ds, tag);
  if (s === '') return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
}

/** All values of a multi-valued string element joined with the DICOM separator. */
export function multi(ds: DicomJson, tag: string): string {
  return (ds[tag]?.Value ?? []).filter((v) => v !== null && v !== undefined).map(String).join('\\');
}

/** Keeps large binary values out of the stored metadata: they are replaced by a BulkDataURI on the instance. */
export function withBulkData(ds: DicomJson, bulkBase: string, hasPixelData: boolean, transferSyntaxUid: string, inlineLimit = 1024): DicomJson {
  const out: DicomJson = {};
  for (const [tag, el] of Object.entries(ds)) {
    if (el.InlineBinary && el.InlineBinary.length > (inlineLimit * 4) / 3) out[tag] = { vr: el.vr, BulkDataURI: `${bulkBase}/bulk/${tag}` };
    else out[tag] = el;
  }
  if (hasPixelData) out[PIXEL_DATA] = { vr: UNCOMPRESSED_SYNTAXES.has(transferSyntaxUid) ? 'OW' : 'OB', BulkDataURI: `${bulkBase}/bulk/${PIXEL_DATA}` };
  return out;
}
