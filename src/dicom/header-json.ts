import dcmjs from 'dcmjs';
import type { DicomJson, DicomJsonValue, ParsedHeader } from './part10.js';
import { remembered } from '../common/remembered.js';
import { IMPLICIT_LE, ITEM, ITEM_END, LONG_VRS, PIXEL_DATA, SEQUENCE_END, UNDEFINED } from './element-walk.js';

/**
 * Decodes a Part 10 header (File Meta Information and the data set up to Pixel Data) straight into the DICOM
 * JSON model (PS3.18 F.2), for the instances received every day: little-endian syntaxes, one character set.
 *
 * Why not dcmjs here: its parse was the largest CPU cost of receiving an instance (a generic stream, a tag
 * object and a value-representation object per element, then our conversion of its dictionary to DICOM JSON),
 * and two of its results are wrong for us: items of a sequence are decoded as Latin-1 whatever the data set's
 * Specific Character Set (PS3.5 7.5.3: items inherit it), so a UTF-8 code meaning or name inside a sequence
 * came out garbled; and ST, UT and UR values were split at backslashes, which those VRs do not use as a
 * delimiter (PS3.5 6.2). Anything outside what is decoded here (big endian, deflated, code extensions
 * (ISO 2022), UN elements, malformed or truncated input) gives `undefined`, and the caller takes dcmjs' path.
 */

const MAX_DEPTH = 32;
const BINARY_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW']);
/** Text VRs whose value may hold a backslash: one value, never split (PS3.5 6.2). */
const SINGLE_TEXT = new Set(['LT', 'ST', 'UT', 'UR']);
/** Text VRs in the data set's character set; the others are ASCII (the default repertoire). */
const ENCODED = new Set(['LO', 'LT', 'PN', 'SH', 'ST', 'UC', 'UT']);
const NUMBER_SIZE: Record<string, number> = { FL: 4, FD: 8, SL: 4, SS: 2, UL: 4, US: 2, SV: 8, UV: 8, AT: 4 };
const NUMBER_READ: Record<string, (b: Buffer, o: number) => number> = {
  FL: (b, o) => b.readFloatLE(o),
  FD: (b, o) => b.readDoubleLE(o),
  SL: (b, o) => b.readInt32LE(o),
  SS: (b, o) => b.readInt16LE(o),
  UL: (b, o) => b.readUInt32LE(o),
  US: (b, o) => b.readUInt16LE(o),
  SV: (b, o) => Number(b.readBigInt64LE(o)),
  UV: (b, o) => Number(b.readBigUInt64LE(o)),
  AT: (b, o) => ((b.readUInt16LE(o) << 16) | b.readUInt16LE(o + 2)) >>> 0,
};

/** Defined Terms of Specific Character Set without code extensions → WHATWG encoding labels. */
const CHARSETS: Record<string, string> = {
  '': 'latin1',
  ISO_IR_6: 'latin1',
  ISO_IR_100: 'latin1',
  ISO_IR_101: 'iso-8859-2',
  ISO_IR_109: 'iso-8859-3',
  ISO_IR_110: 'iso-8859-4',
  ISO_IR_144: 'iso-8859-5',
  ISO_IR_127: 'iso-8859-6',
  ISO_IR_126: 'iso-8859-7',
  ISO_IR_138: 'iso-8859-8',
  ISO_IR_148: 'iso-8859-9',
  ISO_IR_166: 'tis-620',
  ISO_IR_192: 'utf-8',
  GB18030: 'gb18030',
  GBK: 'gbk',
};

class Unsupported extends Error {}

/** The VRs of PS3.5 Table 6.2-1 by their two bytes, so reading one allocates nothing. */
const VR_BY_CODE = new Map<number, string>(
  'AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' ').map((vr) => [(vr.charCodeAt(0) << 8) | vr.charCodeAt(1), vr]),
);

/** Tag → its DICOM JSON key (GGGGEEEE), remembered: the same few hundred tags recur in every header. */
const keys = new Map<number, string>();
function keyOf(tag: number): string {
  return remembered(keys, tag, 20_000, (t) => t.toString(16).toUpperCase().padStart(8, '0'));
}

const dictionaryVrs = new Map<number, string | null>();

/** The dictionary's VR of a tag, for implicit VR data sets (dcmjs' dictionary, looked up once per tag). */
function dictionaryVr(tag: number): string | undefined {
  const vr = remembered(dictionaryVrs, tag, 20_000, (t) => {
    const hex = keyOf(t);
    return (dcmjs.data.DicomMetaDictionary.dictionary as Record<string, { vr?: string } | undefined>)[`(${hex.slice(0, 4)},${hex.slice(4)})`]?.vr ?? null;
  });
  return vr ?? undefined;
}

