import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dcmjs from 'dcmjs';
import { generateStudy } from '../../test/harness/gen-study.js';
import { even, implicitElement, item, le16, le32, tagBytes, undefinedSq } from '../../test/harness/raw-dataset.js';
import { pixelDataOffset, wholenessProblem } from './element-walk.js';
import { explicitElement, fileMetaHeader, parseHeader, str } from './part10.js';
import { rewritePatient, rewriteWhole } from './patient-rewrite.js';

const text = (s: string) => even(s);
const uid = (s: string) => even(s, '\0');

/** Explicit VR little endian with what trips naive walkers: nested sequences of undefined length, an UN of undefined length (implicit inside), encapsulated pixel data. */
function awkwardExplicit(opts: { unSequence?: boolean } = { unSequence: true }): { file: Buffer; cut: number; tail: Buffer } {
  const meta = fileMetaHeader({ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: '1.2.3.4.5', transferSyntaxUid: '1.2.840.10008.1.2.4.50' });
  const inner = undefinedSq(0x00081115, 'SQ', [item(explicitElement(0x00081150, 'UI', uid('1.2.3')), true)]);
  const head = Buffer.concat([
    explicitElement(0x00080016, 'UI', uid('1.2.840.10008.5.1.4.1.1.2')),
    explicitElement(0x00080018, 'UI', uid('1.2.3.4.5')),
    undefinedSq(0x00081110, 'SQ', [item(Buffer.concat([explicitElement(0x00081150, 'UI', uid('1.2.9')), inner]), true), item(explicitElement(0x00081155, 'UI', uid('1.2.10')), false)]),
    explicitElement(0x00100010, 'PN', text('DOE^JANE')),
    explicitElement(0x00100020, 'LO', text('IPP-1')),
    ...(opts.unSequence ? [undefinedSq(0x00191010, 'UN', [item(implicitElement(0x00191011, text('PRIVATE')), true)])] : []),
    explicitElement(0x0020000d, 'UI', uid('1.2.3')),
    explicitElement(0x0020000e, 'UI', uid('1.2.3.1')),
  ]);
  const frame = Buffer.from([0xff, 0xd8, 1, 2, 3, 4, 0xff, 0xd9]);
  const tail = Buffer.concat([tagBytes(0x7fe00010), Buffer.from('OB'), le16(0), le32(0xffffffff), item(Buffer.alloc(0), false), item(frame, false), tagBytes(0xfffee0dd), le32(0)]);
  return { file: Buffer.concat([meta, head, tail]), cut: meta.length + head.length, tail };
}

test('finds top-level Pixel Data past nested and undefined-length sequences, UN sequences and encapsulated data', () => {
  const { file, cut } = awkwardExplicit();
  assert.equal(pixelDataOffset(file), cut);
});

