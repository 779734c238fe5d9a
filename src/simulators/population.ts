/**
 * A generated but realistic patient population shared by two sites, to measure identity reconciliation:
 * the receiving site's patients (with INS for most, used/married names, twins), and the records another site
 * holds for some of them, with the defects seen in the field: typing errors, lost accents, given names in
 * another order or only the first one, the married name in place of the birth name, hyphens and apostrophes
 * written differently, no INS. Plus patients the receiving site has never seen, some sharing a birth date and a
 * family name with a local patient. Deterministic for a seed.
 */
import type { Demographics } from '../identity/demographics.js';

const FAMILY = [
  'MARTIN', 'BERNARD', 'THOMAS', 'PETIT', 'ROBERT', 'RICHARD', 'DURAND', 'DUBOIS', 'MOREAU', 'LAURENT', 'SIMON', 'MICHEL', 'LEFÈVRE', 'LEROY', 'ROUX', 'DAVID', 'BERTRAND', 'MOREL', 'FOURNIER', 'GIRARD',
  'BONNET', 'DUPONT', 'LAMBERT', 'FONTAINE', 'ROUSSEAU', 'VINCENT', 'MÜLLER', 'LEFEBVRE', 'FAURE', 'ANDRÉ', 'MERCIER', 'BLANC', 'GUÉRIN', 'BOYER', 'GARNIER', 'CHEVALIER', 'FRANÇOIS', 'LEGRAND', 'GAUTHIER', 'GARCIA',
  'PERRIN', 'ROBIN', 'CLÉMENT', 'MORIN', 'NICOLAS', 'HENRY', 'ROUSSEL', 'MATHIEU', 'GAUTIER', 'MASSON', 'MARCHAND', 'DUVAL', 'DENIS', 'DUMONT', 'MARIE', 'LEMAIRE', 'NOËL', 'MEYER', 'DUFOUR', 'MEUNIER',
  'BRUN', 'BLANCHARD', 'GIRAUD', 'JOLY', 'RIVIÈRE', 'LUCAS', 'BRUNET', 'GAILLARD', 'BARBIER', 'ARNAUD', 'MARTINEZ', 'GÉRARD', 'ROCHE', 'RENARD', 'SCHMITT', 'ROY', 'LEROUX', 'COLIN', 'VIDAL', 'CARON',
  'PICARD', 'ROGER', 'FABRE', 'AUBERT', 'LEMOINE', 'RENAUD', 'DUMAS', 'LACROIX', 'OLIVIER', 'PHILIPPE', 'BOURGEOIS', 'PIERRE', 'BENOÎT', 'REY', 'LECLERC', 'PAYET', 'ROLLAND', 'LECLERCQ', 'GUILLAUME', 'LECOMTE',
  "D'ALMEIDA", "N'DIAYE", 'LE GALL', 'LE BIHAN', 'DE LA FONTAINE', 'DA SILVA', 'DOS SANTOS', 'NGUYEN', 'TRAN', 'BEN AHMED', 'HADDAD', 'KOWALSKI', 'PÉREZ', 'GONÇALVES', 'CŒUR', 'DESCHÊNES', 'L’HÔTE', 'SAINT-JUST', 'MARTIN-DUPONT', 'LÉVÊQUE',
  'BARRÉ', 'CHAPUIS', 'HUET', 'CARPENTIER', 'PERROT', 'COLLET', 'PRÉVOST', 'JACQUET', 'BESNARD', 'TESSIER', 'CHARPENTIER', 'POIRIER', 'BAILLY', 'HERVÉ', 'SCHNEIDER', 'MAILLARD', 'LEBRUN', 'RENAULT', 'MARECHAL', 'LEBLANC',
];
const MALE = ['JEAN', 'PIERRE', 'MICHEL', 'ANDRÉ', 'PHILIPPE', 'RENÉ', 'LOUIS', 'ALAIN', 'JACQUES', 'BERNARD', 'MARCEL', 'DANIEL', 'ROGER', 'ROBERT', 'PAUL', 'CLAUDE', 'CHRISTIAN', 'HENRI', 'GEORGES', 'NICOLAS', 'FRANÇOIS', 'PATRICK', 'GÉRARD', 'CHRISTOPHE', 'JOSEPH', 'JULIEN', 'THOMAS', 'LUCAS', 'HUGO', 'LÉO', 'GABRIEL', 'RAPHAËL', 'ARTHUR', 'JULES', 'MAËL', 'NOÉ', 'ÉTIENNE', 'JÉRÔME', 'FRÉDÉRIC', 'STÉPHANE', 'JEAN-PIERRE', 'JEAN-MARC', 'JEAN-LUC', 'MOHAMED', 'KARIM', 'YANNICK', 'LOÏC', 'GAËTAN', 'BENOÎT', 'CÉDRIC', 'ANTOINE', 'MATHIEU', 'XAVIER', 'VINCENT', 'OLIVIER', 'SÉBASTIEN', 'DAVID', 'ÉRIC', 'DIDIER', 'YVES'];
const FEMALE = ['MARIE', 'JEANNE', 'FRANÇOISE', 'MONIQUE', 'CATHERINE', 'NATHALIE', 'ISABELLE', 'JACQUELINE', 'ANNE', 'SYLVIE', 'MARTINE', 'MADELEINE', 'NICOLE', 'SUZANNE', 'HÉLÈNE', 'CHRISTINE', 'MARGUERITE', 'DENISE', 'LOUISE', 'CHRISTIANE', 'EMMA', 'JADE', 'LOUISE', 'ALICE', 'CHLOÉ', 'LÉA', 'MANON', 'INÈS', 'CAMILLE', 'ZOÉ', 'LÉNA', 'ANAÏS', 'SÉVERINE', 'AURÉLIE', 'CÉLINE', 'ÉLODIE', 'MARIE-CLAIRE', 'MARIE-HÉLÈNE', 'ANNE-SOPHIE', 'FATIMA', 'AÏCHA', 'NOÉMIE', 'MAËLLE', 'CLÉMENCE', 'GENEVIÈVE', 'THÉRÈSE', 'JOSÉPHINE', 'VÉRONIQUE', 'SANDRINE', 'VALÉRIE', 'STÉPHANIE', 'ÉMILIE', 'JULIE', 'SOPHIE', 'PAULINE', 'AGATHE', 'CLARA', 'ROSE', 'LINA', 'YASMINE'];

