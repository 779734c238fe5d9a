/**
 * DICOM upper-layer PDUs (PS3.8 section 9.3): encoding, decoding, and a stream reader that enforces size limits
 * before buffering anything.
 */

export const PduType = {
  AssociateRq: 0x01,
  AssociateAc: 0x02,
  AssociateRj: 0x03,
  PData: 0x04,
  ReleaseRq: 0x05,
  ReleaseRp: 0x06,
  Abort: 0x07,
} as const;

export const APPLICATION_CONTEXT = '1.2.840.10008.3.1.1.1';

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

export interface PresentationContextRq {
  id: number;
  abstractSyntax: string;
  transferSyntaxes: string[];
}

export interface RoleSelection {
  sopClassUid: string;
  scu: boolean;
  scp: boolean;
}

export interface UserInfo {
  maxPduLength: number;
  implementationClassUid?: string;
  implementationVersion?: string;
  roles: RoleSelection[];
  /** Asynchronous operations window (invoked, performed), when proposed. */
  asyncOps?: [number, number];
}

export interface AssociateRq {
  calledAe: string;
  callingAe: string;
  applicationContext: string;
  contexts: PresentationContextRq[];
  user: UserInfo;
}

/** PS3.8 Table 9-18 results: 0 acceptance, 1 user rejection, 2 no reason, 3 abstract syntax not supported, 4 transfer syntaxes not supported. */
export interface PresentationContextAc {
  id: number;
  result: 0 | 1 | 2 | 3 | 4;
  transferSyntax: string;
}

export interface AssociateAc {
  calledAe: string;
  callingAe: string;
  contexts: PresentationContextAc[];
  user: UserInfo;
}

export interface AssociateRj {
  result: number; // 1 permanent, 2 transient
  source: number;
  reason: number;
}

export interface Pdv {
  contextId: number;
  command: boolean;
  last: boolean;
  data: Buffer;
}

export type Pdu =
  | { type: typeof PduType.AssociateRq; rq: AssociateRq }
  | { type: typeof PduType.AssociateAc; ac: AssociateAc }
  | { type: typeof PduType.AssociateRj; rj: AssociateRj }
  | { type: typeof PduType.PData; pdvs: Pdv[] }
  | { type: typeof PduType.ReleaseRq }
  | { type: typeof PduType.ReleaseRp }
  | { type: typeof PduType.Abort; source: number; reason: number };

const ae = (s: string) => Buffer.from(s.padEnd(16, ' ').slice(0, 16), 'ascii');
const ascii = (b: Buffer) => b.toString('ascii').replace(/[\0 ]+$/, '').replace(/^ +/, '');

function item(type: number, value: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[0] = type;
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value]);
}

function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h[0] = type;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function userInfoItem(u: UserInfo): Buffer {
  const parts: Buffer[] = [];
  const max = Buffer.alloc(4);
  max.writeUInt32BE(u.maxPduLength);
  parts.push(item(0x51, max));
  if (u.implementationClassUid) parts.push(item(0x52, Buffer.from(u.implementationClassUid, 'ascii')));
  if (u.asyncOps) {
    const b = Buffer.alloc(4);
    b.writeUInt16BE(u.asyncOps[0], 0);
    b.writeUInt16BE(u.asyncOps[1], 2);
    parts.push(item(0x53, b));
  }
  for (const r of u.roles) {
    const uid = Buffer.from(r.sopClassUid, 'ascii');
    const b = Buffer.alloc(2 + uid.length + 2);
    b.writeUInt16BE(uid.length, 0);
    uid.copy(b, 2);
    b[2 + uid.length] = r.scu ? 1 : 0;
    b[3 + uid.length] = r.scp ? 1 : 0;
    parts.push(item(0x54, b));
  }
  if (u.implementationVersion) parts.push(item(0x55, Buffer.from(u.implementationVersion, 'ascii')));
  return item(0x50, Buffer.concat(parts));
}

function fixedHeader(calledAe: string, callingAe: string): Buffer {
  const b = Buffer.alloc(68);
  b.writeUInt16BE(1, 0);
  ae(calledAe).copy(b, 4);
  ae(callingAe).copy(b, 20);
  return b;
}