interface Context {
  buf: Buffer;
  implicit: boolean;
  /** A single character set's decoder (undefined: the default, Latin-1), or code extensions (PS3.5 6.1.2.5). */
  decoder: TextDecoder | Iso2022 | undefined;
  /** Pixel Representation seen so far, to resolve US or SS in implicit VR. */
  pixelRepresentation: number;
}

const decoders = new Map<string, TextDecoder>();
function decoderFor(label: string): TextDecoder {
  return remembered(decoders, label, 64, (l) => new TextDecoder(l));
}

function isAscii(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i]! >= 0x80) return false;
  return true;
}

function text(ctx: Context, start: number, end: number, encoded: boolean): string {
  if (!encoded) return ctx.buf.toString('latin1', start, end);
  // 7-bit bytes can still hold escape sequences.
  if (ctx.decoder instanceof Iso2022) return ctx.decoder.decode(ctx.buf, start, end);
  if (isAscii(ctx.buf, start, end)) return ctx.buf.toString('latin1', start, end);
  return (ctx.decoder ?? decoderFor('latin1')).decode(ctx.buf.subarray(start, end));
}

type G0 = 'ascii' | 'jisx0208';
type G1 = 'none' | 'katakana' | 'latin1' | 'ksx1001' | 'gb2312';

/**
 * Values with ISO 2022 code extensions (PS3.5 6.1.2.5, Annexes H to K): escape sequences switch what the
 * 7-bit (G0) and 8-bit (G1) bytes mean. Japanese (IR 13, IR 87), Korean (IR 149), simplified Chinese (IR 58)
 * and Latin-1 (IR 100) are read; any other escape leaves the instance to the general path.
 */
class Iso2022 {
  constructor(private readonly initial: { g0: G0; g1: G1 }) {}

  static forTerms(terms: string[]): Iso2022 {
    const first = terms[0] ?? '';
    const g1: G1 | undefined = first === '' || first === 'ISO_2022_IR_6' ? 'none' : first === 'ISO_2022_IR_13' ? 'katakana' : first === 'ISO_2022_IR_100' ? 'latin1' : undefined;
    const known = new Set(['', 'ISO_2022_IR_6', 'ISO_2022_IR_13', 'ISO_2022_IR_87', 'ISO_2022_IR_100', 'ISO_2022_IR_149', 'ISO_2022_IR_58']);
    if (!g1 || !terms.every((t) => known.has(t))) throw new Unsupported();
    return new Iso2022({ g0: 'ascii', g1 });
  }

  decode(buf: Buffer, start: number, end: number): string {
    let { g0, g1 } = this.initial;
    let out = '';
    let i = start;
    while (i < end) {
      const b = buf[i]!;
      if (b === 0x1b) {
        const esc = buf.toString('latin1', i + 1, Math.min(i + 4, end));
        if (esc.startsWith('(B') || esc.startsWith('(J')) [g0, i] = ['ascii', i + 3];
        else if (esc.startsWith('$B')) [g0, i] = ['jisx0208', i + 3];
        else if (esc.startsWith(')I')) [g1, i] = ['katakana', i + 3];
        else if (esc.startsWith('-A')) [g1, i] = ['latin1', i + 3];
        else if (esc === '$)C') [g1, i] = ['ksx1001', i + 4];
        else if (esc === '$)A') [g1, i] = ['gb2312', i + 4];
        else throw new Unsupported();
        continue;
      }
      let j = i;
      const high = b >= 0x80;
      while (j < end && buf[j] !== 0x1b && buf[j]! >= 0x80 === high) j++;
      const run = buf.subarray(i, j);
      if (!high) {
        // JIS X 0208 in G0 is EUC-JP's code set 1 with the high bits cleared.
        out += g0 === 'ascii' ? run.toString('latin1') : decoderFor('euc-jp').decode(Buffer.from(run.map((x) => x | 0x80)));
      } else if (g1 === 'katakana') {
        for (const x of run) out += String.fromCharCode(0xff61 + x - 0xa1);
      } else if (g1 === 'latin1') {
        out += decoderFor('latin1').decode(run);
      } else if (g1 === 'ksx1001') {
        out += decoderFor('euc-kr').decode(run);
      } else if (g1 === 'gb2312') {
        out += decoderFor('gb18030').decode(run);
      } else {
        throw new Unsupported();
      }
      i = j;
    }
    return out;
  }
}

function implicitVr(ctx: Context, tag: number, length: number): string {
  const vr = dictionaryVr(tag);
  if (vr === undefined) {
    if (length === UNDEFINED) return 'SQ';
    const element = tag & 0xffff;
    // A private creator (gggg,0010-00FF) in an odd group.
    if ((tag >>> 16) % 2 === 1 && element > 0 && element < 0x100) return 'LO';
    return 'UN';
  }
  if (vr === 'US|SS' || vr === 'xs') return ctx.pixelRepresentation === 1 ? 'SS' : 'US';
  if (vr === 'OB|OW' || vr === 'ox' || vr === 'US|OW' || vr === 'US|SS|OW') return 'OW';
  if (!/^[A-Z]{2}$/.test(vr)) throw new Unsupported();
  return vr;
}

