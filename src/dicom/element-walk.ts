/**
 * Walks the top level of a Part 10 file's data set without decoding values, to find where Pixel Data starts.
 * The header before it is small and the pixel data after it is most of the file: code that changes header
 * attributes (patient identity) re-encodes only the header and copies the rest byte for byte, instead of
 * decoding and re-encoding megabytes of pixels it does not touch.
 *
 * Only the little-endian syntaxes are walked (implicit, explicit, and every encapsulated one); deflated and
 * big-endian files, and anything malformed, give `undefined` and callers take their general path.
 */
import { isImageSopClass } from './uids.js';

export const IMPLICIT_LE = '1.2.840.10008.1.2';
const BIG_ENDIAN = '1.2.840.10008.1.2.2';
const DEFLATED = new Set(['1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.8.1']);
/** VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2). */
export const LONG_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
export const UNDEFINED = 0xffffffff;
export const ITEM = 0xfffee000;
export const ITEM_END = 0xfffee00d;
export const SEQUENCE_END = 0xfffee0dd;
export const PIXEL_DATA = 0x7fe00010;
const MAX_DEPTH = 64;

class Malformed extends Error {
  constructor(message = '') {
    super(message);
  }
}

export interface Element {
  tag: number;
  vr?: string;
  length: number;
  /** Offset of the value. */
  value: number;
}

/** A top-level element and the bytes it spans (header and value). */
export interface ElementSpan extends Element {
  start: number;
  end: number;
}

function readElement(buf: Buffer, off: number, implicit: boolean): Element {
  if (off + 8 > buf.length) throw new Malformed();
  const tag = ((buf.readUInt16LE(off) << 16) | buf.readUInt16LE(off + 2)) >>> 0;
  if (implicit || tag >>> 16 === 0xfffe) return { tag, length: buf.readUInt32LE(off + 4), value: off + 8 };
  const vr = buf.toString('latin1', off + 4, off + 6);
  if (LONG_VRS.has(vr)) {
    if (off + 12 > buf.length) throw new Malformed();
    return { tag, vr, length: buf.readUInt32LE(off + 8), value: off + 12 };
  }
  if (!/^[A-Z]{2}$/.test(vr)) throw new Malformed();
  return { tag, vr, length: buf.readUInt16LE(off + 6), value: off + 8 };
}

/** The offset just past a sequence of undefined length whose first item starts at `off`. */
function skipSequence(buf: Buffer, off: number, implicit: boolean, depth: number): number {
  if (depth > MAX_DEPTH) throw new Malformed();
  for (;;) {
    const item = readElement(buf, off, true);
    if (item.tag === SEQUENCE_END) return item.value;
    if (item.tag !== ITEM) throw new Malformed();
    if (item.length !== UNDEFINED) {
      off = item.value + item.length;
      continue;
    }
    off = item.value;
    for (;;) {
      const el = readElement(buf, off, implicit);
      if (el.tag === ITEM_END) {
        off = el.value;
        break;
      }
      off = skipValue(buf, el, implicit, depth + 1);
    }
  }
}

function skipValue(buf: Buffer, el: Element, implicit: boolean, depth: number): number {
  if (el.length !== UNDEFINED) {
    const end = el.value + el.length;
    if (end > buf.length) throw new Malformed();
    return end;
  }
  // Undefined length: a sequence; an explicit UN of undefined length holds implicit little endian (PS3.5 6.2.2).
  return skipSequence(buf, el.value, implicit || el.vr === 'UN', depth);
}

/**
 * The File Meta Information's values by element number (group 0002, always explicit VR little endian), and where
 * the data set starts; throws Malformed when it cannot be walked.
 */
function walkMeta(buf: Buffer): { values: Map<number, string>; datasetStart: number } {
  if (buf.length < 144 || buf.toString('latin1', 128, 132) !== 'DICM') throw new Malformed();
  const values = new Map<number, string>();
  let off = 132;
  while (off + 8 <= buf.length && buf.readUInt16LE(off) === 0x0002) {
    const el = readElement(buf, off, false);
    if (el.length === UNDEFINED || el.value + el.length > buf.length) throw new Malformed();
    values.set(el.tag & 0xffff, buf.toString('latin1', el.value, el.value + el.length).replace(/[\0 ]+$/, ''));
    off = el.value + el.length;
  }
  return { values, datasetStart: off };
}