export function encodeAssociateRq(rq: AssociateRq): Buffer {
  const items = [item(0x10, Buffer.from(rq.applicationContext, 'ascii'))];
  for (const c of rq.contexts) {
    const subs = [item(0x30, Buffer.from(c.abstractSyntax, 'ascii')), ...c.transferSyntaxes.map((t) => item(0x40, Buffer.from(t, 'ascii')))];
    items.push(item(0x20, Buffer.concat([Buffer.from([c.id, 0, 0, 0]), ...subs])));
  }
  items.push(userInfoItem(rq.user));
  return pdu(PduType.AssociateRq, Buffer.concat([fixedHeader(rq.calledAe, rq.callingAe), ...items]));
}

export function encodeAssociateAc(ac: AssociateAc): Buffer {
  const items = [item(0x10, Buffer.from(APPLICATION_CONTEXT, 'ascii'))];
  for (const c of ac.contexts) {
    items.push(item(0x21, Buffer.concat([Buffer.from([c.id, 0, c.result, 0]), item(0x40, Buffer.from(c.result === 0 ? c.transferSyntax : '', 'ascii'))])));
  }
  items.push(userInfoItem(ac.user));
  return pdu(PduType.AssociateAc, Buffer.concat([fixedHeader(ac.calledAe, ac.callingAe), ...items]));
}

export function encodeAssociateRj(rj: AssociateRj): Buffer {
  return pdu(PduType.AssociateRj, Buffer.from([0, rj.result, rj.source, rj.reason]));
}

export const encodeReleaseRq = () => pdu(PduType.ReleaseRq, Buffer.alloc(4));
export const encodeReleaseRp = () => pdu(PduType.ReleaseRp, Buffer.alloc(4));
/** source 0: service user, 2: service provider; reason (provider) 0 not specified, 1 unrecognised PDU, 2 unexpected PDU, 6 invalid parameter. */
export const encodeAbort = (source = 2, reason = 0) => pdu(PduType.Abort, Buffer.from([0, 0, source, reason]));

/** One P-DATA-TF PDU holding a single PDV (what every implementation sends in practice). */
export function encodePData(contextId: number, command: boolean, last: boolean, data: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h[0] = PduType.PData;
  h.writeUInt32BE(data.length + 6, 2);
  h.writeUInt32BE(data.length + 2, 6);
  h[10] = contextId;
  h[11] = (command ? 1 : 0) | (last ? 2 : 0);
  return Buffer.concat([h, data]);
}

function* items(body: Buffer, start: number): Generator<{ type: number; value: Buffer }> {
  let off = start;
  while (off + 4 <= body.length) {
    const type = body[off]!;
    const len = body.readUInt16BE(off + 2);
    if (off + 4 + len > body.length) throw new ProtocolError(`item 0x${type.toString(16)} overruns its PDU`);
    yield { type, value: body.subarray(off + 4, off + 4 + len) };
    off += 4 + len;
  }
}

function parseUserInfo(value: Buffer): UserInfo {
  const u: UserInfo = { maxPduLength: 0, roles: [] };
  for (const sub of items(value, 0)) {
    switch (sub.type) {
      case 0x51:
        if (sub.value.length >= 4) u.maxPduLength = sub.value.readUInt32BE(0);
        break;
      case 0x52:
        u.implementationClassUid = ascii(sub.value);
        break;
      case 0x53:
        if (sub.value.length >= 4) u.asyncOps = [sub.value.readUInt16BE(0), sub.value.readUInt16BE(2)];
        break;
      case 0x54: {
        // Found by fuzzing: a role selection item shorter than its own UID length must not read past its end.
        if (sub.value.length < 2) throw new ProtocolError('truncated SCP/SCU role selection item');
        const n = sub.value.readUInt16BE(0);
        if (2 + n + 2 > sub.value.length) throw new ProtocolError('SCP/SCU role selection UID overruns its item');
        u.roles.push({ sopClassUid: ascii(sub.value.subarray(2, 2 + n)), scu: sub.value[2 + n] === 1, scp: sub.value[3 + n] === 1 });
        break;
      }
      case 0x55:
        u.implementationVersion = ascii(sub.value);
        break;
      default: // user identity and extended negotiation are ignored (not required)
    }
  }
  return u;
}