/** A small deterministic PRNG (mulberry32), so a population and its measure can be reproduced. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Person {
  key: string;
  demographics: Demographics;
  ins?: string;
  /** The person this one is a twin of, if any. */
  twinOf?: string;
}

export interface SiteRecord {
  /** Who this really is: a Person key of the receiving site, or undefined for a patient it has never seen. */
  truth?: string;
  ipp: string;
  ins?: string;
  demographics: Demographics;
  /** The defects applied, for reporting. */
  defects: string[];
}

export interface Population {
  local: Person[];
  /** The other site's records of patients the receiving site knows (the cross-site pairs). */
  pairs: SiteRecord[];
  /** The other site's records of patients the receiving site has never seen. */
  strangers: SiteRecord[];
}

/** A NIR with a correct control key: sex, birth year and month, department, commune, order number. */
function nir(r: () => number, sex: string, birthDate: string): string {
  const body = `${sex === 'F' ? 2 : 1}${birthDate.slice(2, 4)}${birthDate.slice(4, 6)}${String(1 + Math.floor(r() * 95)).padStart(2, '0')}${String(Math.floor(r() * 999) + 1).padStart(3, '0')}${String(Math.floor(r() * 999) + 1).padStart(3, '0')}`;
  const key = 97 - Number(BigInt(body) % 97n);
  return `${body}${String(key).padStart(2, '0')}`;
}

