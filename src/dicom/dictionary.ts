import dcmjs from 'dcmjs';

const { DicomMetaDictionary } = dcmjs.data;

export interface TagInfo {
  tag: string; // GGGGEEEE, upper case
  vr: string;
  keyword: string;
}

/** Resolves a keyword (PatientName) or a hex tag (00100010, 0010,0010, (0010,0010)) against the DICOM dictionary. */
export function lookupTag(keyOrTag: string): TagInfo | undefined {
  const k = keyOrTag.trim();
  const hex = k.replace(/[(),\s]/g, '').toUpperCase();
  if (/^[0-9A-F]{8}$/.test(hex)) {
    const entry = DicomMetaDictionary.dictionary[`(${hex.slice(0, 4)},${hex.slice(4)})`];
    return { tag: hex, vr: entry?.vr ?? 'UN', keyword: entry?.name ?? hex };
  }
  const entry = DicomMetaDictionary.nameMap[k];
  if (!entry) return undefined;
  return { tag: String(entry.tag).replace(/[(),]/g, '').toUpperCase(), vr: String(entry.vr).split('|')[0]!.replace('xs', 'US'), keyword: k };
}

export function keywordOf(tag: string): string {
  const entry = DicomMetaDictionary.dictionary[`(${tag.slice(0, 4)},${tag.slice(4)})`];
  return entry?.name ?? tag;
}