test('finds Pixel Data in implicit VR little endian (dcmjs-written, with a sequence) and in a generated CT', () => {
  const meta = { '00020001': { vr: 'OB', Value: [new Uint8Array([0, 1]).buffer] }, '00020002': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.7'] }, '00020003': { vr: 'UI', Value: ['1.2.3.4'] }, '00020010': { vr: 'UI', Value: ['1.2.840.10008.1.2'] }, '00020012': { vr: 'UI', Value: ['1.2.3'] } };
  const dict = new dcmjs.data.DicomDict(meta);
  const pixels = new Uint16Array(16).fill(0x7fe0);
  dict.dict = {
    '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.7'] },
    '00080018': { vr: 'UI', Value: ['1.2.3.4'] },
    '00081110': { vr: 'SQ', Value: [{ '00081150': { vr: 'UI', Value: ['1.2.5'] }, '00081155': { vr: 'UI', Value: ['1.2.6'] } }] },
    '00100020': { vr: 'LO', Value: ['IPP-IMPLICIT'] },
    '00280010': { vr: 'US', Value: [4] },
    '00280011': { vr: 'US', Value: [4] },
    '7FE00010': { vr: 'OW', Value: [pixels.buffer] },
  };
  const file = Buffer.from(dict.write());
  const cut = pixelDataOffset(file)!;
  assert.ok(cut !== undefined);
  assert.deepEqual([...file.subarray(cut, cut + 4)], [0xe0, 0x7f, 0x10, 0x00]);
  assert.deepEqual(parseHeader(file.subarray(0, cut), true).dataset, parseHeader(file, true).dataset);

  const dir = mkdtempSync(path.join(tmpdir(), 'walk-'));
  try {
    const ct = readFileSync(generateStudy({ out: dir, series: 1, slices: 1, rows: 64, cols: 64 }).files[0]!);
    const at = pixelDataOffset(ct)!;
    assert.equal(ct.length - at, 12 + 64 * 64 * 2, 'the tail is the Pixel Data element, header and value');
    assert.deepEqual(parseHeader(ct.subarray(0, at), true).dataset, parseHeader(ct, true).dataset);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the header-only rewrite changes the identity and keeps pixel data byte for byte', () => {
  // Without the UN sequence: dcmjs itself cannot read an UN of undefined length ("Finding view is past end of input").
  const { file, tail } = awkwardExplicit({ unSequence: false });
  const target = { patientId: 'IPP-B-9', issuer: 'CABINET-B' };
  const fast = rewritePatient(file, target, [{ patientId: '280067512345690', issuer: 'INS' }], { InstitutionName: 'EXTERNE' });
  const h = parseHeader(fast, true);
  assert.equal(str(h.dataset, '00100020'), 'IPP-B-9');
  assert.equal(str(h.dataset, '00080080'), 'EXTERNE');
  assert.equal(((h.dataset['00101002']?.Value ?? []) as unknown[]).length, 2);
  assert.deepEqual(fast.subarray(fast.length - tail.length), tail, 'encapsulated pixel data copied as is');
  assert.equal(h.transferSyntaxUid, '1.2.840.10008.1.2.4.50');
  assert.equal(pixelDataOffset(fast), fast.length - tail.length, 'the rewritten file is walkable again');
});

test('malformed, truncated, deflated or big-endian input gives undefined, never a throw', () => {
  const { file } = awkwardExplicit();
  for (let n = 0; n < file.length; n += 3) assert.doesNotThrow(() => pixelDataOffset(file.subarray(0, n)));
  for (let n = 150; n < file.length - 40; n += 5) assert.equal(pixelDataOffset(file.subarray(0, n)), undefined, `cut at ${n}`);
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) / 65536;
  for (let i = 0; i < 5000; i++) {
    const m = Buffer.from(file);
    for (let k = 0; k < 4; k++) m[132 + Math.floor(rnd() * (m.length - 132))] = Math.floor(rnd() * 256);
    const r = pixelDataOffset(m);
    assert.ok(r === undefined || (r > 132 && r < m.length), String(r));
  }
  for (const ts of ['1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2']) {
    const meta = fileMetaHeader({ sopClassUid: '1.2.3', sopInstanceUid: '1.2.3', transferSyntaxUid: ts });
    assert.equal(pixelDataOffset(Buffer.concat([meta, tagBytes(0x7fe00010), Buffer.from('OW'), le16(0), le32(2), Buffer.alloc(2)])), undefined, ts);
  }
  assert.equal(pixelDataOffset(Buffer.from('not dicom at all')), undefined);
});