function stringValues(ctx: Context, vr: string, start: number, end: number): DicomJsonValue {
  let raw = text(ctx, start, end, ENCODED.has(vr));
  const out: DicomJsonValue = { vr };
  if (vr === 'PN') {
    const values = raw.replace(/[\0 ]+$/, '').split('\\').map((v) => {
      const [alphabetic, ideographic, phonetic] = v.split('=');
      const pn: Record<string, string> = {};
      if (alphabetic) pn.Alphabetic = alphabetic;
      if (ideographic) pn.Ideographic = ideographic;
      if (phonetic) pn.Phonetic = phonetic;
      return Object.keys(pn).length ? pn : null;
    });
    if (values.some((v) => v !== null)) out.Value = values;
    return out;
  }
  // Trailing padding (space, or NUL for UI) and, for text, trailing white space; leading spaces are significant
  // only in LT, ST, UT (PS3.5 6.2).
  raw = raw.replace(/[\0 \t\r\n\f]+$/, '');
  const parts = SINGLE_TEXT.has(vr) ? [raw] : raw.split('\\');
  let values: unknown[];
  if (vr === 'DS' || vr === 'IS') {
    values = parts.map((p) => {
      const t = p.trim();
      if (t === '' || (vr === 'IS' && !/^[+-]?\d+$/.test(t))) return null;
      const n = Number(t);
      return Number.isFinite(n) ? n : null;
    });
  } else if (vr === 'UI') {
    values = parts.map((p) => p.replace(/[^0-9.]/g, '') || null);
  } else if (SINGLE_TEXT.has(vr)) {
    values = parts.map((p) => p || null);
  } else {
    values = parts.map((p) => p.trim() || null);
  }
  if (values.some((v) => v !== null)) out.Value = values;
  return out;
}

function numberValues(ctx: Context, vr: string, start: number, length: number): DicomJsonValue {
  const size = NUMBER_SIZE[vr]!;
  if (length % size !== 0) throw new Unsupported();
  const read = NUMBER_READ[vr]!;
  const values: unknown[] = [];
  for (let o = start; o < start + length; o += size) values.push(read(ctx.buf, o));
  if (vr === 'AT') return values.length ? { vr, Value: values.map((v) => (v as number).toString(16).toUpperCase().padStart(8, '0')) } : { vr };
  return values.length ? { vr, Value: values } : { vr };
}

/** Reads elements from `off` until `end` (or, at the top level, Pixel Data); returns where it stopped. */
function readDataset(ctx: Context, off: number, end: number, out: DicomJson, depth: number, stopAtItemEnd: boolean): { off: number; pixelData: boolean } {
  const b = ctx.buf;
  let last = -1;
  while (off < end) {
    if (off + 8 > end) throw new Unsupported();
    const tag = ((b.readUInt16LE(off) << 16) | b.readUInt16LE(off + 2)) >>> 0;
    if (tag === ITEM_END) {
      if (!stopAtItemEnd) throw new Unsupported();
      return { off: off + 8, pixelData: false };
    }
    if (tag >>> 16 === 0xfffe) throw new Unsupported();
    // Elements ascend within a data set (PS3.5 7.1); a file that says otherwise is left to the general path.
    if (tag <= last) throw new Unsupported();
    last = tag;
    if (depth === 0 && tag === PIXEL_DATA) return { off, pixelData: true };
    let vr: string;
    let length: number;
    let value: number;
    if (ctx.implicit) {
      length = b.readUInt32LE(off + 4);
      vr = implicitVr(ctx, tag, length);
      value = off + 8;
    } else {
      const known = VR_BY_CODE.get((b[off + 4]! << 8) | b[off + 5]!);
      if (known === undefined) throw new Unsupported();
      vr = known;
      if (LONG_VRS.has(vr)) {
        if (off + 12 > end) throw new Unsupported();
        length = b.readUInt32LE(off + 8);
        value = off + 12;
      } else {
        length = b.readUInt16LE(off + 6);
        value = off + 8;
      }
    }
    // An explicit UN may hide a sequence or a value dcmjs re-reads by the dictionary: left to the general path.
    // In implicit VR, UN is what the dictionary cannot name (private data): its bytes, as they are.
    if (vr === 'UN' && !ctx.implicit) throw new Unsupported();
    const key = keyOf(tag);
    if (vr === 'SQ') {
      const items: DicomJson[] = [];
      off = readSequence(ctx, value, length, end, items, depth + 1);
      out[key] = items.length ? { vr, Value: items } : { vr };
      continue;
    }
    if (length === UNDEFINED || value + length > end) throw new Unsupported();
    if (BINARY_VRS.has(vr) || vr === 'UN') {
      out[key] = length ? { vr, InlineBinary: b.toString('base64', value, value + length) } : { vr };
    } else if (vr in NUMBER_SIZE) {
      out[key] = numberValues(ctx, vr, value, length);
      if (tag === 0x00280103 && vr === 'US') ctx.pixelRepresentation = (out[key]!.Value?.[0] as number | undefined) ?? 0;
    } else {
      out[key] = stringValues(ctx, vr, value, value + length);
      if (tag === 0x00080005) setCharset(ctx, out[key]!);
    }
    off = value + length;
  }
  if (stopAtItemEnd) throw new Unsupported();
  return { off, pixelData: false };
}

