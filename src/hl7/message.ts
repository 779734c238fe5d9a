/**
 * HL7 v2 messages (ER7, the "pipe" encoding): parsing, field access, escaping and acknowledgements.
 *
 * Our own rather than @medplum/core's Hl7Message: that one is tied to the Medplum client package (FHIR types,
 * fetch), and its MLLP layer (@medplum/hl7) re-concatenates the whole receive buffer on each TCP chunk with no
 * size limit. A DRIMbox receives multi-megabyte ORU messages (base64 PDF in a CDA) from any RIS on the network;
 * it needs bounded, linear parsing and clear errors.
 */

export class Hl7ParseError extends Error {
  override name = 'Hl7ParseError';
}

export interface Delimiters {
  field: string;
  component: string;
  repetition: string;
  escape: string;
  subcomponent: string;
}

export const DEFAULT_DELIMITERS: Delimiters = { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };

/** One segment: `fields[0]` is the segment name; for MSH, fields[1] is the field separator itself, as HL7 numbers them. */
export class Segment {
  constructor(
    readonly fields: string[],
    private readonly d: Delimiters,
  ) {}

  get name(): string {
    return this.fields[0] ?? '';
  }

  /** Raw (still escaped) field n. */
  raw(n: number): string {
    return this.fields[n] ?? '';
  }

  /** Field n, repetition r (0-based), component c and subcomponent s (1-based, as in "PID-3.4.2"), unescaped. */
  get(n: number, c = 0, s = 0, r = 0): string {
    let v = this.raw(n);
    if (this.name === 'MSH' && n <= 2) return v;
    v = v.split(this.d.repetition)[r] ?? '';
    if (c > 0) v = v.split(this.d.component)[c - 1] ?? '';
    if (s > 0) v = v.split(this.d.subcomponent)[s - 1] ?? '';
    return unescape(v, this.d);
  }

  /** The repetitions of field n, each as its raw text. */
  repetitions(n: number): string[] {
    const v = this.raw(n);
    return v === '' ? [] : v.split(this.d.repetition);
  }

  /** Component c (1-based) and subcomponent s of one raw repetition, unescaped. */
  part(rep: string, c: number, s = 0): string {
    let v = rep.split(this.d.component)[c - 1] ?? '';
    if (s > 0) v = v.split(this.d.subcomponent)[s - 1] ?? '';
    return unescape(v, this.d);
  }
}

export class Hl7Message {
  constructor(
    readonly segments: Segment[],
    readonly delimiters: Delimiters = DEFAULT_DELIMITERS,
  ) {}

  segment(name: string, index = 0): Segment | undefined {
    let i = 0;
    for (const s of this.segments) if (s.name === name && i++ === index) return s;
    return undefined;
  }

  all(name: string): Segment[] {
    return this.segments.filter((s) => s.name === name);
  }

  get msh(): Segment {
    return this.segments[0]!;
  }

  /** "ORU^R01" from MSH-9. */
  get type(): string {
    return `${this.msh.get(9, 1)}^${this.msh.get(9, 2)}`;
  }

  get controlId(): string {
    return this.msh.get(10);
  }

  get version(): string {
    return this.msh.get(12, 1);
  }

  toString(): string {
    const f = this.delimiters.field;
    return this.segments.map((s) => (s.name === 'MSH' ? `MSH${f}${s.fields.slice(2).join(f)}` : s.fields.join(f))).join('\r') + '\r';
  }
}

export interface ParseLimits {
  /** Longest segment accepted, in characters (an OBX with a base64 CDA is the long one). */
  maxSegmentLength?: number;
  maxSegments?: number;
}

/**
 * Parses an ER7 message. Segments may be separated by CR, LF or CRLF (files and some RIS use LF).
 * Throws Hl7ParseError naming the problem; never returns a message without a usable MSH.
 */
export function parseMessage(text: string, limits: ParseLimits = {}): Hl7Message {
  const maxSegmentLength = limits.maxSegmentLength ?? 64 * 1024 * 1024;
  const maxSegments = limits.maxSegments ?? 10_000;
  const body = text.replace(/^\uFEFF/, '');
  if (!body.startsWith('MSH')) throw new Hl7ParseError('message does not start with an MSH segment');
  if (body.length < 8) throw new Hl7ParseError('MSH segment too short to carry its encoding characters');
  const field = body[3]!;
  const enc = body.slice(4, 8);
  if (/[A-Za-z0-9\r\n]/.test(field) || enc.length < 4) throw new Hl7ParseError('MSH-1/MSH-2 encoding characters are missing or invalid');
  const d: Delimiters = { field, component: enc[0]!, repetition: enc[1]!, escape: enc[2]!, subcomponent: enc[3]! };
  if (new Set([d.field, d.component, d.repetition, d.escape, d.subcomponent]).size !== 5) throw new Hl7ParseError('MSH-1/MSH-2 encoding characters are not distinct');

  const lines = body.split(/\r\n|\r|\n/).filter((l) => l.trim() !== '');
  if (lines.length > maxSegments) throw new Hl7ParseError(`message has ${lines.length} segments, more than the limit of ${maxSegments}`);
  const segments: Segment[] = [];
  for (const [i, line] of lines.entries()) {
    if (line.length > maxSegmentLength) throw new Hl7ParseError(`segment ${i + 1} is ${line.length} characters long, more than the limit of ${maxSegmentLength}`);
    const name = line.slice(0, 3);
    if (!/^[A-Z][A-Z0-9]{2}$/.test(name) || (line.length > 3 && line[3] !== d.field)) throw new Hl7ParseError(`segment ${i + 1} does not start with a segment name ("${line.slice(0, 8)}")`);
    if (name === 'MSH') {
      if (i !== 0) throw new Hl7ParseError(`a second MSH segment appears at segment ${i + 1}`);
      // HL7 numbers MSH fields so that MSH-1 is the field separator and MSH-2 the encoding characters.
      const rest = line.slice(4).split(d.field);
      segments.push(new Segment(['MSH', d.field, ...rest], d));
    } else {
      segments.push(new Segment(line.split(d.field), d));
    }
  }
  const msg = new Hl7Message(segments, d);
  if (!msg.msh.get(9, 1)) throw new Hl7ParseError('MSH-9 (message type) is empty');
  if (!msg.controlId) throw new Hl7ParseError('MSH-10 (message control ID) is empty');
  return msg;
}

