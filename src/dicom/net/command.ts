/**
 * DIMSE command sets (PS3.7 section 9.3 and 10.3): group 0000 elements, always Implicit VR Little Endian.
 */

export const CommandField = {
  CStoreRq: 0x0001,
  CStoreRsp: 0x8001,
  CGetRq: 0x0010,
  CGetRsp: 0x8010,
  CFindRq: 0x0020,
  CFindRsp: 0x8020,
  CMoveRq: 0x0021,
  CMoveRsp: 0x8021,
  CEchoRq: 0x0030,
  CEchoRsp: 0x8030,
  CCancelRq: 0x0fff,
} as const;

export const NO_DATASET = 0x0101;

export const Status = {
  Success: 0x0000,
  Pending: 0xff00,
  PendingWarning: 0xff01,
  Cancel: 0xfe00,
  Warning: 0xb000,
  MoveDestinationUnknown: 0xa801,
  OutOfResources: 0xa700,
  SubOperationsFailed: 0xa702,
  IdentifierDoesNotMatch: 0xa900,
  CannotUnderstand: 0xc000,
  ProcessingFailure: 0x0110,
  SopClassNotSupported: 0x0122,
} as const;

export interface Command {
  affectedSopClassUid?: string;
  requestedSopClassUid?: string;
  commandField: number;
  messageId?: number;
  messageIdBeingRespondedTo?: number;
  moveDestination?: string;
  priority?: number;
  commandDataSetType: number;
  status?: number;
  errorComment?: string;
  affectedSopInstanceUid?: string;
  requestedSopInstanceUid?: string;
  remaining?: number;
  completed?: number;
  failed?: number;
  warning?: number;
  moveOriginatorAe?: string;
  moveOriginatorMessageId?: number;
}

type Kind = 'UI' | 'US' | 'AE' | 'LO' | 'UL';
const FIELDS: Array<[number, keyof Command, Kind]> = [
  [0x0002, 'affectedSopClassUid', 'UI'],
  [0x0003, 'requestedSopClassUid', 'UI'],
  [0x0100, 'commandField', 'US'],
  [0x0110, 'messageId', 'US'],
  [0x0120, 'messageIdBeingRespondedTo', 'US'],
  [0x0600, 'moveDestination', 'AE'],
  [0x0700, 'priority', 'US'],
  [0x0800, 'commandDataSetType', 'US'],
  [0x0900, 'status', 'US'],
  [0x0902, 'errorComment', 'LO'],
  [0x1000, 'affectedSopInstanceUid', 'UI'],
  [0x1001, 'requestedSopInstanceUid', 'UI'],
  [0x1020, 'remaining', 'US'],
  [0x1021, 'completed', 'US'],
  [0x1022, 'failed', 'US'],
  [0x1023, 'warning', 'US'],
  [0x1030, 'moveOriginatorAe', 'AE'],
  [0x1031, 'moveOriginatorMessageId', 'US'],
];
const BY_ELEMENT = new Map(FIELDS.map(([e, k, v]) => [e, [k, v] as const]));

function element(elem: number, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0x0000, 0);
  h.writeUInt16LE(elem, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}

function encodeValue(kind: Kind, v: string | number): Buffer {
  if (kind === 'US') {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(Number(v) & 0xffff);
    return b;
  }
  if (kind === 'UL') {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(Number(v) >>> 0);
    return b;
  }
  let s = String(v);
  if (kind === 'LO') s = s.slice(0, 64);
  if (s.length % 2) s += kind === 'UI' ? '\0' : ' ';
  return Buffer.from(s, 'latin1');
}

export function encodeCommand(cmd: Command): Buffer {
  const parts: Buffer[] = [];
  for (const [elem, key, kind] of FIELDS) {
    const v = cmd[key];
    if (v === undefined || v === null || v === '') continue;
    parts.push(element(elem, encodeValue(kind, v as string | number)));
  }
  const body = Buffer.concat(parts);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length);
  return Buffer.concat([element(0x0000, len), body]);
}

export function decodeCommand(buf: Buffer): Command {
  const cmd: Record<string, string | number | undefined> = {};
  let off = 0;
  while (off + 8 <= buf.length) {
    const group = buf.readUInt16LE(off);
    const elem = buf.readUInt16LE(off + 2);
    const len = buf.readUInt32LE(off + 4);
    if (off + 8 + len > buf.length) throw new Error('command element overruns the command set');
    const value = buf.subarray(off + 8, off + 8 + len);
    off += 8 + len;
    if (group !== 0) continue;
    const f = BY_ELEMENT.get(elem);
    if (!f) continue;
    const [key, kind] = f;
    if (kind === 'US') cmd[key] = len >= 2 ? value.readUInt16LE(0) : undefined;
    else if (kind === 'UL') cmd[key] = len >= 4 ? value.readUInt32LE(0) : undefined;
    else cmd[key] = value.toString('latin1').replace(/[\0 ]+$/, '').trim();
  }
  if (cmd.commandField === undefined) throw new Error('command set without Command Field (0000,0100)');
  return { commandDataSetType: NO_DATASET, ...cmd } as unknown as Command;
}

export const hasDataset = (c: Command) => c.commandDataSetType !== NO_DATASET;
export const isPending = (status: number | undefined) => status === Status.Pending || status === Status.PendingWarning;