test('the byte-splice rewrite gives the same data set as dcmjs decoding and re-encoding the whole file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'walk-'));
  try {
    const study = generateStudy({ out: dir, series: 1, slices: 1, rows: 32, cols: 32, patientId: 'IPP-A-7', issuer: 'CHU-A', ins: '280067512345690' });
    const inputs = [readFileSync(study.files[0]!), awkwardExplicit({ unSequence: false }).file];
    for (const input of inputs) {
      for (const [target, keep, set] of [
        [{ patientId: 'IPP-B-55', issuer: 'CABINET-B' }, [{ patientId: '280067512345690', issuer: 'ASIP-SANTE-INS-NIR' }], { InstitutionName: 'EXTERNE', StationName: 'DRIMBOX' }],
        [{ patientId: 'IPP-A-7', issuer: 'CHU-A' }, [], {}],
        [{ patientId: 'ODD', issuer: '' }, [{ patientId: 'IPP-A-7', issuer: 'CHU-A' }], { InstitutionalDepartmentName: 'Radiologie' }],
      ] as const) {
        const fast = rewritePatient(input, target, [...keep], set);
        const slow = rewriteWhole(input, target, [...keep], set);
        const a = parseHeader(fast, true);
        const b = parseHeader(slow, true);
        assert.deepEqual(a.dataset, b.dataset);
        assert.equal(a.transferSyntaxUid, b.transferSyntaxUid);
        assert.ok(fast.length % 2 === 0);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('values outside the file character set go through dcmjs; Latin-1 files take accented values in place', () => {
  const { file } = awkwardExplicit({ unSequence: false });
  const out = rewritePatient(file, { patientId: 'X', issuer: 'Y' }, [], { InstitutionName: 'Hôpital Nord' });
  assert.equal(str(parseHeader(out, true).dataset, '00100020'), 'X');
  const latin = Buffer.concat([file.subarray(0, 132 + 12 + file.readUInt32LE(140)), explicitElement(0x00080005, 'CS', text('ISO_IR 100')), file.subarray(132 + 12 + file.readUInt32LE(140))]);
  const fast = rewritePatient(latin, { patientId: 'X', issuer: 'Y' }, [], { InstitutionName: 'Hôpital Nord' });
  assert.ok(fast.includes(Buffer.from('H\xf4pital Nord', 'latin1')));
  assert.equal(str(parseHeader(fast, true).dataset, '00080080'), 'Hôpital Nord');
});

test('a sequence encoded as UN of undefined length (valid, unreadable by dcmjs) no longer makes an instance unreadable', () => {
  const { file } = awkwardExplicit({ unSequence: true });
  const h = parseHeader(file, true);
  assert.equal(str(h.dataset, '00100020'), 'IPP-1');
  assert.equal(str(h.dataset, '0020000D'), '1.2.3');
  assert.ok(h.dataset['00081110'], 'the sequences around it are read');
  assert.equal(h.dataset['00191010'], undefined, 'the UN sequence itself is left out of the parsed header');
  assert.equal(h.hasPixelData, true);
  // The splice rewrite keeps it byte for byte.
  const out = rewritePatient(file, { patientId: 'IPP-B', issuer: 'B' });
  assert.equal(str(parseHeader(out, true).dataset, '00100020'), 'IPP-B');
  assert.ok(out.includes(Buffer.from('PRIVATE ')), 'the UN sequence is still in the file');
});

test('whole objects pass the wholeness check; every cut, and every bad length, is found without reading the pixels', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'whole-'));
  try {
    const ct = readFileSync(generateStudy({ out: dir, modality: 'CT', series: 1, slices: 1, rows: 32, cols: 32 }).files[0]!);
    const { file: jpeg } = awkwardExplicit();
    const check = (f: Buffer, prefix = 1024) => wholenessProblem(f.subarray(0, Math.min(prefix, f.length)), f.length, (o, n) => f.subarray(o, o + n));
    assert.equal(check(ct), undefined);
    assert.equal(check(ct, ct.length), undefined);
    assert.equal(check(jpeg), undefined);
    for (const f of [ct, jpeg]) {
      // Every cut past the File Meta Information.
      for (let cut = 140; cut < f.length; cut += 7) assert.ok(check(f.subarray(0, cut)), `cut at ${cut} of ${f.length} found`);
    }
    assert.match(check(ct.subarray(0, ct.length - 100))!, /Pixel Data is cut/);
    assert.match(check(jpeg.subarray(0, jpeg.length - 8))!, /no sequence delimiter/);
    // Pixel Data whose length does not cover the image (a file rewritten with a short, consistent length).
    const px = pixelDataOffset(ct)!;
    const short = Buffer.concat([ct.subarray(0, px + 8), le32(100), ct.subarray(px + 12, px + 12 + 100)]);
    assert.match(check(short)!, /need 2048/);
    // A header element whose length runs past the data.
    const bad = Buffer.from(ct);
    const nameAt = bad.indexOf(Buffer.from([0x10, 0x00, 0x10, 0x00]), 132);
    bad.writeUInt16LE(0xfff0, nameAt + 6);
    assert.ok(check(bad), 'a bad element length is found');
    assert.equal(check(Buffer.from('not dicom at all')), 'the File Meta Information is not readable');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
