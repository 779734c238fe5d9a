import { str, type DicomJson } from '../dicom/part10.js';
import { fromPersonName } from './demographics.js';
import { INS_OIDS, validIns } from './ins.js';
import type { IncomingPatient } from './reconciler.js';

/** Issuer names under which senders write an INS (DRIM-M manifests: ASIP-SANTE-INS-NIR; imports here: INS). */
const INS_ISSUER = /^(ASIP-SANTE-INS-N(IR|IA)|INS(-NIR|-NIA|-C)?|1\.2\.250\.1\.213\.1\.4\.(8|9|10))$/i;

/**
 * The patient a DICOM data set describes, as another institution recorded it: its identifiers with their
 * issuers (Patient ID and Other Patient IDs Sequence), the INS among them when one carries a valid INS under an
 * INS issuer (name or OID, also in Issuer of Patient ID Qualifiers), and the demographics. Patient's Birth Name
 * (0010,1005), when present, is the birth name and the Patient's Name family part the used name.
 */
export function incomingPatientOf(ds: DicomJson): IncomingPatient {
  const ids: Array<{ id: string; issuer: string; oid?: string }> = [];
  const read = (item: DicomJson) => {
    const qualifiers = (item['00100024']?.Value?.[0] ?? {}) as DicomJson;
    ids.push({ id: str(item, '00100020'), issuer: str(item, '00100021'), oid: str(qualifiers, '00400032') || undefined });
  };
  read(ds);
  for (const item of (ds['00101002']?.Value ?? []) as DicomJson[]) read(item);
  const insId = ids.find((i) => validIns(i.id) && (INS_ISSUER.test(i.issuer) || (i.oid !== undefined && INS_OIDS.includes(i.oid))));
  const name = fromPersonName(str(ds, '00100010'));
  const birthName = fromPersonName(str(ds, '00101005')).family;
  return {
    ins: insId ? { value: insId.id, oid: insId.oid && INS_OIDS.includes(insId.oid) ? insId.oid : INS_OIDS.find((o) => o === insId.issuer) ?? '1.2.250.1.213.1.4.8' } : undefined,
    identifiers: ids.filter((i) => i !== insId && i.id && (i.issuer || i.oid)).map((i) => ({ id: i.id, issuer: i.oid ?? i.issuer })),
    demographics: {
      birthName: birthName || name.family,
      usedName: birthName && name.family && birthName !== name.family ? name.family : undefined,
      givenNames: name.given,
      birthDate: str(ds, '00100030'),
      sex: str(ds, '00100040') || undefined,
    },
  };
}
