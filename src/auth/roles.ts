import type { Professional } from './professional-token.js';

/**
 * Who may do what. Practitioners get their roles from Pro Santé Connect (profession and know-how) and from the
 * configuration (administrators by national identifier); patients and correspondents reach one exam through a
 * share link; other boxes and DICOM peers are authorised by the trust list and the AE allow-list.
 * docs/security.md holds the full matrix; test/security/authorization-matrix.int.test.ts checks every cell.
 */
export type Role = 'administrator' | 'radiologist' | 'requesting-physician';

export type Permission = 'exams.view' | 'exams.import' | 'prefetch.view' | 'identity.reconcile' | 'media.import' | 'routing.operate' | 'publications.operate' | 'audit.view';

/**
 * Administrators (IT, identity monitoring) run the box and handle identities and media, but do not browse
 * patients' exams in the DMP; requesting physicians browse the exams of their patients but do not write into
 * the PACS; radiologists do both.
 */
export const PERMISSIONS: Record<Permission, Role[]> = {
  'exams.view': ['radiologist', 'requesting-physician'],
  'exams.import': ['radiologist'],
  'prefetch.view': ['radiologist', 'administrator'],
  'identity.reconcile': ['radiologist', 'administrator'],
  'media.import': ['radiologist', 'administrator'],
  'routing.operate': ['radiologist', 'administrator'],
  'publications.operate': ['administrator'],
  'audit.view': ['administrator'],
};

export interface RolesConfig {
  /** PSC national identifiers ("8" + RPPS) of the administrators. */
  administrators: string[];
  /** Know-how codes (TRE_R38) that make a physician a radiologist here. */
  radiologistSpecialties: string[];
  /** Profession codes (TRE_G15) allowed to request and view exams: 10 physician, 40 dentist, 50 midwife. */
  requestingProfessions: string[];
}

export function rolesOf(pro: Professional, cfg: RolesConfig): Role[] {
  const roles: Role[] = [];
  if (cfg.administrators.includes(pro.id)) roles.push('administrator');
  if (pro.profession === '10' && pro.specialty && cfg.radiologistSpecialties.includes(pro.specialty)) roles.push('radiologist');
  else if (pro.profession && cfg.requestingProfessions.includes(pro.profession)) roles.push('requesting-physician');
  return roles;
}

export function allowed(roles: Role[], permission: Permission): boolean {
  return roles.some((r) => PERMISSIONS[permission].includes(r));
}
