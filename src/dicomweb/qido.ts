import { lookupTag } from '../dicom/dictionary.js';
import type { DicomJson } from '../dicom/part10.js';
import type { Level } from '../store/attributes.js';
import { QueryError } from '../store/study-index.js';

/** Attributes QIDO-RS returns by default at each level (PS3.18 Table 10.6.3-3/4/5). */
export const QIDO_DEFAULTS: Record<'STUDY' | 'SERIES' | 'IMAGE', string[]> = {
  STUDY: ['00080005', '00080020', '00080030', '00080050', '00080056', '00080061', '00080090', '00080201', '00081190', '00100010', '00100020', '00100021', '00100030', '00100040', '0020000D', '00200010', '00201206', '00201208', '00081030'],
  SERIES: ['00080005', '00080060', '0008103E', '00200011', '0020000E', '00201209', '00400244', '00400245', '00400275', '00081190', '00080056', '00080021', '00180015'],
  IMAGE: ['00080005', '00080016', '00080018', '00080056', '00081190', '00200013', '00280010', '00280011', '00280100', '00280008', '00083002'],
};

export interface QidoRequest {
  keys: Map<string, string>;
  includeAll: boolean;
  include: Set<string>;
  limit?: number;
  offset: number;
  fuzzy: boolean;
}

const RESERVED = new Set(['includefield', 'limit', 'offset', 'fuzzymatching', 'orderby']);

/** Turns QIDO query parameters (keywords or tags, repeated or comma-separated includefield) into a request. */
export function parseQido(query: Record<string, string | string[] | undefined>): QidoRequest {
  const keys = new Map<string, string>();
  const include = new Set<string>();
  let includeAll = false;
  const list = (v: string | string[] | undefined) => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
  for (const raw of list(query.includefield)) {
    for (const f of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
      if (f === 'all') includeAll = true;
      else {
        const t = lookupTag(f);
        if (!t) throw new QueryError(`includefield: unknown attribute "${f}"`);
        include.add(t.tag);
      }
    }
  }
  for (const [name, value] of Object.entries(query)) {
    if (RESERVED.has(name.toLowerCase())) continue;
    const t = lookupTag(name);
    if (!t) throw new QueryError(`unknown query attribute "${name}"`);
    const values = list(value);
    if (values.length > 1) throw new QueryError(`${name} is given more than once`);
    keys.set(t.tag, values[0] ?? '');
    include.add(t.tag);
  }
  const int = (name: string, v: string | string[] | undefined) => {
    if (v === undefined) return undefined;
    const s = Array.isArray(v) ? v[0]! : v;
    if (!/^\d+$/.test(s)) throw new QueryError(`${name} must be a non-negative whole number`);
    return Number(s);
  };
  const fuzzy = String(list(query.fuzzymatching)[0] ?? 'false').toLowerCase() === 'true';
  return { keys, include, includeAll, limit: int('limit', query.limit), offset: int('offset', query.offset) ?? 0, fuzzy };
}

/** Keeps the default attributes of the level plus the included ones (PS3.18 10.6.3.3.1). */
export function shapeResult(attrs: DicomJson, level: Exclude<Level, 'PATIENT'>, req: QidoRequest, retrieveUrl: string, extraLevels: Array<'STUDY' | 'SERIES'>): DicomJson {
  attrs['00081190'] = { vr: 'UR', Value: [retrieveUrl] };
  if (req.includeAll) return attrs;
  const wanted = new Set([...QIDO_DEFAULTS[level], ...extraLevels.flatMap((l) => QIDO_DEFAULTS[l].filter((t) => t !== '00081190')), ...req.include]);
  const out: DicomJson = {};
  for (const t of [...wanted].sort()) if (attrs[t]) out[t] = attrs[t]!;
  return out;
}
