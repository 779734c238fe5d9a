import { XMLParser, XMLValidator } from 'fast-xml-parser';

export class XmlError extends Error {
  override name = 'XmlError';
}

export interface XmlLimits {
  maxBytes?: number;
  maxDepth?: number;
}

/** Elements that may repeat in the XDS, SOAP and CDA documents we read: always arrays, so code never guesses. */
const ARRAYS = new Set([
  'Slot', 'Value', 'Classification', 'ExternalIdentifier', 'ExtrinsicObject', 'RegistryPackage', 'Association', 'ObjectRef',
  'LocalizedString', 'DocumentResponse', 'DocumentRequest', 'RegistryError', 'Document', 'id', 'author', 'given', 'family',
  'documentationOf', 'inFulfillmentOf', 'templateId', 'translation', 'component', 'participant', 'name', 'Header',
]);

/**
 * Parses untrusted XML (SOAP requests, CDA reports, registry responses). Any DOCTYPE is refused outright: SOAP 1.2
 * forbids it and CDA does not need it, and refusing it closes XXE and entity-expansion ("billion laughs") attacks
 * whatever the parser would do with entities. Size and nesting depth are bounded before parsing.
 * Namespace prefixes are dropped (names are matched locally); attributes come as "@_name", text as "#text".
 */
export function parseXml(text: string, limits: XmlLimits = {}): Record<string, any> {
  const maxBytes = limits.maxBytes ?? 64 * 1024 * 1024;
  const maxDepth = limits.maxDepth ?? 64;
  if (text.length > maxBytes) throw new XmlError(`XML document of ${text.length} characters exceeds the limit of ${maxBytes}`);
  if (/<!DOCTYPE/i.test(text)) throw new XmlError('XML documents with a DOCTYPE (DTD, entity declarations) are not accepted');
  if (/<!ENTITY/i.test(text)) throw new XmlError('XML entity declarations are not accepted');
  let depth = 0;
  let max = 0;
  // Cheap depth scan on tags (comments, CDATA and processing instructions skipped) so a deeply nested document
  // cannot exhaust the parser's stack.
  const re = /<(\/?)([A-Za-z_][\w.:-]*)[^>]*?(\/?)>|<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<\?[\s\S]*?\?>/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (!m[2]) continue;
    if (m[1]) depth--;
    else if (!m[3]) {
      depth++;
      if (depth > max) max = depth;
      if (max > maxDepth) throw new XmlError(`XML nesting deeper than ${maxDepth} levels`);
    }
  }
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw new XmlError(`malformed XML: ${valid.err.msg} (line ${valid.err.line})`);
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@_',
    removeNSPrefix: true,
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: true,
    processEntities: true,
    htmlEntities: false,
    ignoreDeclaration: true,
    ignorePiTags: true,
    isArray: (name) => ARRAYS.has(name),
  });
  return parser.parse(text) as Record<string, any>;
}

export function xmlEscape(v: string | number): string {
  return String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Text of an element that may be a string or an object with #text. */
export function text(node: unknown): string {
  if (node === undefined || node === null) return '';
  if (typeof node === 'string' || typeof node === 'number') return String(node);
  if (Array.isArray(node)) return text(node[0]);
  if (typeof node === 'object' && '#text' in (node as object)) return String((node as any)['#text']);
  return '';
}

export function arr<T = any>(v: T | T[] | undefined): T[] {
  if (v === undefined || v === null) return [];
  return Array.isArray(v) ? v : [v];
}
