import { randomUUID } from 'node:crypto';
import { NS } from './vocabulary.js';
import { arr, parseXml, text, XmlError, xmlEscape as esc } from './xml.js';

/**
 * SOAP 1.2 with WS-Addressing, carried either as plain application/soap+xml or as MTOM/XOP
 * (multipart/related, binary parts referenced by xop:Include), as IHE ITI TF-2x Appendix V requires.
 */

export interface SoapMessage {
  action: string;
  messageId: string;
  relatesTo?: string;
  to?: string;
  /** The Body's first element, parsed (namespace prefixes removed). */
  body: Record<string, any>;
  /** The name of that element, e.g. "ProvideAndRegisterDocumentSetRequest". */
  bodyName: string;
  /** Binary parts by Content-ID (without angle brackets). */
  attachments: Map<string, Buffer>;
  /** The whole parsed Header, for security tokens and the like. */
  header: Record<string, any>;
}

export class SoapError extends Error {
  override name = 'SoapError';
}

export interface OutgoingSoap {
  action: string;
  to?: string;
  relatesTo?: string;
  messageId?: string;
  /** Body XML (one element, with its own namespace declarations or using the envelope's prefixes). */
  bodyXml: string;
  /** Extra header XML (e.g. a WS-Security element with a SAML assertion). */
  headerXml?: string;
  attachments?: Map<string, Buffer>;
}

const PREFIXES = `xmlns:soap="${NS.soap}" xmlns:wsa="${NS.wsa}" xmlns:rim="${NS.rim}" xmlns:lcm="${NS.lcm}" xmlns:query="${NS.query}" xmlns:rs="${NS.rs}" xmlns:xdsb="${NS.xds}" xmlns:xop="${NS.xop}"`;

export function envelope(m: OutgoingSoap): string {
  const messageId = m.messageId ?? `urn:uuid:${randomUUID()}`;
  return (
    `<?xml version="1.0" encoding="UTF-8"?><soap:Envelope ${PREFIXES}><soap:Header>` +
    `<wsa:Action soap:mustUnderstand="1">${esc(m.action)}</wsa:Action>` +
    `<wsa:MessageID>${esc(messageId)}</wsa:MessageID>` +
    (m.relatesTo ? `<wsa:RelatesTo>${esc(m.relatesTo)}</wsa:RelatesTo>` : `<wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo>`) +
    (m.to ? `<wsa:To soap:mustUnderstand="1">${esc(m.to)}</wsa:To>` : '') +
    (m.headerXml ?? '') +
    `</soap:Header><soap:Body>${m.bodyXml}</soap:Body></soap:Envelope>`
  );
}

