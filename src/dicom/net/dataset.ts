import { open, readFile } from 'node:fs/promises';
import dcmjs from 'dcmjs';
import { fileMetaHeader, parseHeader, type DicomJson } from '../part10.js';
import { fileMetaValues } from '../element-walk.js';

const { DicomDict, DicomMessage } = dcmjs.data;

/** A data set received in `transferSyntax` (no meta group) → DICOM JSON, through dcmjs' public Part 10 reader. */
export function decodeDataset(bytes: Buffer, transferSyntax: string): DicomJson {
  const framed = Buffer.concat([fileMetaHeader({ sopClassUid: '1.2.3', sopInstanceUid: '1.2.3', transferSyntaxUid: transferSyntax }), bytes]);
  return parseHeader(framed, true).dataset;
}

/** DICOM JSON → data set bytes in `transferSyntax` (no meta group), for identifiers and small data sets. */
export function encodeDataset(json: DicomJson, transferSyntax: string): Buffer {
  const meta = {
    '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] },
    '00020002': { vr: 'UI', Value: ['1.2.3'] },
    '00020003': { vr: 'UI', Value: ['1.2.3'] },
    '00020010': { vr: 'UI', Value: [transferSyntax] },
    '00020012': { vr: 'UI', Value: ['1.2.3'] },
  };
  const dict = new DicomDict(meta);
  const body: Record<string, unknown> = {};
  for (const [tag, el] of Object.entries(json)) {
    if (el.BulkDataURI) continue;
    if (el.InlineBinary) body[tag] = { vr: el.vr, Value: [Uint8Array.from(Buffer.from(el.InlineBinary, 'base64')).buffer] };
    else if (el.vr === 'SQ') body[tag] = { vr: 'SQ', Value: (el.Value ?? []).map((item) => denull(item as DicomJson)) };
    else body[tag] = { vr: el.vr, Value: (el.Value ?? []).map((v) => (v === null ? '' : v)) };
  }
  dict.dict = body;
  return stripMeta(Buffer.from(dict.write()));
}

function denull(item: DicomJson): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [tag, el] of Object.entries(item)) out[tag] = el.vr === 'SQ' ? { vr: 'SQ', Value: (el.Value ?? []).map((i) => denull(i as DicomJson)) } : { vr: el.vr, Value: (el.Value ?? []).map((v) => (v === null ? '' : v)) };
  return out;
}

/** The data set of a Part 10 buffer (after the File Meta Information group). */
export function stripMeta(part10: Buffer): Buffer {
  return part10.subarray(datasetOffset(part10));
}

function datasetOffset(head: Buffer): number {
  if (head.length < 144 || head.toString('ascii', 128, 132) !== 'DICM') throw new Error('not a DICOM Part 10 file');
  // (0002,0000) UL is always first and explicit little endian (PS3.10 7.1).
  if (head.readUInt16LE(132) !== 0x0002 || head.readUInt16LE(134) !== 0x0000) throw new Error('File Meta Information Group Length missing');
  return 144 + head.readUInt32LE(140);
}

export interface Part10Info {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** Byte offset of the data set in the file. */
  datasetOffset: number;
}

/** Reads only the File Meta Information of a Part 10 file. */
export async function readPart10Info(path: string): Promise<Part10Info> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(144);
    await fh.read(head, 0, 144, 0);
    const offset = datasetOffset(head);
    const meta = Buffer.alloc(offset);
    await fh.read(meta, 0, offset, 0);
    return part10Info(meta, path);
  } finally {
    await fh.close();
  }
}

/** The File Meta Information of Part 10 bytes (the meta group at least); `name` only labels errors. */
export function part10Info(part10: Buffer, name = 'instance'): Part10Info {
  const offset = datasetOffset(part10);
  if (part10.length < offset) throw new Error(`${name}: truncated File Meta Information`);
  const values = fileMetaValues(part10.subarray(0, offset))?.values ?? new Map<number, string>();
  const info = { sopClassUid: values.get(0x0002) ?? '', sopInstanceUid: values.get(0x0003) ?? '', transferSyntaxUid: values.get(0x0010) ?? '', datasetOffset: offset };
  if (!info.sopClassUid || !info.sopInstanceUid || !info.transferSyntaxUid) throw new Error(`${name}: File Meta Information lacks SOP Class, SOP Instance or Transfer Syntax UID`);
  return info;
}

const NATIVE_LE = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']);

/**
 * Re-encodes a Part 10 file's data set between the two little-endian native syntaxes, for a peer that accepted
 * only the other one. Compressed data cannot be converted here (no transcoder) and is reported as such.
 */
export async function convertDataset(source: string | Buffer, from: string, to: string): Promise<Buffer> {
  if (!NATIVE_LE.has(from) || !NATIVE_LE.has(to)) throw new Error(`cannot convert from transfer syntax ${from} to ${to} (no transcoder)`);
  const buf = typeof source === 'string' ? await readFile(source) : source;
  const dict = DicomMessage.readFile(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  dict.meta['00020010'] = { vr: 'UI', Value: [to] };
  return stripMeta(Buffer.from(dict.write()));
}
