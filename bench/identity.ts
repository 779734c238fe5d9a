/**
 * npm run bench:identity — identity reconciliation on a generated cross-site population (5,000 patients at the
 * receiving site; 1,000 records of some of them held by another site, with typing errors, lost accents, swapped
 * or missing given names, married names, no INS for about half, twins; 300 patients the receiving site has never
 * seen, a third of them namesakes born the same day as a local patient). Prints the share reconciled
 * automatically and the number of wrong automatic matches. BENCH_SEED changes the population.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../src/store/db.js';
import { migrateToLatest } from '../src/store/migrations.js';
import { generatePopulation } from '../src/simulators/population.js';
import { LocalIdentities } from '../src/identity/local-identities.js';
import { loadLocalPopulation, measureReconciliation } from '../src/simulators/identity-measure.js';
import { PatientDirectory } from '../src/identity/patient-directory.js';
import { IdentityReconciler } from '../src/identity/reconciler.js';

const seed = Number(process.env.BENCH_SEED ?? 20261203);
const dir = mkdtempSync(path.join(tmpdir(), 'bench-identity-'));
const database = process.env.DATABASE_URL ? openDatabase({ databaseUrl: process.env.DATABASE_URL, dataDir: dir }) : openDatabase({ dataDir: dir });
try {
  await migrateToLatest(database.db, database.dialect);
  const pop = generatePopulation({ seed, localPatients: 5000, pairs: 1000, strangers: 300 });
  const directory = new PatientDirectory(database.db, 'CABINET-B');
  const identities = new LocalIdentities(database.db, 'CABINET-B');
  await loadLocalPopulation(pop, directory, identities);
  const started = performance.now();
  const m = await measureReconciliation(pop, new IdentityReconciler({ directory, identities }));
  const seconds = (performance.now() - started) / 1000;
  const defects = pop.pairs.flatMap((p) => p.defects).reduce<Record<string, number>>((acc, d) => ({ ...acc, [d]: (acc[d] ?? 0) + 1 }), {});
  console.log(`population (seed ${seed}): ${pop.local.length} local patients (${pop.local.filter((p) => p.twinOf).length} twins), ${m.pairs} cross-site pairs, ${m.strangers} unknown patients`);
  console.log(`defects in the pairs: ${Object.entries(defects).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`reconciled automatically: ${m.automaticPairs}/${m.pairs} = ${(100 * m.automaticShare).toFixed(1)}% (target ≥ 90%)  by ${Object.entries(m.byMethod).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`wrong automatic matches: ${m.wrongAutomatic} (target 0); unknown patients matched to someone: ${m.strangersMatched}`);
  console.log(`left to a person, by defect: ${Object.entries(m.manualDefects).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`${m.pairs + m.strangers} reconciliations in ${seconds.toFixed(2)} s (${database.dialect})`);
  for (const w of m.wrongExamples) console.log('WRONG', JSON.stringify(w));
} finally {
  await database.close();
  rmSync(dir, { recursive: true, force: true });
}
