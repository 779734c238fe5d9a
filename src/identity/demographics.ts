import levenshtein from 'damerau-levenshtein';

/**
 * A patient's identity traits as the French identity rules know them (référentiel national d'identitovigilance):
 * birth name and the list of birth given names are the strict traits; the used name (often a married name) is
 * what many systems print instead.
 */
export interface Demographics {
  birthName: string;
  usedName?: string;
  /** Birth given names, first one first. */
  givenNames: string[];
  /** YYYYMMDD. */
  birthDate: string;
  sex?: string;
}

/**
 * The form names are compared in: upper case, without diacritics (É→E, Ç→C, Œ→OE), apostrophes removed
 * (D'ALMEIDA→DALMEIDA), hyphens and runs of spaces made one space, anything else that is not a letter dropped.
 */
export function normaliseName(value: string): string {
  return value
    .normalize('NFD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[Œœ]/g, 'OE')
    .replace(/[Ææ]/g, 'AE')
    .replace(/ß/g, 'SS')
    .toUpperCase()
    .replace(/['’`´]/g, '')
    .replace(/[-_,.\s]+/g, ' ')
    .replace(/[^A-Z ]/g, '')
    .trim();
}

/** Similarity 0..1 of two normalised names, spaces ignored (LE GALL = LEGALL), transpositions counted once. */
export function nameSimilarity(a: string, b: string): number {
  const x = normaliseName(a).replace(/ /g, '');
  const y = normaliseName(b).replace(/ /g, '');
  if (!x || !y) return 0;
  if (x === y) return 1;
  return Math.max(0, 1 - levenshtein(x, y).steps / Math.max(x.length, y.length));
}

/**
 * Family names: the best agreement between any of the incoming names (birth, used) and any of the candidate's,
 * and one part of a compound name standing for the whole (MARTIN-DUPONT recorded as MARTIN) at a reduced weight.
 */
export function familySimilarity(incoming: Demographics, candidate: Demographics): number {
  const mine = [incoming.birthName, incoming.usedName].filter((n): n is string => Boolean(n && normaliseName(n)));
  const theirs = [candidate.birthName, candidate.usedName].filter((n): n is string => Boolean(n && normaliseName(n)));
  let best = 0;
  for (const a of mine)
    for (const b of theirs) {
      best = Math.max(best, nameSimilarity(a, b));
      const pa = normaliseName(a).split(' ');
      const pb = normaliseName(b).split(' ');
      if (pa.length !== pb.length && (pa.length > 1 || pb.length > 1)) {
        const [short, long] = pa.length < pb.length ? [pa, pb] : [pb, pa];
        if (short.every((p) => long.includes(p))) best = Math.max(best, 0.9);
      }
    }
  return best;
}

/** A given-name list split into names; a compound given name (JEAN-PIERRE) stays one name. */
function givenList(names: string[]): string[] {
  return names.flatMap((n) => n.split(/[,\s]+/)).map((n) => normaliseName(n).replace(/ /g, '')).filter(Boolean);
}

/**
 * Given names: the first given names compared; systems also disagree on the order (MARIE ANNE vs ANNE MARIE),
 * which counts as agreement when both sides list several names and each one's first is among the other's.
 * A single name that is only someone's second given name is weak evidence (a sibling may bear it): 0.8 at most.
 */
export function givenSimilarity(incoming: Demographics, candidate: Demographics): number {
  const a = givenList(incoming.givenNames);
  const b = givenList(candidate.givenNames);
  if (!a.length || !b.length) return 0;
  const bestIn = (x: string, ys: string[]) => Math.max(0, ...ys.map((y) => nameSimilarity(x, y)));
  let best = Math.max(nameSimilarity(a[0]!, b[0]!), nameSimilarity(a.join(''), b.join('')));
  if (a.length > 1 && b.length > 1) best = Math.max(best, Math.min(bestIn(a[0]!, b), bestIn(b[0]!, a)));
  else best = Math.max(best, 0.8 * Math.max(bestIn(a[0]!, b.slice(1)), bestIn(b[0]!, a.slice(1))));
  return best;
}

export interface TraitComparison {
  score: number;
  family: number;
  given: number;
  birthDate: boolean;
  sex: boolean;
}

/** How far two identities agree, trait by trait; score 0..1. */
export function compareTraits(incoming: Demographics, candidate: Demographics): TraitComparison {
  const family = familySimilarity(incoming, candidate);
  const given = givenSimilarity(incoming, candidate);
  const birthDate = Boolean(incoming.birthDate) && incoming.birthDate === candidate.birthDate;
  const sexKnown = (s?: string) => s === 'M' || s === 'F';
  const sex = !sexKnown(incoming.sex) || !sexKnown(candidate.sex) || incoming.sex === candidate.sex;
  const score = (birthDate ? 0.3 : 0) + (sex ? 0.1 : 0) + 0.3 * family + 0.3 * given;
  return { score: Math.round(score * 1000) / 1000, family, given, birthDate, sex };
}

/** Parses a DICOM Person Name (FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX) into family and given names. */
export function fromPersonName(pn: string): { family: string; given: string[] } {
  const [family = '', given = '', middle = ''] = pn.split('=')[0]!.split('^');
  return { family, given: [given, ...middle.split(/\s+/)].map((g) => g.trim()).filter(Boolean) };
}
