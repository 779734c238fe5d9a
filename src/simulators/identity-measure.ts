import type { Population, SiteRecord } from './population.js';
import { INS_OID } from '../identity/ins.js';
import type { LocalIdentities } from '../identity/local-identities.js';
import type { PatientDirectory } from '../identity/patient-directory.js';
import type { IdentityReconciler, IncomingPatient } from '../identity/reconciler.js';

export interface ReconciliationMeasure {
  pairs: number;
  automaticPairs: number;
  automaticShare: number;
  /** Automatic matches to the wrong local patient, pairs and strangers together: must be zero. */
  wrongAutomatic: number;
  strangers: number;
  strangersMatched: number;
  byMethod: Record<string, number>;
  /** Defects of the pairs left to a person, counted, to show where the matcher gives up. */
  manualDefects: Record<string, number>;
  wrongExamples: Array<{ record: SiteRecord; matched: string }>;
}

/** Loads the receiving site's patients into its identity domain (as its ADT feed would). */
export async function loadLocalPopulation(pop: Population, directory: PatientDirectory, identities: LocalIdentities): Promise<void> {
  for (const p of pop.local) {
    await directory.upsert({ localId: p.key, demographics: p.demographics, source: 'hl7-adt' });
    if (p.ins) await identities.record(p.ins, INS_OID.nir, p.key, 'hl7-adt');
  }
}

export function incomingOf(rec: SiteRecord): IncomingPatient {
  return { ins: rec.ins ? { value: rec.ins, oid: INS_OID.nir } : undefined, identifiers: [{ id: rec.ipp, issuer: 'CHU-A' }], demographics: rec.demographics };
}

/** Reconciles every record of the other site and counts automatic, wrong and manual outcomes. Learns nothing. */
export async function measureReconciliation(pop: Population, reconciler: IdentityReconciler): Promise<ReconciliationMeasure> {
  const m: ReconciliationMeasure = { pairs: pop.pairs.length, automaticPairs: 0, automaticShare: 0, wrongAutomatic: 0, strangers: pop.strangers.length, strangersMatched: 0, byMethod: {}, manualDefects: {}, wrongExamples: [] };
  for (const rec of [...pop.pairs, ...pop.strangers]) {
    const r = await reconciler.reconcile(incomingOf(rec));
    if (r.kind === 'automatic') {
      m.byMethod[r.method] = (m.byMethod[r.method] ?? 0) + 1;
      if (r.localId === rec.truth) m.automaticPairs++;
      else {
        m.wrongAutomatic++;
        if (!rec.truth) m.strangersMatched++;
        if (m.wrongExamples.length < 10) m.wrongExamples.push({ record: rec, matched: r.localId });
      }
    } else if (rec.truth) for (const d of rec.defects) m.manualDefects[d] = (m.manualDefects[d] ?? 0) + 1;
  }
  m.automaticShare = m.pairs ? m.automaticPairs / m.pairs : 0;
  return m;
}