/** Decodes \F\ \S\ \T\ \R\ \E\ and \Xhh..\ escape sequences; other sequences (formatting) are dropped. */
export function unescape(value: string, d: Delimiters = DEFAULT_DELIMITERS): string {
  if (!value.includes(d.escape)) return value;
  const e = d.escape;
  let out = '';
  let i = 0;
  while (i < value.length) {
    const ch = value[i]!;
    if (ch !== e) {
      out += ch;
      i++;
      continue;
    }
    const end = value.indexOf(e, i + 1);
    if (end < 0) {
      out += value.slice(i);
      break;
    }
    const seq = value.slice(i + 1, end);
    switch (seq[0]) {
      case 'F':
        out += d.field;
        break;
      case 'S':
        out += d.component;
        break;
      case 'T':
        out += d.subcomponent;
        break;
      case 'R':
        out += d.repetition;
        break;
      case 'E':
        out += d.escape;
        break;
      case 'X':
        if (/^X([0-9A-Fa-f]{2})+$/.test(seq)) out += Buffer.from(seq.slice(1), 'hex').toString('latin1');
        break;
      default:
        break;
    }
    i = end + 1;
  }
  return out;
}

export function escape(value: string, d: Delimiters = DEFAULT_DELIMITERS): string {
  let out = '';
  for (const ch of value) {
    if (ch === d.escape) out += `${d.escape}E${d.escape}`;
    else if (ch === d.field) out += `${d.escape}F${d.escape}`;
    else if (ch === d.component) out += `${d.escape}S${d.escape}`;
    else if (ch === d.subcomponent) out += `${d.escape}T${d.escape}`;
    else if (ch === d.repetition) out += `${d.escape}R${d.escape}`;
    else if (ch === '\r' || ch === '\n') out += `${d.escape}X0D${d.escape}`;
    else out += ch;
  }
  return out;
}

/** HL7 DTM for now, to the second, with the UTC offset. */
export function hl7Now(date = new Date()): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const off = -date.getTimezoneOffset();
  return `${date.getFullYear()}${pad(date.getMonth() + 1)}${pad(date.getDate())}${pad(date.getHours())}${pad(date.getMinutes())}${pad(date.getSeconds())}${off >= 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}${pad(Math.abs(off) % 60)}`;
}

export type AckCode = 'AA' | 'AE' | 'AR';

export interface AckError {
  /** HL7 table 0357: 100 segment sequence error, 101 required field missing, 102 data type error, 103 table value not found, 200 unsupported message type, 204 unknown key identifier, 207 application internal error. */
  code: string;
  text: string;
  /** Where, as "PID-3" or "OBX-5". */
  location?: string;
  severity?: 'E' | 'W' | 'I';
}

const ERROR_TEXT: Record<string, string> = {
  '100': 'Segment sequence error',
  '101': 'Required field missing',
  '102': 'Data type error',
  '103': 'Table value not found',
  '200': 'Unsupported message type',
  '201': 'Unsupported event code',
  '204': 'Unknown key identifier',
  '206': 'Application record locked',
  '207': 'Application internal error',
};

/**
 * An ACK for `msg` (original acknowledgement mode): MSH with sender and receiver swapped, MSA with the code and
 * the control ID, and one ERR segment per error (HL7 2.5 layout: ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 text).
 */
export function buildAck(msg: Hl7Message | undefined, code: AckCode, errors: AckError[] = [], sender = { application: 'OPENDRIM', facility: '' }): string {
  const d = msg?.delimiters ?? DEFAULT_DELIMITERS;
  const f = d.field;
  const esc = (v: string) => escape(v, d);
  const enc = `${d.component}${d.repetition}${d.escape}${d.subcomponent}`;
  const m = msg?.msh;
  const trigger = m?.get(9, 2) ?? '';
  const controlId = `ACK${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`.slice(0, 20);
  const msh = [
    `MSH${f}${enc}`,
    esc(sender.application),
    esc(sender.facility),
    m ? m.raw(3) : '',
    m ? m.raw(4) : '',
    hl7Now(),
    '',
    `ACK${d.component}${esc(trigger)}${d.component}ACK`,
    controlId,
    m ? m.raw(11) || 'P' : 'P',
    m ? m.raw(12) || '2.5' : '2.5',
    '',
    '',
    '',
    '',
    '',
    m ? m.raw(18) : '',
  ].join(f);
  const text = errors[0]?.text ?? '';
  const lines = [msh, ['MSA', code, esc(msg?.controlId ?? ''), code === 'AA' ? '' : esc(text.slice(0, 80))].join(f)];
  for (const e of errors) {
    const [seg, fieldNo] = (e.location ?? '').split('-');
    const loc = seg ? `${esc(seg)}${d.component}1${d.component}${esc(fieldNo ?? '')}` : '';
    lines.push(['ERR', '', loc, `${e.code}${d.component}${esc(ERROR_TEXT[e.code] ?? '')}${d.component}HL70357`, e.severity ?? 'E', '', '', '', esc(e.text)].join(f));
  }
  return lines.join('\r') + '\r';
}
