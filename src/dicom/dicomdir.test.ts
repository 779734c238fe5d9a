import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import dcmjs from 'dcmjs';
import { buildDicomdir, type DirectoryInstance } from './dicomdir.js';
import { readMedia } from '../media/media-reader.js';

const inst = (series: string, n: number): DirectoryInstance => ({
  fileId: ['DICOM', `S${series}`, `I${n}`],
  patientId: 'P1',
  patientName: 'LÉVÊQUE^HÉLÈNE',
  studyUid: '1.2.3',
  studyDate: '20261203',
  studyTime: '101500',
  studyId: '1',
  accessionNumber: 'A1',
  studyDescription: 'SCANNER THORAX',
  seriesUid: `1.2.3.${series}`,
  modality: 'CT',
  seriesNumber: series,
  sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
  sopUid: `1.2.3.${series}.${n}`,
  transferSyntaxUid: '1.2.840.10008.1.2.1',
  instanceNumber: String(n),
});

test('DICOMDIR: records linked by offsets (patient → study → series → images), read back by dcmjs and by the media reader', async () => {
  const list = [inst('1', 1), inst('1', 2), inst('2', 3)];
  const buf = buildDicomdir(list);
  const ds = dcmjs.data.DicomMessage.readFile(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer);
  assert.equal(ds.meta['00020002'].Value[0], '1.2.840.10008.1.3.10');
  const records = ds.dict['00041220'].Value as Array<Record<string, { Value: unknown[] }>>;
  assert.deepEqual(records.map((r) => r['00041430']!.Value[0]), ['PATIENT', 'STUDY', 'SERIES', 'IMAGE', 'IMAGE', 'SERIES', 'IMAGE']);
  // Offsets: each points at the start (item tag FFFE,E000) of the record it names.
  const at = (offset: number) => buf.readUInt16LE(offset) === 0xfffe && buf.readUInt16LE(offset + 2) === 0xe000;
  const first = ds.dict['00041200'].Value[0] as number;
  assert.ok(at(first));
  const series1 = records[2]!;
  const next = series1['00041400']!.Value[0] as number;
  const lower = series1['00041420']!.Value[0] as number;
  assert.ok(at(next) && at(lower) && lower < next);
  assert.equal(records[0]!['00100010']!.Value[0] && JSON.stringify(records[0]!['00100010']!.Value[0]).includes('LÉVÊQUE'), true);
  assert.deepEqual(records[3]!['00041500']!.Value, ['DICOM', 'S1', 'I1']);
  // The media reader follows the Referenced File IDs to the files.
  const root = mkdtempSync(path.join(tmpdir(), 'dicomdir-'));
  try {
    writeFileSync(path.join(root, 'DICOMDIR'), buf);
    for (const i of list) {
      mkdirSync(path.join(root, ...i.fileId.slice(0, -1)), { recursive: true });
      writeFileSync(path.join(root, ...i.fileId), 'x');
    }
    const media = await readMedia(root);
    assert.equal(media.kind, 'dicomdir');
    assert.equal(media.files.length, 3);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
