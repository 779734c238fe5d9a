import { compareTraits, type Demographics, type TraitComparison } from './demographics.js';
import { validIns } from './ins.js';
import type { LocalIdentities } from './local-identities.js';
import type { Identifier, LocalPatient, PatientDirectory } from './patient-directory.js';

/** A patient as another institution (a routed study, a CD) describes it. */
export interface IncomingPatient {
  ins?: { value: string; oid: string };
  /** The sender's identifiers with their issuer (its IPP, other IDs it carried). */
  identifiers: Identifier[];
  demographics: Demographics;
}

export interface ScoredCandidate {
  localId: string;
  demographics: Demographics;
  source: string;
  traits: TraitComparison;
}

export type Reconciliation =
  | { kind: 'automatic'; localId: string; method: 'ins' | 'identifier' | 'demographics'; score?: number }
  | { kind: 'manual'; reason: string; candidates: ScoredCandidate[] };

/** Local patients born on a date, as the local PACS knows them (C-FIND), for sites without an ADT feed. */
export type PacsPatientsBornOn = (birthDate: string) => Promise<LocalPatient[]>;

/**
 * Thresholds of the demographic match. An automatic match needs the same birth date and sex, a family name
 * and a given name that agree closely, and no second local patient close enough to be confused with it (twins
 * share the birth date and the family name: the given name alone must then tell them apart beyond doubt).
 */
export const MATCH = { family: 0.8, given: 0.85, rivalFamily: 0.7, rivalGiven: 0.6, listed: 0.45 } as const;

/**
 * Matches an incoming patient to the local identity domain before anything of theirs reaches the local PACS:
 * INS first (exact, and its traits must not contradict the local record), then an identifier already known to
 * designate a local patient, then demographics with a score. Anything short of a safe, unique match goes to a
 * person: a wrong automatic match files images in another patient's record, a manual one only costs a click.
 */
export class IdentityReconciler {
  constructor(
    private readonly deps: { directory: PatientDirectory; identities?: LocalIdentities; pacsBornOn?: PacsPatientsBornOn },
  ) {}

  async reconcile(incoming: IncomingPatient): Promise<Reconciliation> {
    const { directory } = this.deps;
    const d = incoming.demographics;
    // The local PACS is asked once per reconciliation, whichever steps need its patients.
    let pacsPatients: Promise<LocalPatient[]> | undefined;
    const fromPacs = () => (pacsPatients ??= this.fromPacs(d.birthDate));
    const traitsOf = async (localId: string): Promise<ScoredCandidate | undefined> => {
      const p = (await directory.get(localId)) ?? (await fromPacs()).find((c) => c.localId === localId);
      return p ? { localId, demographics: p.demographics, source: p.source, traits: compareTraits(d, p.demographics) } : undefined;
    };
    // A national or cross-site identifier designates a patient, but the traits must still agree: an INS typed on
    // the wrong record, or reused, is an identity-monitoring incident, not something to file images under.
    const byIdentifier = async (localId: string, method: 'ins' | 'identifier', what: string): Promise<Reconciliation> => {
      const c = await traitsOf(localId);
      if (!c || (c.traits.birthDate && c.traits.family >= MATCH.rivalFamily)) return { kind: 'automatic', localId, method };
      return { kind: 'manual', reason: `${what} designates local patient ${localId}, whose birth date or name differ`, candidates: [c] };
    };
    if (incoming.ins && validIns(incoming.ins.value) && this.deps.identities) {
      const local = await this.deps.identities.lookup(incoming.ins.value);
      if (local) return byIdentifier(local.localId, 'ins', `INS ${incoming.ins.value}`);
    }
    const known = new Set<string>();
    for (const id of incoming.identifiers) {
      if (!id.id || !id.issuer) continue;
      const localId = await directory.byIdentifier(id);
      if (localId) known.add(localId);
    }
    if (known.size === 1) return byIdentifier([...known][0]!, 'identifier', 'a known identifier');
    if (known.size > 1) return { kind: 'manual', reason: `the incoming identifiers designate ${known.size} different local patients`, candidates: (await Promise.all([...known].map(traitsOf))).filter((c): c is ScoredCandidate => Boolean(c)) };

    const seen = new Map<string, LocalPatient>();
    for (const p of [...(await directory.bornOn(d.birthDate)), ...(await fromPacs())]) if (!seen.has(p.localId)) seen.set(p.localId, p);
    const scored = [...seen.values()].map((p) => ({ localId: p.localId, demographics: p.demographics, source: p.source, traits: compareTraits(d, p.demographics) })).sort((a, b) => b.traits.score - a.traits.score);
    const passing = scored.filter((c) => c.traits.birthDate && c.traits.sex && c.traits.family >= MATCH.family && c.traits.given >= MATCH.given);
    const rivals = scored.filter((c) => c.traits.birthDate && c.traits.family >= MATCH.rivalFamily && c.traits.given >= MATCH.rivalGiven);
    const listed = scored.filter((c) => c.traits.score >= MATCH.listed).slice(0, 5);
    if (passing.length === 1 && rivals.length === 1) return { kind: 'automatic', localId: passing[0]!.localId, method: 'demographics', score: passing[0]!.traits.score };
    if (rivals.length > 1) return { kind: 'manual', reason: `${rivals.length} local patients born the same day have close names`, candidates: listed };
    if (scored.length && listed.length) return { kind: 'manual', reason: 'no local patient matches closely enough', candidates: listed };
    return { kind: 'manual', reason: 'no local patient is known with these traits', candidates: [] };
  }

  /**
   * Remembers a decision (automatic or a person's), so the next exam of the same patient from the same sender
   * is matched by identifier at once.
   */
  async remember(incoming: IncomingPatient, localId: string, source: string): Promise<void> {
    for (const id of incoming.identifiers) if (id.id && id.issuer) await this.deps.directory.addIdentifier(id, localId, source);
    if (incoming.ins && validIns(incoming.ins.value) && this.deps.identities) await this.deps.identities.record(incoming.ins.value, incoming.ins.oid, localId, source);
  }

  private async fromPacs(birthDate: string): Promise<LocalPatient[]> {
    if (!this.deps.pacsBornOn || !birthDate) return [];
    return this.deps.pacsBornOn(birthDate).catch(() => []);
  }
}
