/**
 * Walks the top level of a Part 10 file's data set without decoding values, to find where Pixel Data starts.
 * The header before it is small and the pixel data after it is most of the file: code that changes header
 * attributes (patient identity) re-encodes only the header and copies the rest byte for byte, instead of
 * decoding and re-encoding megabytes of pixels it does not touch.
 *
 * Only the little-endian syntaxes are walked (implicit, explicit, and every encapsulated one); deflated and
 * big-endian files, and anything malformed, give `undefined` and callers take their general path.
 */
const IMPLICIT_LE = '1.2.840.10008.1.2';
const BIG_ENDIAN = '1.2.840.10008.1.2.2';
const DEFLATED = new Set(['1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.8.1']);
/** VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_END = 0xfffee00d;
const SEQUENCE_END = 0xfffee0dd;
const PIXEL_DATA = 0x7fe00010;
const MAX_DEPTH = 64;

class Malformed extends Error {}

interface Element {
  tag: number;
  vr?: string;
  length: number;
  /** Offset of the value. */
  value: number;
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

/** The transfer syntax named in the File Meta Information, and where the data set starts. */
function metaOf(buf: Buffer): { transferSyntax: string; datasetStart: number } {
  if (buf.length < 144 || buf.toString('latin1', 128, 132) !== 'DICM') throw new Malformed();
  let off = 132;
  let transferSyntax = '';
  while (off + 8 <= buf.length && buf.readUInt16LE(off) === 0x0002) {
    const el = readElement(buf, off, false);
    if (el.length === UNDEFINED) throw new Malformed();
    if (el.tag === 0x00020010) transferSyntax = buf.toString('latin1', el.value, el.value + el.length).replace(/[\0 ]+$/, '');
    off = el.value + el.length;
  }
  if (!transferSyntax) throw new Malformed();
  return { transferSyntax, datasetStart: off };
}

/**
 * Offset of the top-level Pixel Data element (its tag's first byte) in a Part 10 file; `undefined` when the file
 * has none, is not walked here (deflated, big endian) or is malformed.
 */
export function pixelDataOffset(part10: Buffer): number | undefined {
  try {
    const { transferSyntax, datasetStart } = metaOf(part10);
    if (transferSyntax === BIG_ENDIAN || DEFLATED.has(transferSyntax)) return undefined;
    const implicit = transferSyntax === IMPLICIT_LE;
    let off = datasetStart;
    let last = -1;
    while (off + 8 <= part10.length) {
      const el = readElement(part10, off, implicit);
      // Tags ascend at the top level; a file that says otherwise is left to the general path.
      if (el.tag <= last) return undefined;
      last = el.tag;
      if (el.tag === PIXEL_DATA) return off;
      if (el.tag > PIXEL_DATA) return undefined;
      off = skipValue(part10, el, implicit, 0);
    }
    return undefined;
  } catch (e) {
    if (e instanceof Malformed || e instanceof RangeError) return undefined;
    throw e;
  }
}
