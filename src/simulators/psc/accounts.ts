/**
 * Test accounts of the Pro Santé Connect stand-in. Identifiers use the RPPS test range (8997…) of the ANS test
 * card families; claims follow the PSC UserInfo shape (SubjectNameID = "8" + RPPS, SubjectRefPro.exercices with
 * profession and know-how codes).
 */
export interface TestPractitioner {
  kind: 'practitioner';
  /** PSC `sub`. */
  sub: string;
  rpps: string;
  familyName: string;
  givenName: string;
  /** TRE_G15 profession code (10 = médecin, 60 = infirmier…) and TRE_R38 know-how (SM26 = radiologie, SM54 = médecine générale). */
  profession: string;
  specialty: string;
  label: string;
}

export interface TestPatient {
  kind: 'patient';
  sub: string;
  ins: string;
  insOid: string;
  familyName: string;
  givenName: string;
  birthDate: string;
  sex: 'M' | 'F';
  label: string;
}

export type TestAccount = TestPractitioner | TestPatient;

export const TEST_ACCOUNTS: TestAccount[] = [
  { kind: 'practitioner', sub: 'f6c1a7d2-psc-0001', rpps: '899700218896', familyName: 'RADIO', givenName: 'Jeanne', profession: '10', specialty: 'SM26', label: 'Dr Jeanne RADIO, radiologue' },
  { kind: 'practitioner', sub: 'f6c1a7d2-psc-0002', rpps: '899700367917', familyName: 'GENERALISTE', givenName: 'Paul', profession: '10', specialty: 'SM54', label: 'Dr Paul GENERALISTE, médecin généraliste' },
  { kind: 'practitioner', sub: 'f6c1a7d2-psc-0003', rpps: '899700245670', familyName: 'CARDIO', givenName: 'Lucie', profession: '10', specialty: 'SM04', label: 'Dr Lucie CARDIO, cardiologue' },
  { kind: 'patient', sub: 'f6c1a7d2-pat-0001', ins: '280067512345690', insOid: '1.2.250.1.213.1.4.10', familyName: 'PAT-ECHANGE', givenName: 'CAMILLE', birthDate: '1980-06-15', sex: 'F', label: 'Camille PAT-ECHANGE (patiente)' },
];

/** The PIN every test e-CPS accepts. */
export const TEST_PIN = '1234';

/** UserInfo claims as PSC returns them for the scope `scope_all`. */
export function userInfoClaims(a: TestAccount): Record<string, unknown> {
  if (a.kind === 'patient') {
    return { sub: a.sub, family_name: a.familyName, given_name: a.givenName, birthdate: a.birthDate, gender: a.sex === 'F' ? 'female' : 'male', ins: a.ins, ins_oid: a.insOid, preferred_username: a.ins };
  }
  return {
    sub: a.sub,
    SubjectNameID: `8${a.rpps}`,
    preferred_username: `8${a.rpps}`,
    family_name: a.familyName,
    given_name: a.givenName,
    SubjectRefPro: {
      codeCivilite: 'DR',
      exercices: [{ codeProfession: a.profession, codeCategorieProfessionnelle: 'C', codeSavoirFaire: a.specialty, codeTypeSavoirFaire: 'S', activities: [] }],
    },
    SubjectOrganization: 'Organisation de test',
  };
}