/** Serialises a SOAP message: MTOM multipart when there are attachments, plain SOAP otherwise. */
export function serialize(m: OutgoingSoap): { contentType: string; body: Buffer } {
  const xml = envelope(m);
  if (!m.attachments || m.attachments.size === 0) {
    return { contentType: `application/soap+xml; charset=UTF-8; action="${m.action}"`, body: Buffer.from(xml, 'utf8') };
  }
  const boundary = `MIMEBoundary_${randomUUID().replace(/-/g, '')}`;
  const rootId = `root.message@opendrim`;
  const parts: Buffer[] = [
    Buffer.from(
      `--${boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <${rootId}>\r\n\r\n${xml}\r\n`,
      'utf8',
    ),
  ];
  for (const [cid, data] of m.attachments) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <${cid}>\r\n\r\n`, 'utf8'), data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    contentType: `multipart/related; boundary="${boundary}"; type="application/xop+xml"; start="<${rootId}>"; start-info="application/soap+xml"; action="${m.action}"`,
    body: Buffer.concat(parts),
  };
}

function param(contentType: string, name: string): string | undefined {
  const m = new RegExp(`(?:^|;)\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]*))`, 'i').exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

/** Splits a multipart/related body into parts with their headers. */
function splitMultipart(body: Buffer, boundary: string): { headers: Record<string, string>; data: Buffer }[] {
  const delim = Buffer.from(`--${boundary}`);
  const parts: { headers: Record<string, string>; data: Buffer }[] = [];
  let pos = body.indexOf(delim);
  if (pos < 0) throw new SoapError('multipart body does not contain its boundary');
  while (pos >= 0) {
    let start = pos + delim.length;
    if (body[start] === 0x2d && body[start + 1] === 0x2d) break; // closing delimiter
    if (body[start] === 0x0d && body[start + 1] === 0x0a) start += 2;
    const next = body.indexOf(delim, start);
    if (next < 0) throw new SoapError('multipart body is truncated (no closing boundary)');
    let end = next;
    if (body[end - 2] === 0x0d && body[end - 1] === 0x0a) end -= 2;
    const part = body.subarray(start, end);
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd < 0) throw new SoapError('multipart part without headers');
    const headers: Record<string, string> = {};
    for (const line of part.subarray(0, headerEnd).toString('latin1').split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    parts.push({ headers, data: part.subarray(headerEnd + 4) });
    pos = next;
  }
  return parts;
}

const cidOf = (v: string | undefined) => (v ?? '').trim().replace(/^</, '').replace(/>$/, '');

/** Parses an incoming SOAP 1.2 message (plain or MTOM). Throws SoapError / XmlError with a reason. */
export function parseSoap(contentType: string, body: Buffer, limits: { maxXmlBytes?: number } = {}): SoapMessage {
  let xml: string;
  const attachments = new Map<string, Buffer>();
  if (/^multipart\/related/i.test(contentType)) {
    const boundary = param(contentType, 'boundary');
    if (!boundary) throw new SoapError('multipart/related without a boundary parameter');
    const parts = splitMultipart(body, boundary);
    if (parts.length === 0) throw new SoapError('multipart/related message has no parts');
    const start = cidOf(param(contentType, 'start'));
    const rootIndex = start ? parts.findIndex((p) => cidOf(p.headers['content-id']) === start) : 0;
    if (rootIndex < 0) throw new SoapError(`the start part <${start}> is not in the message`);
    xml = parts[rootIndex]!.data.toString('utf8');
    parts.forEach((p, i) => {
      if (i !== rootIndex) attachments.set(cidOf(p.headers['content-id']), p.headers['content-transfer-encoding']?.toLowerCase() === 'base64' ? Buffer.from(p.data.toString('latin1'), 'base64') : p.data);
    });
  } else if (/^(application\/soap\+xml|text\/xml|application\/xml)/i.test(contentType)) {
    xml = body.toString('utf8');
  } else {
    throw new SoapError(`unsupported content type "${contentType}": expected application/soap+xml or multipart/related (MTOM)`);
  }
  const doc = parseXml(xml, { maxBytes: limits.maxXmlBytes });
  const env = doc.Envelope;
  if (!env || typeof env !== 'object') throw new SoapError('not a SOAP envelope');
  if (!env.Body || typeof env.Body !== 'object') throw new SoapError('SOAP envelope without a Body');
  const header = (arr(env.Header)[0] ?? {}) as Record<string, any>;
  const bodyName = Object.keys(env.Body).find((k) => !k.startsWith('@_'));
  if (!bodyName) throw new SoapError('empty SOAP Body');
  return {
    action: text(header.Action),
    messageId: text(header.MessageID),
    relatesTo: text(header.RelatesTo) || undefined,
    to: text(header.To) || undefined,
    body: (env.Body[bodyName] ?? {}) as Record<string, any>,
    bodyName,
    attachments,
    header,
  };
}

/** The bytes of an xds:Document: an xop:Include reference to an attachment, or inline base64. */
export function documentBytes(node: any, attachments: Map<string, Buffer>): Buffer | undefined {
  const inc = node?.Include;
  if (inc) {
    const href = String(arr(inc)[0]?.['@_href'] ?? '');
    return attachments.get(decodeURIComponent(href.replace(/^cid:/, '')));
  }
  const t = text(node);
  return t ? Buffer.from(t, 'base64') : undefined;
}

/** A SOAP 1.2 Fault body, for protocol-level errors (malformed requests, unknown actions). */
export function faultXml(code: 'Sender' | 'Receiver', reason: string): string {
  return `<soap:Fault><soap:Code><soap:Value>soap:${code}</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang="en">${esc(reason)}</soap:Text></soap:Reason></soap:Fault>`;
}

export function faultReason(body: Record<string, any>): string {
  return text(arr(body.Reason?.Text)[0]) || text(body.Reason) || 'SOAP fault';
}

export { XmlError };
