import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dcmjs from 'dcmjs';
import { decodeHeaderJson } from './header-json.js';
import { fileMetaHeader, parseHeaderWithDcmjs, type DicomJson } from './part10.js';
import { generateStudy } from '../../test/harness/gen-study.js';
import { even, implicitElement, item, le16, le32, tagBytes, undefinedSq } from '../../test/harness/raw-dataset.js';

const EXPLICIT = '1.2.840.10008.1.2.1';
const IMPLICIT = '1.2.840.10008.1.2';

/** A Part 10 file written by dcmjs from a naturalized data set, in the given transfer syntax. */
function part10(ds: Record<string, unknown>, ts: string): Buffer {
  const meta = { FileMetaInformationVersion: new Uint8Array([0, 1]).buffer, MediaStorageSOPClassUID: '1.2.840.10008.5.1.4.1.1.2', MediaStorageSOPInstanceUID: '1.2.3.4', TransferSyntaxUID: ts, ImplementationClassUID: '1.2.3.4.5' };
  const dict = new dcmjs.data.DicomDict(dcmjs.data.DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(ds);
  return Buffer.from(dict.write());
}

/** A file from hand-built data set bytes behind a File Meta Information group. */
function rawFile(dataset: Buffer, ts: string): Buffer {
  return Buffer.concat([fileMetaHeader({ sopClassUid: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUid: '1.2.3.4', transferSyntaxUid: ts }), dataset]);
}

const explicitShort = (tag: number, vr: string, value: Buffer) => Buffer.concat([tagBytes(tag), Buffer.from(vr, 'latin1'), le16(value.length), value]);

/** A deterministic generator, so a failing case can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

/**
 * Attributes of the VRs a header carries, with ASCII values (dcmjs decodes sequence items as Latin-1 whatever the
 * character set, so the comparison keeps to text both read alike).
 */
const POOL: Array<[string, unknown[]]> = [
  ['PatientName', ['DUPONT^MARIE', 'Yamada^Tarou=YAMADA^TAROU', 'A^B^C^D^E', 'SOLO']],
  ['PatientID', ['P0001', '12 34', 'X']],
  ['IssuerOfPatientID', ['HOSP_A', 'ASIP-SANTE-INS-NIR']],
  ['PatientBirthDate', ['19600101', '20240229']],
  ['PatientSex', ['F', 'M', 'O']],
  ['PatientAge', ['045Y', '003M']],
  ['StudyDate', ['20261120']],
  ['StudyTime', ['101010', '101010.123', '08']],
  ['AcquisitionDateTime', ['20261120101010.123456', '2026']],
  ['AccessionNumber', ['A0001', 'ACC_2%']],
  ['Modality', ['CT', 'MR']],
  ['ImageType', [['ORIGINAL', 'PRIMARY', 'AXIAL'], ['DERIVED', 'SECONDARY']]],
  ['StudyDescription', ['CT THORAX', 'IRM GENOU G']],
  ['StationName', ['CT01', 'SCANNER 2']],
  ['InstitutionAddress', ['1 RUE DE LA PAIX, PARIS']],
  ['ImageComments', ['line one\r\nline two', 'x']],
  ['RetrieveAETitle', ['ORTHANC', 'OPENDRIM']],
  ['RetrieveURL', ['http://pacs.example/dicom-web/studies/1.2.3']],
  ['SliceThickness', ['1.25', '5', '-0.5', '1e-3']],
  ['ImagePositionPatient', [['-250', '-250', '12.5'], ['0', '0', '0']]],
  ['WindowCenter', [['40', '400'], '40']],
  ['InstanceNumber', ['7', '-2', '+3']],
  ['PixelAspectRatio', [['1', '1']]],
  ['Rows', [512, 1, 65535]],
  ['Columns', [512, 256]],
  ['RecommendedDisplayFrameRateInFloat', [25.5, 0.1]],
  ['DiffusionBValue', [1000.25, 0]],
  ['ReferencePixelX0', [-12, 2147483647]],
  ['FrameIncrementPointer', [0x00181063, [0x00181063, 0x00181065]]],
  ['SOPClassUID', ['1.2.840.10008.5.1.4.1.1.2']],
  ['SOPInstanceUID', ['1.2.3.4.5.6.7', '2.25.1234567890123']],
  ['StudyInstanceUID', ['1.2.3', '1.2.840.113619.2.55.3']],
  [
    'ReferencedImageSequence',
    [
      [{ ReferencedSOPClassUID: '1.2.840.10008.5.1.4.1.1.2', ReferencedSOPInstanceUID: '1.2.3.9' }],
      [
        { ReferencedSOPClassUID: '1.2.840.10008.5.1.4.1.1.2', ReferencedSOPInstanceUID: '1.2.3.9' },
        { ReferencedSOPClassUID: '1.2.840.10008.5.1.4.1.1.4', ReferencedSOPInstanceUID: '1.2.3.10', ReferencedFrameNumber: ['1', '2'] },
      ],
    ],
  ],
  [
    'RequestAttributesSequence',
    [[{ RequestedProcedureID: 'RP1', ScheduledProcedureStepID: 'SPS1', ScheduledProtocolCodeSequence: [{ CodeValue: 'XR123', CodingSchemeDesignator: 'LN', CodeMeaning: 'CHEST PA' }] }]],
  ],
  ['OtherPatientIDsSequence', [[{ PatientID: '279035121518989', IssuerOfPatientID: 'ASIP-SANTE-INS-NIR', TypeOfPatientID: 'TEXT' }]]],
];

/**
 * dcmjs keeps the padding space of an odd-length DA, DT, AS or UR value ("20261120 " is not a date); that is
 * its mistake, not a difference to keep, so the reference drops it before the comparison.
 */
function withoutPadding(ds: DicomJson): DicomJson {
  const out: DicomJson = {};
  for (const [k, v] of Object.entries(ds)) {
    if (v.vr === 'SQ' && v.Value) out[k] = { ...v, Value: (v.Value as DicomJson[]).map(withoutPadding) };
    else if (['DA', 'DT', 'AS', 'UR'].includes(v.vr) && v.Value) out[k] = { ...v, Value: v.Value.map((x) => (typeof x === 'string' ? x.replace(/ +$/, '') : x)) };
    else out[k] = v;
  }
  return out;
}

test('decodes what dcmjs decodes, identically, for generated headers in explicit and implicit VR', () => {
  const random = rng(20261203);
  let compared = 0;
  for (let n = 0; n < 300; n++) {
    const ds: Record<string, unknown> = { SpecificCharacterSet: random() < 0.5 ? 'ISO_IR 192' : 'ISO_IR 100', SOPClassUID: '1.2.840.10008.5.1.4.1.1.2', SOPInstanceUID: `1.2.3.${n}` };
    for (const [name, values] of POOL) if (random() < 0.6) ds[name] = values[Math.floor(random() * values.length)];
    for (const ts of [EXPLICIT, IMPLICIT]) {
      const buf = part10(ds, ts);
      const ours = decodeHeaderJson(buf);
      assert.ok(ours, `case ${n} in ${ts} not decoded`);
      const reference = parseHeaderWithDcmjs(buf, true);
      assert.deepEqual({ dataset: ours.dataset, ts: ours.transferSyntaxUid, pixels: ours.hasPixelData }, { dataset: withoutPadding(reference.dataset), ts: reference.transferSyntaxUid, pixels: reference.hasPixelData }, `case ${n} in ${ts}`);
      compared++;
    }
  }
  assert.equal(compared, 600);
});

test('the generated studies of the benchmarks and interop tests decode as dcmjs decodes them, stopping at Pixel Data', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'hdr-'));
  try {
    for (const modality of ['CT', 'MR', 'CR'] as const) {
      const study = generateStudy({ out: dir, modality, slices: 2, rows: 64, patientName: 'Dupont^Hélène', ins: '279035121518989' });
      for (const f of study.files) {
        const buf = readFileSync(f);
        const ours = decodeHeaderJson(buf.subarray(0, 4096));
        assert.ok(ours?.hasPixelData);
        assert.deepEqual(ours.dataset, parseHeaderWithDcmjs(buf, true).dataset);
        assert.deepEqual(ours.dataset['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Dupont^Hélène' }] });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sequence items are decoded in the data set character set (dcmjs reads them as Latin-1)', () => {
  const ds = { SpecificCharacterSet: 'ISO_IR 192', SOPClassUID: '1.2.3', SOPInstanceUID: '1.2.3.4', PatientName: 'Hélène', ProcedureCodeSequence: [{ CodeValue: 'ZBQK002', CodingSchemeDesignator: 'CCAM', CodeMeaning: 'Scanner du thorax injecté' }] };
  const buf = part10(ds, EXPLICIT);
  const meaning = (d: Record<string, any>) => d['00081032'].Value[0]['00080104'].Value[0];
  assert.equal(meaning(decodeHeaderJson(buf)!.dataset), 'Scanner du thorax injecté');
  assert.equal(meaning(parseHeaderWithDcmjs(buf, true).dataset), 'Scanner du thorax injectÃ©');
  // Latin-1 (ISO_IR 100) bytes, at the top level and in an item.
  const latin = rawFile(
    Buffer.concat([
      explicitShort(0x00080005, 'CS', even('ISO_IR 100')),
      undefinedSq(0x00081032, 'SQ', [item(explicitShort(0x00080104, 'LO', even('Radiographie du genou gauche, 2 incidences, côté')), true)]),
      explicitShort(0x00100010, 'PN', even('MÜLLER^HÉLÈNE')),
    ]),
    EXPLICIT,
  );
  const d = decodeHeaderJson(latin)!.dataset;
  assert.deepEqual(d['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'MÜLLER^HÉLÈNE' }] });
  assert.equal(meaning(d), 'Radiographie du genou gauche, 2 incidences, côté');
  assert.deepEqual(d['00080005'], { vr: 'CS', Value: ['ISO_IR 192'] }, 'strings are Unicode in the JSON model');
});

test('code extensions (ISO 2022): the Japanese, Korean and Chinese person names of PS3.5 Annexes H, I and K', () => {
  const esc = (s: string) => Buffer.from(s.replace(/\\e/g, '\x1b'), 'latin1');
  const file = (charset: string, pn: Buffer) =>
    rawFile(Buffer.concat([explicitShort(0x00080005, 'CS', even(charset)), explicitShort(0x00080016, 'UI', even('1.2.3', '\0')), explicitShort(0x00100010, 'PN', pn.length % 2 ? Buffer.concat([pn, Buffer.from(' ')]) : pn)]), EXPLICIT);
  // H.3.1: JIS X 0208 in G0 (ESC $ B), back to ASCII (ESC ( B) before each delimiter.
  const japanese = esc('Yamada^Tarou=\\e$B;3ED\\e(B^\\e$BB@O:\\e(B=\\e$B$d$^$@\\e(B^\\e$B$?$m$&\\e(B');
  assert.deepEqual(decodeHeaderJson(file('\\ISO 2022 IR 87', japanese))?.dataset['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }] });
  // I.2: KS X 1001 in G1 (ESC $ ) C), designated again after each delimiter.
  const korean = Buffer.concat([esc('Hong^Gildong=\\e$)C'), Buffer.from([0xfb, 0xf3]), esc('^\\e$)C'), Buffer.from([0xd1, 0xce, 0xd4, 0xd7]), esc('=\\e$)C'), Buffer.from([0xc8, 0xab]), esc('^\\e$)C'), Buffer.from([0xb1, 0xe6, 0xb5, 0xbf])]);
  assert.deepEqual(decodeHeaderJson(file('\\ISO 2022 IR 149', korean))?.dataset['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Hong^Gildong', Ideographic: '洪^吉洞', Phonetic: '홍^길동' }] });
  // K.2: GB 2312 in G1 (ESC $ ) A).
  const chinese = Buffer.concat([esc('Zhang^XiaoDong=\\e$)A'), Buffer.from([0xd5, 0xc5]), esc('^\\e$)A'), Buffer.from([0xd0, 0xa1, 0xb6, 0xab]), esc('=')]);
  assert.deepEqual(decodeHeaderJson(file('\\ISO 2022 IR 58', chinese))?.dataset['00100010'], { vr: 'PN', Value: [{ Alphabetic: 'Zhang^XiaoDong', Ideographic: '张^小东' }] });
  // dcmjs refuses any multi-valued Specific Character Set: such instances were refused as malformed.
  assert.throws(() => parseHeaderWithDcmjs(file('\\ISO 2022 IR 87', japanese), true), /multiple character sets/);
  assert.equal(decodeHeaderJson(file('\\ISO 2022 IR 159', japanese)), undefined, 'JIS X 0212 is left to the general path');
});

test('implicit VR: US or SS by Pixel Representation, private creators as LO, unknown private elements as UN, sequences of undefined length', () => {
  const ds = Buffer.concat([
    implicitElement(0x00080016, even('1.2.3', '\0')),
    implicitElement(0x00080018, even('1.2.3.4', '\0')),
    implicitElement(0x00280103, le16(1)),
    implicitElement(0x00280106, le16(0xfffb)), // -5 as a signed 16-bit value
    implicitElement(0x00290010, even('ACME 1.0')),
    implicitElement(0x00291001, Buffer.from([1, 2, 3, 4])),
    Buffer.concat([tagBytes(0x00400275), le32(0xffffffff), item(implicitElement(0x00400009, even('SPS1')), true), tagBytes(0xfffee0dd), le32(0)]),
  ]);
  const d = decodeHeaderJson(rawFile(ds, IMPLICIT))?.dataset;
  assert.ok(d);
  assert.deepEqual(d['00280106'], { vr: 'SS', Value: [-5] });
  assert.deepEqual(d['00290010'], { vr: 'LO', Value: ['ACME 1.0'] });
  assert.deepEqual(d['00291001'], { vr: 'UN', InlineBinary: Buffer.from([1, 2, 3, 4]).toString('base64') });
  assert.deepEqual(d['00400275'], { vr: 'SQ', Value: [{ '00400009': { vr: 'SH', Value: ['SPS1'] } }] });
});

test('values as PS3.5 reads them: ST, UT and UR keep backslashes, empty values keep their place, an empty item is kept', () => {
  const ds = Buffer.concat([
    explicitShort(0x00080016, 'UI', even('1.2.3', '\0')),
    explicitShort(0x00080018, 'UI', even('1.2.3.4', '\0')),
    explicitShort(0x00080081, 'ST', even('C:\\Program Files\\x')),
    explicitShort(0x00081060, 'PN', even('A^B\\\\C^D')),
    Buffer.concat([tagBytes(0x00081140), Buffer.from('SQ'), le16(0), le32(16), item(Buffer.alloc(0), false), item(Buffer.alloc(0), false)]),
    explicitShort(0x00180050, 'DS', even(' 1.5 \\\\2')),
    explicitShort(0x00200013, 'IS', even('abc')),
  ]);
  const d = decodeHeaderJson(rawFile(ds, EXPLICIT))!.dataset;
  assert.deepEqual(d['00080081'], { vr: 'ST', Value: ['C:\\Program Files\\x'] });
  assert.deepEqual(d['00081060'], { vr: 'PN', Value: [{ Alphabetic: 'A^B' }, null, { Alphabetic: 'C^D' }] });
  assert.deepEqual(d['00180050'], { vr: 'DS', Value: [1.5, null, 2] });
  assert.deepEqual(d['00081140'], { vr: 'SQ', Value: [{}, {}] });
  assert.deepEqual(d['00200013'], { vr: 'IS' }, 'not an integer string: no value rather than a wrong one');
});

test('leaves to the general path what it does not decode, and never throws on damaged input', () => {
  const good = part10({ SOPClassUID: '1.2.3', SOPInstanceUID: '1.2.3.4', PatientName: 'A^B', StudyDescription: 'X' }, EXPLICIT);
  assert.ok(decodeHeaderJson(good));
  assert.equal(decodeHeaderJson(part10({ SOPClassUID: '1.2.3', SOPInstanceUID: '1.2.3.4' }, '1.2.840.10008.1.2.2')), undefined, 'big endian');
  assert.equal(decodeHeaderJson(rawFile(explicitShort(0x00080005, 'CS', even('ISO_IR 999')), EXPLICIT)), undefined, 'an unknown character set');
  assert.equal(decodeHeaderJson(rawFile(Buffer.concat([tagBytes(0x00091001), Buffer.from('UN'), le16(0), le32(2), Buffer.from([1, 2])]), EXPLICIT)), undefined, 'UN element');
  assert.equal(decodeHeaderJson(good.subarray(0, good.length - 3)), undefined, 'cut inside an element');
  assert.equal(decodeHeaderJson(Buffer.from('not dicom at all')), undefined);
  const random = rng(7);
  let decoded = 0;
  for (let n = 0; n < 3000; n++) {
    const b = Buffer.from(good);
    for (let k = 0, m = 1 + Math.floor(random() * 4); k < m; k++) b[132 + Math.floor(random() * (b.length - 132))] = Math.floor(random() * 256);
    const r = decodeHeaderJson(n % 3 ? b : b.subarray(0, Math.floor(random() * b.length)));
    if (r) {
      decoded++;
      for (const [k, v] of Object.entries(r.dataset)) assert.match(`${k} ${v.vr}`, /^[0-9A-F]{8} [A-Z]{2}$/);
    }
  }
  assert.ok(decoded > 0);
});