function setCharset(ctx: Context, el: DicomJsonValue): void {
  const terms = ((el.Value ?? []) as Array<string | null>).map((v) => (v ?? '').replace(/[ -]/g, '_').toUpperCase());
  if (terms.length > 1 || terms[0]?.startsWith('ISO_2022')) {
    ctx.decoder = Iso2022.forTerms(terms);
  } else {
    const label = CHARSETS[terms[0] ?? ''];
    if (!label) throw new Unsupported();
    ctx.decoder = label === 'latin1' ? undefined : decoderFor(label);
  }
  // Values are decoded to Unicode: the JSON model's strings carry no character set of their own.
  el.Value = ['ISO_IR 192'];
}

/** Reads a sequence's items starting at `value`; returns the offset after the sequence. */
function readSequence(ctx: Context, value: number, length: number, end: number, items: DicomJson[], depth: number): number {
  if (depth > MAX_DEPTH) throw new Unsupported();
  const b = ctx.buf;
  const seqEnd = length === UNDEFINED ? end : value + length;
  if (seqEnd > end) throw new Unsupported();
  let off = value;
  for (;;) {
    if (length !== UNDEFINED && off === seqEnd) return off;
    if (off + 8 > seqEnd) throw new Unsupported();
    const tag = ((b.readUInt16LE(off) << 16) | b.readUInt16LE(off + 2)) >>> 0;
    const itemLength = b.readUInt32LE(off + 4);
    if (tag === SEQUENCE_END && length === UNDEFINED) return off + 8;
    if (tag !== ITEM) throw new Unsupported();
    const item: DicomJson = {};
    // Items inherit the data set's character set unless they name their own (PS3.5 7.5.3).
    const saved = ctx.decoder;
    if (itemLength === UNDEFINED) {
      off = readDataset(ctx, off + 8, seqEnd, item, depth, true).off;
    } else {
      const itemEnd = off + 8 + itemLength;
      if (itemEnd > seqEnd) throw new Unsupported();
      readDataset(ctx, off + 8, itemEnd, item, depth, false);
      off = itemEnd;
    }
    ctx.decoder = saved;
    items.push(item);
  }
}

/**
 * The header of a Part 10 file (or of a prefix of one that reaches Pixel Data) as DICOM JSON; `undefined` when
 * it is not decoded here (see above) and the general path must decide, including whether it is DICOM at all.
 */
export function decodeHeaderJson(part10: Buffer): ParsedHeader | undefined {
  try {
    if (part10.length < 144 || part10.toString('latin1', 128, 132) !== 'DICM') return undefined;
    const metaCtx: Context = { buf: part10, implicit: false, decoder: undefined, pixelRepresentation: 0 };
    // The group length says where the meta group ends; without it the general path decides.
    if (part10.readUInt32LE(132) !== 0x00000002 || part10.toString('latin1', 136, 138) !== 'UL' || part10.readUInt16LE(138) !== 4) return undefined;
    const metaEnd = 144 + part10.readUInt32LE(140);
    if (metaEnd > part10.length) return undefined;
    const meta: DicomJson = {};
    readDataset(metaCtx, 144, metaEnd, meta, 1, false);
    const ts = meta['00020010']?.Value?.[0];
    if (typeof ts !== 'string' || !/^[0-9.]+$/.test(ts)) return undefined;
    if (ts === '1.2.840.10008.1.2.2' || ts === '1.2.840.10008.1.2.1.99' || ts === '1.2.840.10008.1.2.8.1') return undefined;
    const ctx: Context = { buf: part10, implicit: ts === IMPLICIT_LE, decoder: undefined, pixelRepresentation: 0 };
    const dataset: DicomJson = {};
    const { pixelData } = readDataset(ctx, metaEnd, part10.length, dataset, 0, false);
    return { meta, dataset, transferSyntaxUid: ts, hasPixelData: pixelData };
  } catch (e) {
    if (e instanceof Unsupported || e instanceof RangeError) return undefined;
    throw e;
  }
}