function parseAssociate(body: Buffer, isRq: boolean): AssociateRq | AssociateAc {
  if (body.length < 68) throw new ProtocolError('A-ASSOCIATE PDU shorter than its fixed fields');
  const calledAe = ascii(body.subarray(4, 20));
  const callingAe = ascii(body.subarray(20, 36));
  let applicationContext = '';
  const rqContexts: PresentationContextRq[] = [];
  const acContexts: PresentationContextAc[] = [];
  let user: UserInfo = { maxPduLength: 0, roles: [] };
  for (const it of items(body, 68)) {
    if (it.type === 0x10) applicationContext = ascii(it.value);
    else if ((it.type === 0x20 || it.type === 0x21) && it.value.length < 4) throw new ProtocolError('truncated presentation context item');
    else if (it.type === 0x20 && isRq) {
      const ctx: PresentationContextRq = { id: it.value[0]!, abstractSyntax: '', transferSyntaxes: [] };
      for (const sub of items(it.value, 4)) {
        if (sub.type === 0x30) ctx.abstractSyntax = ascii(sub.value);
        else if (sub.type === 0x40) ctx.transferSyntaxes.push(ascii(sub.value));
      }
      rqContexts.push(ctx);
    } else if (it.type === 0x21 && !isRq) {
      let ts = '';
      for (const sub of items(it.value, 4)) if (sub.type === 0x40) ts = ascii(sub.value);
      acContexts.push({ id: it.value[0]!, result: it.value[2]! as PresentationContextAc['result'], transferSyntax: ts });
    } else if (it.type === 0x50) user = parseUserInfo(it.value);
  }
  return isRq ? { calledAe, callingAe, applicationContext, contexts: rqContexts, user } : { calledAe, callingAe, contexts: acContexts, user };
}

export function decodePdu(type: number, body: Buffer): Pdu {
  switch (type) {
    case PduType.AssociateRq:
      return { type, rq: parseAssociate(body, true) as AssociateRq };
    case PduType.AssociateAc:
      return { type, ac: parseAssociate(body, false) as AssociateAc };
    case PduType.AssociateRj:
      if (body.length < 4) throw new ProtocolError('short A-ASSOCIATE-RJ');
      return { type, rj: { result: body[1]!, source: body[2]!, reason: body[3]! } };
    case PduType.PData: {
      const pdvs: Pdv[] = [];
      let off = 0;
      while (off < body.length) {
        if (off + 6 > body.length) throw new ProtocolError('truncated PDV header');
        const len = body.readUInt32BE(off);
        if (len < 2 || off + 4 + len > body.length) throw new ProtocolError('PDV length overruns its PDU');
        const h = body[off + 5]!;
        pdvs.push({ contextId: body[off + 4]!, command: (h & 1) === 1, last: (h & 2) === 2, data: body.subarray(off + 6, off + 4 + len) });
        off += 4 + len;
      }
      return { type, pdvs };
    }
    case PduType.ReleaseRq:
    case PduType.ReleaseRp:
      return { type };
    case PduType.Abort:
      return { type, source: body[2] ?? 0, reason: body[3] ?? 0 };
    default:
      throw new ProtocolError(`unknown PDU type 0x${type.toString(16)}`);
  }
}

/**
 * Cuts a byte stream into PDUs. The announced length is checked against the limits as soon as the 6-byte
 * header is in, so a peer announcing a 4 GB PDU is refused before anything is buffered; chunks are joined
 * once per PDU, not once per network read.
 */
export class PduReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1; // body length of the PDU being read; -1 while waiting for a header
  private type = 0;

  constructor(private readonly limits: { maxPData: number; maxOther: number }) {}

  /** Raise or lower the P-DATA limit once negotiated. */
  setMaxPData(n: number): void {
    this.limits.maxPData = n;
  }

  push(chunk: Buffer): Array<{ type: number; body: Buffer }> {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Array<{ type: number; body: Buffer }> = [];
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < 6) break;
        const head = this.take(6);
        this.type = head[0]!;
        this.need = head.readUInt32BE(2);
        if (this.type < 1 || this.type > 7) throw new ProtocolError(`unknown PDU type 0x${this.type.toString(16)}`);
        const limit = this.type === PduType.PData ? this.limits.maxPData : this.limits.maxOther;
        if (this.need > limit) throw new ProtocolError(`PDU type ${this.type} of ${this.need} bytes exceeds the limit of ${limit}`);
      }
      if (this.buffered < this.need) break;
      out.push({ type: this.type, body: this.take(this.need) });
      this.need = -1;
    }
    return out;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    let result: Buffer;
    if (first.length >= n) {
      result = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const parts: Buffer[] = [];
      let left = n;
      while (left > 0) {
        const c = this.chunks[0]!;
        if (c.length <= left) {
          parts.push(c);
          this.chunks.shift();
          left -= c.length;
        } else {
          parts.push(c.subarray(0, left));
          this.chunks[0] = c.subarray(left);
          left = 0;
        }
      }
      result = Buffer.concat(parts, n);
    }
    this.buffered -= n;
    return result;
  }
}
