import { readFile } from 'node:fs/promises';
import dcmjs from 'dcmjs';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { UNCOMPRESSED_SYNTAXES } from '../dicom/part10.js';
import { toNative } from '../dicom/transcode.js';

const { DicomMessage, DicomMetaDictionary } = dcmjs.data;

export class PixelError extends Error {
  override name = 'PixelError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface DecodedInstance {
  ds: Record<string, any>;
  transferSyntaxUid: string;
  frames: Buffer[];
}

/** Reads one instance and splits its Pixel Data into frames (native: by frame size; encapsulated: as dcmjs splits fragments). */
export async function readFrames(file: string, opts: { decode?: boolean } = {}): Promise<DecodedInstance> {
  let buf: Buffer = await readFile(file);
  if (opts.decode) {
    const meta = DicomMessage.readFile(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), { untilTag: '00080005', ignoreErrors: true }).meta;
    const stored = String(meta['00020010']?.Value?.[0] ?? '');
    if (stored && !UNCOMPRESSED_SYNTAXES.has(stored)) {
      try {
        buf = await toNative(buf);
      } catch (e) {
        throw new PixelError((e as Error).message, 406);
      }
    }
  }
  const dict = DicomMessage.readFile(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), { ignoreErrors: true });
  const ts: string = dict.meta['00020010']?.Value?.[0] ?? '1.2.840.10008.1.2';
  const ds = DicomMetaDictionary.naturalizeDataset(dict.dict);
  const pd = ds.PixelData;
  if (!pd) throw new PixelError('instance has no pixel data', 404);
  const values: ArrayBuffer[] = Array.isArray(pd) ? pd : [pd];
  const nFrames = Number(ds.NumberOfFrames ?? 1) || 1;
  if (UNCOMPRESSED_SYNTAXES.has(ts)) {
    const all = Buffer.concat(values.map((v) => Buffer.from(v)));
    const frameSize = (Number(ds.Rows) * Number(ds.Columns) * Number(ds.SamplesPerPixel ?? 1) * Number(ds.BitsAllocated)) / 8;
    if (!frameSize || all.length < frameSize * nFrames) throw new PixelError('pixel data shorter than its declared geometry', 500);
    const frames: Buffer[] = [];
    for (let i = 0; i < nFrames; i++) frames.push(all.subarray(i * frameSize, (i + 1) * frameSize));
    return { ds, transferSyntaxUid: ts, frames };
  }
  return { ds, transferSyntaxUid: ts, frames: values.map((v) => Buffer.from(v)) };
}

export interface RenderOptions {
  format: 'jpeg' | 'png';
  window?: { center: number; width: number };
  /** Largest width/height of the result (thumbnails); the image keeps its aspect ratio. */
  maxSize?: number;
  quality?: number;
}

function first(v: unknown): number | undefined {
  const x = Array.isArray(v) ? v[0] : v;
  const n = Number(x);
  return Number.isFinite(n) ? n : undefined;
}

/** Renders a native grayscale or RGB frame to JPEG/PNG, with the modality LUT and a linear VOI window (PS3.3 C.11). */
export function renderFrame(inst: DecodedInstance, frameIndex: number, opts: RenderOptions): Buffer {
  const { ds } = inst;
  if (!UNCOMPRESSED_SYNTAXES.has(inst.transferSyntaxUid)) throw new PixelError(`rendering needs decoded pixel data (stored as ${inst.transferSyntaxUid})`, 500);
  const frame = inst.frames[frameIndex];
  if (!frame) throw new PixelError(`frame ${frameIndex + 1} does not exist (instance has ${inst.frames.length})`, 404);
  const rows = Number(ds.Rows);
  const cols = Number(ds.Columns);
  const spp = Number(ds.SamplesPerPixel ?? 1);
  const bits = Number(ds.BitsAllocated);
  const signed = Number(ds.PixelRepresentation ?? 0) === 1;
  const slope = first(ds.RescaleSlope) ?? 1;
  const intercept = first(ds.RescaleIntercept) ?? 0;
  const photometric = String(ds.PhotometricInterpretation ?? 'MONOCHROME2').trim();
  const step = opts.maxSize ? Math.max(1, Math.ceil(Math.max(rows, cols) / opts.maxSize)) : 1;
  const outRows = Math.ceil(rows / step);
  const outCols = Math.ceil(cols / step);
  const rgba = Buffer.alloc(outRows * outCols * 4);
  if (spp === 3 && bits === 8) {
    const planar = Number(ds.PlanarConfiguration ?? 0) === 1;
    for (let y = 0, o = 0; y < outRows; y++) {
      for (let x = 0; x < outCols; x++, o += 4) {
        const p = y * step * cols + x * step;
        for (let c = 0; c < 3; c++) rgba[o + c] = planar ? frame[c * rows * cols + p]! : frame[p * 3 + c]!;
        rgba[o + 3] = 255;
      }
    }
  } else if (spp === 1 && (bits === 8 || bits === 16)) {
    const read = (i: number) => (bits === 8 ? frame[i]! : signed ? frame.readInt16LE(i * 2) : frame.readUInt16LE(i * 2));
    let center = opts.window?.center ?? first(ds.WindowCenter);
    let width = opts.window?.width ?? first(ds.WindowWidth);
    if (center === undefined || width === undefined || width <= 0) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = 0; i < rows * cols; i += step) {
        const v = read(i) * slope + intercept;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      center = (lo + hi) / 2;
      width = Math.max(1, hi - lo);
    }
    const low = center - 0.5 - (width - 1) / 2;
    const range = Math.max(1, width - 1);
    const invert = photometric === 'MONOCHROME1';
    for (let y = 0, o = 0; y < outRows; y++) {
      for (let x = 0; x < outCols; x++, o += 4) {
        const v = read(y * step * cols + x * step) * slope + intercept;
        let g = Math.round(((v - low) / range) * 255);
        g = g < 0 ? 0 : g > 255 ? 255 : g;
        if (invert) g = 255 - g;
        rgba[o] = rgba[o + 1] = rgba[o + 2] = g;
        rgba[o + 3] = 255;
      }
    }
  } else {
    throw new PixelError(`rendering of ${spp}-sample, ${bits}-bit images is not supported`, 406);
  }
  if (opts.format === 'png') {
    const png = new PNG({ width: outCols, height: outRows });
    rgba.copy(png.data);
    return PNG.sync.write(png);
  }
  return jpeg.encode({ data: rgba, width: outCols, height: outRows }, opts.quality ?? 90).data;
}

/** The value bytes of one top-level binary element (for BulkDataURIs other than Pixel Data). */
export async function readElementBytes(file: string, tag: string): Promise<Buffer | undefined> {
  const buf = await readFile(file);
  const dict = DicomMessage.readFile(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength), { ignoreErrors: true, untilTag: '7FE00010' });
  const el = dict.dict[tag];
  if (!el || !Array.isArray(el.Value)) return undefined;
  const parts = el.Value.filter((v: unknown) => v instanceof ArrayBuffer || ArrayBuffer.isView(v)).map((v: ArrayBuffer) => Buffer.from(v));
  return parts.length ? Buffer.concat(parts) : undefined;
}