export function generatePopulation(opts: { seed?: number; localPatients?: number; pairs?: number; strangers?: number } = {}): Population {
  const r = rng(opts.seed ?? 20261203);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const nLocal = opts.localPatients ?? 5000;
  const nPairs = opts.pairs ?? 1000;
  const nStrangers = opts.strangers ?? 300;
  const birthDate = () => {
    const y = 1930 + Math.floor(r() * 95);
    const m = 1 + Math.floor(r() * 12);
    const d = 1 + Math.floor(r() * 28);
    return `${y}${String(m).padStart(2, '0')}${String(d).padStart(2, '0')}`;
  };
  const givenFor = (sex: string, n: number) => {
    const pool = sex === 'F' ? FEMALE : MALE;
    const out: string[] = [];
    while (out.length < n) {
      const g = pick(pool);
      if (!out.includes(g)) out.push(g);
    }
    return out;
  };
  const person = (key: string): Person => {
    const sex = r() < 0.5 ? 'F' : 'M';
    const bd = birthDate();
    const birthName = r() < 0.05 ? `${pick(FAMILY)}-${pick(FAMILY)}` : pick(FAMILY);
    const married = sex === 'F' && Number(bd.slice(0, 4)) < 2000 && r() < 0.55;
    const demographics: Demographics = { birthName, usedName: married ? pick(FAMILY) : undefined, givenNames: givenFor(sex, 1 + Math.floor(r() * 3)), birthDate: bd, sex };
    return { key, demographics, ins: r() < 0.75 ? nir(r, sex, bd) : undefined };
  };

  const local: Person[] = [];
  while (local.length < nLocal) {
    const p = person(`L${local.length + 1}`);
    local.push(p);
    // Twins: same birth date and birth name, often the same sex, never the same first given name.
    if (r() < 0.03 && local.length < nLocal) {
      const sex = r() < 0.6 ? p.demographics.sex! : p.demographics.sex === 'F' ? 'M' : 'F';
      let given = givenFor(sex, p.demographics.givenNames.length);
      while (given[0] === p.demographics.givenNames[0]) given = givenFor(sex, given.length);
      local.push({ key: `L${local.length + 1}`, twinOf: p.key, ins: r() < 0.75 ? nir(r, sex, p.demographics.birthDate) : undefined, demographics: { ...p.demographics, usedName: undefined, sex, givenNames: given } });
    }
  }

  const stripAccents = (s: string) => s.normalize('NFD').replace(/[\u0300-\u036f]/g, '');
  const typo = (s: string): string => {
    const letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
    if (s.length < 4) return s;
    const i = 1 + Math.floor(r() * (s.length - 2));
    const kind = Math.floor(r() * 4);
    if (kind === 0) return s.slice(0, i) + pick(letters.split('')) + s.slice(i + 1); // substitution
    if (kind === 1) return s.slice(0, i) + s.slice(i + 1); // omission
    if (kind === 2) return s.slice(0, i) + s[i] + s.slice(i); // doubled letter
    return s.slice(0, i) + s[i + 1] + s[i] + s.slice(i + 2); // transposition
  };
  let ipp = 100000;
  const recordOf = (p: Person, truth?: string): SiteRecord => {
    const defects: string[] = [];
    const d = p.demographics;
    let birthName = d.birthName;
    let usedName = d.usedName;
    let given = [...d.givenNames];
    let ins = p.ins;
    if (ins && r() < 0.45) {
      ins = undefined;
      defects.push('no INS');
    } else if (!ins) defects.push('no INS');
    if (usedName && r() < 0.5) {
      // The other site only knows the married name, printed as the family name.
      birthName = usedName;
      usedName = undefined;
      defects.push('married name as family name');
    }
    if (r() < 0.5) {
      birthName = stripAccents(birthName);
      given = given.map(stripAccents);
      defects.push('accents lost');
    }
    if (/[-' ’]/.test(birthName) && r() < 0.5) {
      birthName = birthName.replace(/[-’']/g, ' ').replace(/ +/g, r() < 0.5 ? ' ' : '');
      defects.push('hyphen/apostrophe written differently');
    }
    if (r() < 0.12) {
      birthName = typo(birthName);
      defects.push('typo in family name');
    }
    if (given.length > 1 && r() < 0.25) {
      given = [given[1]!, given[0]!, ...given.slice(2)];
      defects.push('given names swapped');
    } else if (given.length > 1 && r() < 0.35) {
      given = [given[0]!];
      defects.push('first given name only');
    }
    if (r() < 0.08) {
      given = [typo(given[0]!), ...given.slice(1)];
      defects.push('typo in given name');
    }
    if (r() < 0.3) {
      birthName = birthName.toLowerCase();
      given = given.map((g) => g.charAt(0) + g.slice(1).toLowerCase());
      defects.push('case');
    }
    return { truth, ipp: `A${ipp++}`, ins, demographics: { birthName, usedName, givenNames: given, birthDate: d.birthDate, sex: d.sex }, defects };
  };

  // Twins are over-represented among the pairs: they are the hard case a matcher must not get wrong.
  const twins = local.filter((p) => p.twinOf);
  const chosen = new Set<Person>(twins.slice(0, Math.min(twins.length, Math.floor(nPairs / 10))));
  while (chosen.size < Math.min(nPairs, local.length)) chosen.add(pick(local));
  const pairs = [...chosen].map((p) => recordOf(p, p.key));

  const strangers: SiteRecord[] = [];
  for (let i = 0; i < nStrangers; i++) {
    const s = person(`S${i + 1}`);
    // A third are relatives or namesakes of a local patient: same family name and birth date, another person.
    if (i % 3 === 0) {
      const l = pick(local);
      let given = givenFor(l.demographics.sex!, 1);
      while (local.some((o) => o.demographics.birthDate === l.demographics.birthDate && o.demographics.givenNames[0] === given[0])) given = givenFor(l.demographics.sex!, 1);
      s.demographics = { ...l.demographics, usedName: undefined, givenNames: given };
    }
    strangers.push(recordOf(s));
  }
  return { local, pairs, strangers };
}
