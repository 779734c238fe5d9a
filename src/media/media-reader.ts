import { open, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import dcmjs from 'dcmjs';
import { arr, parseXml, text } from '../xds/xml.js';

export interface MediaContent {
  /** How the content was recognised: a DICOMDIR (PS3.10 media), an IHE XDM package, or a plain folder. */
  kind: 'dicomdir' | 'xdm' | 'folder';
  /** DICOM files to import. */
  files: string[];
  /** Files that are not DICOM or that the DICOMDIR references but are missing, with the reason. */
  problems: Array<{ file: string; reason: string }>;
  /** XDM: the documents listed in the submission set metadata (the CDA report, the KOS…). */
  documents?: Array<{ uri: string; mimeType: string }>;
}

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(p);
    else if (entry.isFile()) yield p;
  }
}

async function isPart10(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(132);
    const { bytesRead } = await fh.read(buf, 0, 132, 0);
    return bytesRead === 132 && buf.toString('ascii', 128, 132) === 'DICM';
  } finally {
    await fh.close();
  }
}

/** A path of the media, found whatever the case (CD file systems are upper case, zips from Windows mixed). */
async function resolveCaseInsensitive(root: string, parts: string[]): Promise<string | undefined> {
  let dir = root;
  for (const part of parts) {
    const entries = await readdir(dir).catch(() => [] as string[]);
    const hit = entries.find((e) => e === part) ?? entries.find((e) => e.toUpperCase() === part.toUpperCase());
    if (!hit) return undefined;
    dir = path.join(dir, hit);
  }
  return dir;
}

/**
 * What a patient's CD, DVD, USB key or archive holds: with a DICOMDIR at its root, the files its directory
 * records reference (PS3.10 / PS3.3 F.3, Referenced File ID); inside an IHE XDM package (IHE_XDM/SUBSETn with
 * METADATA.XML), every DICOM file of the package; otherwise every DICOM Part 10 file under the folder. Whatever
 * is not DICOM is listed as a problem, never fatal.
 */
export async function readMedia(root: string): Promise<MediaContent> {
  const problems: MediaContent['problems'] = [];
  const rel = (f: string) => path.relative(root, f);
  const dicomdir = await resolveCaseInsensitive(root, ['DICOMDIR']);
  const xdm = await resolveCaseInsensitive(root, ['IHE_XDM']);
  let documents: MediaContent['documents'];
  if (xdm) {
    documents = [];
    for await (const f of walk(xdm)) {
      if (path.basename(f).toUpperCase() !== 'METADATA.XML') continue;
      try {
        documents.push(...xdmDocuments(await readFile(f, 'utf8')));
      } catch (e) {
        problems.push({ file: rel(f), reason: `XDM metadata unreadable: ${(e as Error).message}` });
      }
    }
  }
  if (dicomdir && !xdm) {
    const files: string[] = [];
    try {
      const buf = await readFile(dicomdir);
      const ds = dcmjs.data.DicomMessage.readFile(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer).dict as Record<string, { Value?: any[] }>;
      for (const rec of ds['00041220']?.Value ?? []) {
        const ref = rec['00041500']?.Value as string[] | undefined;
        if (!ref?.length) continue;
        const parts = ref.flatMap((p) => String(p).split('\\')).filter(Boolean);
        if (parts.some((p) => p === '..' || p.includes('/'))) {
          problems.push({ file: parts.join('/'), reason: 'DICOMDIR references a path outside the media: ignored' });
          continue;
        }
        const file = await resolveCaseInsensitive(root, parts);
        if (!file) problems.push({ file: parts.join('/'), reason: 'referenced by the DICOMDIR but missing from the media' });
        else files.push(file);
      }
      return { kind: 'dicomdir', files, problems };
    } catch (e) {
      problems.push({ file: 'DICOMDIR', reason: `unreadable DICOMDIR (${(e as Error).message}): the folder is read file by file` });
    }
  }
  const files: string[] = [];
  for await (const f of walk(root)) {
    const base = path.basename(f).toUpperCase();
    if (base === 'DICOMDIR') continue;
    if (await isPart10(f).catch(() => false)) files.push(f);
    else if (!(xdm && /\.(XML|XSL|HTM|HTML|TXT|PDF|XSD|CSS|JS)$/.test(base))) problems.push({ file: rel(f), reason: 'not a DICOM file' });
  }
  return { kind: xdm ? 'xdm' : 'folder', files, problems, documents };
}

/** The documents of an XDM submission set (ebRIM ExtrinsicObjects: URI slot and mimeType), read with the
 * hardened XML parser (no DTD, no entities, bounded size and depth). */
export function xdmDocuments(xml: string): Array<{ uri: string; mimeType: string }> {
  const doc = parseXml(xml, { maxBytes: 16 * 1024 * 1024 });
  const out: Array<{ uri: string; mimeType: string }> = [];
  const visit = (node: unknown, depth: number) => {
    if (!node || typeof node !== 'object' || depth > 64) return;
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      for (const item of Array.isArray(v) ? v : [v]) {
        if (k === 'ExtrinsicObject' && item && typeof item === 'object') {
          const eo = item as Record<string, any>;
          const uriSlot = arr<Record<string, any>>(eo.Slot).find((sl) => sl['@_name'] === 'URI');
          const values = arr(uriSlot?.ValueList?.Value).map((x) => text(x));
          out.push({ uri: values.join(''), mimeType: String(eo['@_mimeType'] ?? '') });
        }
        visit(item, depth + 1);
      }
    }
  };
  visit(doc, 0);
  return out;
}