/** The File Meta Information's values by element number (0x0010 = Transfer Syntax UID…); undefined when malformed. */
export function fileMetaValues(part10: Buffer): { values: Map<number, string>; datasetStart: number } | undefined {
  try {
    return walkMeta(part10);
  } catch (e) {
    if (e instanceof Malformed || e instanceof RangeError) return undefined;
    throw e;
  }
}

/** The transfer syntax named in the File Meta Information, and where the data set starts. */
function metaOf(buf: Buffer): { transferSyntax: string; datasetStart: number } {
  const { values, datasetStart } = walkMeta(buf);
  const transferSyntax = values.get(0x0010) ?? '';
  if (!transferSyntax) throw new Malformed();
  return { transferSyntax, datasetStart };
}

/**
 * Whether a Part 10 file is whole: every top-level element complete and the last one ending at the end of the
 * file, with pixel data when the header describes an image (Rows present). A file cut at an arbitrary byte fails
 * the walk; one cut exactly before Pixel Data fails the image test. Deflated and big-endian files are not walked:
 * false.
 */
export function isWholePart10(part10: Buffer): boolean {
  try {
    const { transferSyntax, datasetStart } = metaOf(part10);
    if (transferSyntax === BIG_ENDIAN || DEFLATED.has(transferSyntax)) return false;
    const implicit = transferSyntax === IMPLICIT_LE;
    let off = datasetStart;
    let rows = false;
    let pixels = false;
    while (off < part10.length) {
      const el = readElement(part10, off, implicit);
      if (el.tag >>> 16 === 0xfffe) return false;
      if (el.tag === 0x00280010) rows = true;
      if (el.tag === PIXEL_DATA || el.tag === 0x7fe00008 || el.tag === 0x7fe00009) pixels = true;
      off = skipValue(part10, el, implicit, 0);
    }
    return off === part10.length && (pixels || !rows);
  } catch (e) {
    if (e instanceof Malformed || e instanceof RangeError) return false;
    throw e;
  }
}

/**
 * The top-level elements before Pixel Data (all of them when there is none) with the bytes each spans, the
 * encoding, and where Pixel Data starts; `undefined` when the file is not walked here (deflated, big endian) or
 * is malformed.
 */
export function headerLayout(part10: Buffer, collect = true): { implicit: boolean; transferSyntax: string; datasetStart: number; elements: ElementSpan[]; pixelData: number | undefined } | undefined {
  try {
    const { transferSyntax, datasetStart } = metaOf(part10);
    if (transferSyntax === BIG_ENDIAN || DEFLATED.has(transferSyntax)) return undefined;
    const implicit = transferSyntax === IMPLICIT_LE;
    const elements: ElementSpan[] = [];
    let off = datasetStart;
    let last = -1;
    while (off < part10.length) {
      const el = readElement(part10, off, implicit);
      // Tags ascend at the top level; a file that says otherwise is left to the general path.
      if (el.tag <= last) return undefined;
      last = el.tag;
      if (el.tag === PIXEL_DATA) return { implicit, transferSyntax, datasetStart, elements, pixelData: off };
      if (el.tag > PIXEL_DATA || el.tag >>> 16 === 0xfffe) return undefined;
      const end = skipValue(part10, el, implicit, 0);
      if (collect) elements.push({ ...el, start: off, end });
      off = end;
    }
    return { implicit, transferSyntax, datasetStart, elements, pixelData: undefined };
  } catch (e) {
    if (e instanceof Malformed || e instanceof RangeError) return undefined;
    throw e;
  }
}

/** Offset of the top-level Pixel Data element (its tag's first byte); `undefined` when absent or not walked here. */
export function pixelDataOffset(part10: Buffer): number | undefined {
  // Called for every instance received: the walk only, without keeping the elements.
  return headerLayout(part10, false)?.pixelData;
}

/**
 * The items of a sequence element (bytes of each whole item, header included) and, inside each, its elements;
 * `undefined` when malformed.
 */
