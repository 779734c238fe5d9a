/** SOP classes and transfer syntaxes the DIMSE layer negotiates (PS3.4, PS3.5). */
export const SopClass = {
  Verification: '1.2.840.10008.1.1',
  PatientRootFind: '1.2.840.10008.5.1.4.1.2.1.1',
  PatientRootMove: '1.2.840.10008.5.1.4.1.2.1.2',
  PatientRootGet: '1.2.840.10008.5.1.4.1.2.1.3',
  StudyRootFind: '1.2.840.10008.5.1.4.1.2.2.1',
  StudyRootMove: '1.2.840.10008.5.1.4.1.2.2.2',
  StudyRootGet: '1.2.840.10008.5.1.4.1.2.2.3',
  ModalityWorklistFind: '1.2.840.10008.5.1.4.31',
} as const;

export const QUERY_RETRIEVE: Record<string, { model: 'PATIENT' | 'STUDY'; op: 'FIND' | 'MOVE' | 'GET' }> = {
  [SopClass.PatientRootFind]: { model: 'PATIENT', op: 'FIND' },
  [SopClass.PatientRootMove]: { model: 'PATIENT', op: 'MOVE' },
  [SopClass.PatientRootGet]: { model: 'PATIENT', op: 'GET' },
  [SopClass.StudyRootFind]: { model: 'STUDY', op: 'FIND' },
  [SopClass.StudyRootMove]: { model: 'STUDY', op: 'MOVE' },
  [SopClass.StudyRootGet]: { model: 'STUDY', op: 'GET' },
};

export const TransferSyntax = {
  ImplicitLE: '1.2.840.10008.1.2',
  ExplicitLE: '1.2.840.10008.1.2.1',
  DeflatedExplicitLE: '1.2.840.10008.1.2.1.99',
  ExplicitBE: '1.2.840.10008.1.2.2',
} as const;

/**
 * Storage SOP classes: the standard ones live under 1.2.840.10008.5.1.4.1.1 (plus a few newer roots);
 * any non-standard (private) abstract syntax is treated as storage too, as PACS do.
 */
const STORAGE_ROOTS = ['1.2.840.10008.5.1.4.1.1.', '1.2.840.10008.5.1.4.34.', '1.2.840.10008.5.1.4.43.', '1.2.840.10008.5.1.4.44.', '1.2.840.10008.5.1.4.45.'];

/**
 * Image Storage SOP classes (PS3.4 B.5): objects that must carry pixel data (CR, DX/MG/IO, US, CT, MR and their
 * enhanced forms, NM, SC, XA/RF, breast tomosynthesis, parametric maps, VL, PET, RT Image). MR spectroscopy,
 * SR, KOS, presentation states, waveforms, encapsulated documents and RT objects other than RT Image are not.
 */
const IMAGE_STORAGE = /^1\.2\.840\.10008\.5\.1\.4\.1\.1\.(1|1\.\d+(\.\d+)?|2(\.\d)?|3\.1|4(\.[134])?|6\.[12]|7(\.\d)?|12\.\d+(\.1)?|13\.1\.\d|20|30|77\.1\.\d+(\.\d+)?|128(\.1)?|130|481\.1)$/;
export function isImageSopClass(uid: string): boolean {
  return IMAGE_STORAGE.test(uid);
}

export function isStorageSopClass(uid: string): boolean {
  if (STORAGE_ROOTS.some((r) => uid.startsWith(r))) return true;
  return !uid.startsWith('1.2.840.10008.');
}

/** The transfer syntax to accept for a storage context: keep any compressed syntax as received; else prefer explicit. */
export function chooseStorageSyntax(proposed: string[]): string | undefined {
  const native = new Set<string>([TransferSyntax.ImplicitLE, TransferSyntax.ExplicitLE, TransferSyntax.ExplicitBE, TransferSyntax.DeflatedExplicitLE]);
  const compressed = proposed.find((ts) => !native.has(ts) && /^[0-9.]+$/.test(ts));
  if (compressed) return compressed;
  for (const ts of [TransferSyntax.ExplicitLE, TransferSyntax.ImplicitLE, TransferSyntax.DeflatedExplicitLE, TransferSyntax.ExplicitBE]) if (proposed.includes(ts)) return ts;
  return undefined;
}

export function chooseCommandSyntax(proposed: string[]): string | undefined {
  for (const ts of [TransferSyntax.ExplicitLE, TransferSyntax.ImplicitLE]) if (proposed.includes(ts)) return ts;
  return undefined;
}
