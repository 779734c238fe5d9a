import { explicitElement, fileMetaHeader } from './part10.js';

/** What a DICOMDIR needs of each instance (PS3.3 F.5: patient, study, series and image records). */
export interface DirectoryInstance {
  /** Referenced File ID components, each ≤ 8 characters of A-Z 0-9 _ (PS3.10 8.2). */
  fileId: string[];
  patientId: string;
  patientName: string;
  studyUid: string;
  studyDate: string;
  studyTime: string;
  studyId: string;
  accessionNumber: string;
  studyDescription: string;
  seriesUid: string;
  modality: string;
  seriesNumber: string;
  sopClassUid: string;
  sopUid: string;
  transferSyntaxUid: string;
  instanceNumber: string;
}

/** An element with its value padded to even length (NUL for UI and OB, space otherwise). */
function element(tag: number, vr: string, value: Buffer | string | number): Buffer {
  let v: Buffer;
  if (typeof value === 'number') {
    v = Buffer.alloc(vr === 'US' ? 2 : 4);
    if (vr === 'US') v.writeUInt16LE(value);
    else v.writeUInt32LE(value);
  } else v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (v.length % 2) v = Buffer.concat([v, Buffer.from(vr === 'UI' || vr === 'OB' ? [0] : [0x20])]);
  return explicitElement(tag, vr, v);
}

interface RecordNode {
  type: 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE';
  keys: Array<[number, string, string]>;
  children: RecordNode[];
  offset?: number;
}

function itemBytes(node: RecordNode, next: number, lower: number): Buffer {
  const content = Buffer.concat([
    element(0x00041400, 'UL', next),
    element(0x00041410, 'US', 0xffff),
    element(0x00041420, 'UL', lower),
    element(0x00041430, 'CS', node.type),
    ...node.keys.sort((a, b) => a[0] - b[0]).map(([tag, vr, value]) => element(tag, vr, value)),
  ]);
  const head = Buffer.alloc(8);
  head.writeUInt16LE(0xfffe, 0);
  head.writeUInt16LE(0xe000, 2);
  head.writeUInt32LE(content.length, 4);
  return Buffer.concat([head, content]);
}

/**
 * A DICOMDIR (Media Storage Directory, PS3.10 / PS3.3 F) for a set of instances: patient → study → series →
 * image records, linked by byte offsets. dcmjs writes data sets but cannot compute directory record offsets,
 * so the file is laid out here: every record is encoded once with zero offsets (their size does not depend on
 * the values), positions are taken, then encoded again with the offsets filled in.
 */
export function buildDicomdir(instances: DirectoryInstance[], fileSetId = 'OPENDRIM'): Buffer {
  const charset: [number, string, string] = [0x00080005, 'CS', 'ISO_IR 192'];
  const patients = new Map<string, RecordNode>();
  const studies = new Map<string, RecordNode>();
  const series = new Map<string, RecordNode>();
  for (const i of instances) {
    let p = patients.get(i.patientId);
    if (!p) patients.set(i.patientId, (p = { type: 'PATIENT', keys: [charset, [0x00100010, 'PN', i.patientName], [0x00100020, 'LO', i.patientId]], children: [] }));
    let st = studies.get(i.studyUid);
    if (!st) {
      st = { type: 'STUDY', keys: [charset, [0x00080020, 'DA', i.studyDate], [0x00080030, 'TM', i.studyTime], [0x00080050, 'SH', i.accessionNumber], [0x00081030, 'LO', i.studyDescription], [0x0020000d, 'UI', i.studyUid], [0x00200010, 'SH', i.studyId]], children: [] };
      studies.set(i.studyUid, st);
      p.children.push(st);
    }
    let se = series.get(i.seriesUid);
    if (!se) {
      se = { type: 'SERIES', keys: [charset, [0x00080060, 'CS', i.modality], [0x0020000e, 'UI', i.seriesUid], [0x00200011, 'IS', i.seriesNumber]], children: [] };
      series.set(i.seriesUid, se);
      st.children.push(se);
    }
    se.children.push({ type: 'IMAGE', keys: [charset, [0x00041500, 'CS', i.fileId.join('\\')], [0x00041510, 'UI', i.sopClassUid], [0x00041511, 'UI', i.sopUid], [0x00041512, 'UI', i.transferSyntaxUid], [0x00200013, 'IS', i.instanceNumber]], children: [] });
  }
  const order: RecordNode[] = [];
  const visit = (n: RecordNode) => {
    order.push(n);
    n.children.forEach(visit);
  };
  const roots = [...patients.values()];
  roots.forEach(visit);

  const instanceUid = `2.25.${BigInt('0x' + Buffer.from(crypto.getRandomValues(new Uint8Array(15))).toString('hex')).toString()}`;
  const meta = fileMetaHeader({ sopClassUid: '1.2.840.10008.1.3.10', sopInstanceUid: instanceUid, transferSyntaxUid: '1.2.840.10008.1.2.1' });
  const head = (first: number, last: number) => Buffer.concat([element(0x00041130, 'CS', fileSetId), element(0x00041200, 'UL', first), element(0x00041202, 'UL', last), element(0x00041212, 'US', 0)]);
  const sqHeaderLength = 12;
  // Pass 1: positions.
  let pos = meta.length + head(0, 0).length + sqHeaderLength;
  for (const n of order) {
    n.offset = pos;
    pos += itemBytes(n, 0, 0).length;
  }
  // Pass 2: the same layout, offsets filled in.
  const siblingsNext = new Map<RecordNode, number>();
  const link = (list: RecordNode[]) => list.forEach((n, k) => {
    siblingsNext.set(n, list[k + 1]?.offset ?? 0);
    link(n.children);
  });
  link(roots);
  const items = order.map((n) => itemBytes(n, siblingsNext.get(n) ?? 0, n.children[0]?.offset ?? 0));
  const body = Buffer.concat(items);
  const sq = Buffer.alloc(sqHeaderLength);
  sq.writeUInt16LE(0x0004, 0);
  sq.writeUInt16LE(0x1220, 2);
  sq.write('SQ', 4, 'ascii');
  sq.writeUInt32LE(body.length, 8);
  return Buffer.concat([meta, head(roots[0]?.offset ?? 0, roots[roots.length - 1]?.offset ?? 0), sq, body]);
}