export function sequenceItems(buf: Buffer, sq: ElementSpan, implicit: boolean): Array<{ start: number; end: number; elements: ElementSpan[] }> | undefined {
  try {
    const inner = implicit || sq.vr === 'UN';
    const items: Array<{ start: number; end: number; elements: ElementSpan[] }> = [];
    const limit = sq.length === UNDEFINED ? buf.length : sq.value + sq.length;
    let off = sq.value;
    while (off < limit) {
      const item = readElement(buf, off, true);
      if (item.tag === SEQUENCE_END) break;
      if (item.tag !== ITEM) return undefined;
      const elements: ElementSpan[] = [];
      let at = item.value;
      const itemLimit = item.length === UNDEFINED ? buf.length : item.value + item.length;
      while (at < itemLimit) {
        const el = readElement(buf, at, inner);
        if (el.tag === ITEM_END) {
          at = el.value;
          break;
        }
        const end = skipValue(buf, el, inner, 1);
        elements.push({ ...el, start: at, end });
        at = end;
      }
      if (item.length !== UNDEFINED) at = itemLimit;
      if (at > limit) return undefined;
      items.push({ start: off, end: at, elements });
      off = at;
    }
    return items;
  } catch (e) {
    if (e instanceof Malformed || e instanceof RangeError) return undefined;
    throw e;
  }
}

/**
 * The header (up to Pixel Data) without its top-level elements of VR UN and undefined length, which PS3.5 6.2.2
 * allows (a sequence re-encoded as UN by a system that did not know it, typically private) but dcmjs cannot read
 * ("Finding view is past end of input"). Used only to retry a parse dcmjs refused: the stored file keeps them.
 * Undefined when there is nothing to drop or the file is not walked here.
 */
export function headerWithoutUnSequences(part10: Buffer): { header: Buffer; dropped: number[] } | undefined {
  const layout = headerLayout(part10);
  if (!layout) return undefined;
  const dropped = layout.elements.filter((e) => e.vr === 'UN' && e.length === UNDEFINED);
  if (!dropped.length) return undefined;
  const kept = layout.elements.filter((e) => !(e.vr === 'UN' && e.length === UNDEFINED)).map((e) => part10.subarray(e.start, e.end));
  return { header: Buffer.concat([part10.subarray(0, layout.datasetStart), ...kept]), dropped: dropped.map((e) => e.tag) };
}

/** Reads `length` bytes of the object at `offset` (fewer at its end). */
export type ReadAt = (offset: number, length: number) => Buffer;

const us = (buf: Buffer, el: Element) => (el.length >= 2 ? buf.readUInt16LE(el.value) : undefined);
const is = (buf: Buffer, el: Element) => {
  const n = Number(buf.toString('latin1', el.value, el.value + el.length).trim());
  return Number.isFinite(n) && n > 0 ? n : undefined;
};

/**
 * Why a received object is not a whole Part 10 data set, or undefined when it is: every element's length within
 * the data and the last one ending with it; native Pixel Data as long as Rows × Columns × Samples per Pixel ×
 * Number of Frames × Bits Allocated says; encapsulated Pixel Data a run of items ended by its delimiter. Reads only
 * the header (`head`, the object's first bytes or all of it) and, through `readAt`, the item headers of
 * encapsulated pixels and what follows Pixel Data: never the pixels. Big-endian and deflated objects are not
 * walked (undefined; their decoder checks them).
 */
