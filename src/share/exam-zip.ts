import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import yazl from 'yazl';
import { buildDicomdir, type DirectoryInstance } from '../dicom/dicomdir.js';
import { parseHeader, str } from '../dicom/part10.js';
import type { BlobStore } from '../store/blobs.js';
import type { StoredInstance } from '../store/study-index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const VIEWER = () => readFileSync(path.join(here, 'offline-viewer.html'));
const README = `Examen d'imagerie / Imaging exam

Ce dossier suit la norme DICOM (PS3.10) : tout logiciel DICOM l'ouvre par le fichier DICOMDIR.
Sans logiciel : decompressez l'archive, ouvrez VIEWER.HTM dans un navigateur et choisissez le dossier DICOM.

This folder follows DICOM PS3.10: any DICOM software opens it through the DICOMDIR file.
Without software: unzip, open VIEWER.HTM in a browser and choose the DICOM folder.
`;

async function headerOf(blobs: BlobStore, key: string): Promise<ReturnType<typeof parseHeader>['dataset']> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of blobs.read(key, { start: 0, end: 256 * 1024 - 1 })) {
    chunks.push(c as Buffer);
    n += (c as Buffer).length;
  }
  const buf = Buffer.concat(chunks, n);
  return parseHeader(buf, buf.length < 256 * 1024).dataset;
}

/**
 * An exam as a zip a patient can keep: the instances under DICOM/ with ISO 9660 names, a DICOMDIR indexing
 * them, an offline viewer (VIEWER.HTM) and a README. Instances are streamed from storage into the zip.
 */
export async function streamExamZip(instances: StoredInstance[], blobs: BlobStore): Promise<Readable> {
  const zip = new yazl.ZipFile();
  const entries: DirectoryInstance[] = [];
  const seriesNo = new Map<string, number>();
  let k = 0;
  for (const i of instances) {
    const ds = await headerOf(blobs, i.blobKey);
    if (!seriesNo.has(i.seriesUid)) seriesNo.set(i.seriesUid, seriesNo.size + 1);
    const fileId = ['DICOM', `S${String(seriesNo.get(i.seriesUid)).padStart(4, '0')}`, `I${String(++k).padStart(5, '0')}`];
    entries.push({
      fileId,
      patientId: str(ds, '00100020'),
      patientName: str(ds, '00100010'),
      studyUid: i.studyUid,
      studyDate: str(ds, '00080020'),
      studyTime: str(ds, '00080030'),
      studyId: str(ds, '00200010'),
      accessionNumber: str(ds, '00080050'),
      studyDescription: str(ds, '00081030'),
      seriesUid: i.seriesUid,
      modality: str(ds, '00080060'),
      seriesNumber: str(ds, '00200011'),
      sopClassUid: i.sopClassUid,
      sopUid: i.sopUid,
      transferSyntaxUid: i.transferSyntaxUid,
      instanceNumber: i.instanceNumber === null ? '' : String(i.instanceNumber),
    });
    // Opened only when the zip reaches the entry: an exam of thousands of images must not hold thousands of files open.
    const key = i.blobKey;
    zip.addReadStreamLazy(fileId.join('/'), { compress: false, size: i.size }, (cb) => cb(null, blobs.read(key)));
  }
  zip.addBuffer(buildDicomdir(entries), 'DICOMDIR', { compress: false });
  zip.addBuffer(VIEWER(), 'VIEWER.HTM');
  zip.addBuffer(Buffer.from(README), 'README.TXT');
  zip.end();
  const out = new PassThrough();
  zip.outputStream.pipe(out);
  return out;
}