export function wholenessProblem(head: Buffer, total: number, readAt: ReadAt): string | undefined {
  let meta: { transferSyntax: string; datasetStart: number };
  try {
    meta = metaOf(head);
  } catch {
    return 'the File Meta Information is not readable';
  }
  if (meta.transferSyntax === BIG_ENDIAN || DEFLATED.has(meta.transferSyntax)) return undefined;
  if (meta.datasetStart >= total) return 'the object ends with its File Meta Information: no data set';
  const implicit = meta.transferSyntax === IMPLICIT_LE;
  const hex = (tag: number) => `(${(tag >>> 16).toString(16).padStart(4, '0')},${(tag & 0xffff).toString(16).padStart(4, '0')})`;
  let buf = head;
  const geometry: Record<string, number | undefined> = {};
  let sopClass = '';
  /** Walks top-level elements of `b` from `off`; Pixel Data is handed back to the caller. */
  const walk = (b: Buffer, off: number, end: number): { pixel?: Element; off: number } => {
    while (off < end) {
      const el = readElement(b, off, implicit);
      if (el.tag >>> 16 === 0xfffe) throw new Malformed(`an item tag ${hex(el.tag)} at the top level (offset ${off})`);
      if (el.tag === PIXEL_DATA || el.tag === 0x7fe00008 || el.tag === 0x7fe00009) return { pixel: el, off };
      if (el.length !== UNDEFINED && el.value + el.length > end) throw new Malformed(`element ${hex(el.tag)} declares ${el.length} bytes, past the end of the data`);
      if (el.tag === 0x00280010) geometry.rows = us(b, el);
      else if (el.tag === 0x00280011) geometry.columns = us(b, el);
      else if (el.tag === 0x00280002) geometry.samples = us(b, el);
      else if (el.tag === 0x00280100) geometry.bits = us(b, el);
      else if (el.tag === 0x00280008) geometry.frames = is(b, el);
      else if (el.tag === 0x00080016) sopClass = b.toString('latin1', el.value, el.value + el.length).replace(/[\0 ]+$/, '');
      off = skipValue(b, el, implicit, 0);
    }
    return { off };
  };
  try {
    let r: { pixel?: Element; off: number };
    try {
      r = walk(buf, meta.datasetStart, buf.length);
      if (!r.pixel && buf.length < total) throw new Malformed('header longer than the part read');
    } catch (e) {
      // The header did not fit in the part read: walk the whole object (rare: huge headers or no pixel data).
      if (!(e instanceof Malformed || e instanceof RangeError) || buf.length >= total) throw e;
      buf = readAt(0, total);
      r = walk(buf, meta.datasetStart, total);
    }
    if (!r.pixel) {
      if (r.off !== total) return `the data ends at byte ${total}, inside an element that starts at ${r.off}`;
      // An image (Rows present) without pixel data is an object cut just before its pixels.
      return geometry.rows || isImageSopClass(sopClass) ? 'the image has no Pixel Data (the object ends before its pixels)' : undefined;
    }
    const px = r.pixel;
    let after: number;
    if (px.length !== UNDEFINED) {
      after = px.value + px.length;
      if (after > total) return `Pixel Data is cut: ${total - px.value} of its ${px.length} bytes received`;
      const { rows, columns, samples = 1, bits, frames = 1 } = geometry;
      if (px.tag === PIXEL_DATA && rows && columns && bits) {
        const expected = Math.ceil((rows * columns * samples * frames * bits) / 8);
        if (px.length < expected) return `Pixel Data holds ${px.length} bytes; ${rows} rows × ${columns} columns × ${samples} samples × ${frames} frames × ${bits} bits need ${expected}`;
      }
    } else {
      // Encapsulated: items (offset table, fragments) up to the sequence delimiter.
      let off = px.value;
      let items = 0;
      for (;;) {
        if (off + 8 > total) return `encapsulated Pixel Data is cut after ${items} items (no sequence delimiter)`;
        const h = readAt(off, 8);
        const tag = ((h.readUInt16LE(0) << 16) | h.readUInt16LE(2)) >>> 0;
        const length = h.readUInt32LE(4);
        if (tag === SEQUENCE_END) {
          after = off + 8;
          break;
        }
        if (tag !== ITEM || length === UNDEFINED) return `encapsulated Pixel Data: item ${items} at offset ${off} is not a fragment (${hex(tag)})`;
        if (off + 8 + length > total) return `encapsulated Pixel Data: fragment ${items} is cut (${length} bytes declared, ${total - off - 8} received)`;
        off += 8 + length;
        items++;
      }
      if (items < 2) return 'encapsulated Pixel Data has no fragment';
    }
    if (after === total) return undefined;
    // Elements after Pixel Data (trailing padding, rarely others): they too must end with the data.
    const rest = readAt(after, total - after);
    const end = walk(rest, 0, rest.length);
    return end.pixel || end.off !== rest.length ? `the data after Pixel Data is not whole` : undefined;
  } catch (e) {
    if (e instanceof Malformed) return e.message ? `malformed data set: ${e.message}` : 'malformed data set: an element runs past the end of the data';
    if (e instanceof RangeError) return 'malformed data set: an element runs past the end of the data';
    throw e;
  }
}
