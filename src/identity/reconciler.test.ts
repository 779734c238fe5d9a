import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openDatabase, type Database } from '../store/db.js';
import { migrateToLatest } from '../store/migrations.js';
import { generatePopulation } from '../simulators/population.js';
import { INS_OID } from './ins.js';
import { LocalIdentities } from './local-identities.js';
import { incomingOf, loadLocalPopulation, measureReconciliation } from '../simulators/identity-measure.js';
import { PatientDirectory } from './patient-directory.js';
import { IdentityReconciler } from './reconciler.js';

describe('identity reconciliation', () => {
  let dir: string;
  let database: Database;
  let directory: PatientDirectory;
  let identities: LocalIdentities;
  let reconciler: IdentityReconciler;
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'recon-'));
    database = openDatabase({ dataDir: dir });
    await migrateToLatest(database.db, database.dialect);
    directory = new PatientDirectory(database.db, 'CABINET-B');
    identities = new LocalIdentities(database.db, 'CABINET-B');
    reconciler = new IdentityReconciler({ directory, identities });
  });
  after(async () => {
    await database.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('matches by INS, then by a remembered identifier, and refuses an INS whose traits disagree', async () => {
    await directory.upsert({ localId: 'P1', demographics: { birthName: 'LÉVÊQUE', givenNames: ['HÉLÈNE'], birthDate: '19610412', sex: 'F' }, source: 'test' });
    await identities.record('261047511210323', INS_OID.nir, 'P1', 'test');
    const r = await reconciler.reconcile({ ins: { value: '261047511210323', oid: INS_OID.nir }, identifiers: [], demographics: { birthName: 'Leveque', givenNames: ['Helene'], birthDate: '19610412', sex: 'F' } });
    assert.deepEqual(r, { kind: 'automatic', localId: 'P1', method: 'ins' });
    const wrongTraits = await reconciler.reconcile({ ins: { value: '261047511210323', oid: INS_OID.nir }, identifiers: [], demographics: { birthName: 'DURAND', givenNames: ['PAUL'], birthDate: '19800101', sex: 'M' } });
    assert.equal(wrongTraits.kind, 'manual');
    assert.match((wrongTraits as { reason: string }).reason, /INS 261047511210323 designates local patient P1/);
    const incoming = { identifiers: [{ id: 'A77', issuer: 'CHU-A' }], demographics: { birthName: 'LEVECQUE', givenNames: ['H'], birthDate: '19610412', sex: 'F' } };
    assert.equal((await reconciler.reconcile(incoming)).kind, 'manual');
    await reconciler.remember(incoming, 'P1', 'decision:test');
    assert.deepEqual(await reconciler.reconcile(incoming), { kind: 'automatic', localId: 'P1', method: 'identifier' });
  });

  it('tells twins apart only when the given name leaves no doubt', async () => {
    const twin = (localId: string, given: string) => directory.upsert({ localId, demographics: { birthName: 'LE GALL', givenNames: [given], birthDate: '20150303', sex: 'F' }, source: 'test' });
    await twin('T1', 'LÉA');
    await twin('T2', 'LÉNA');
    const exact = await reconciler.reconcile({ identifiers: [], demographics: { birthName: 'LEGALL', givenNames: ['Léa'], birthDate: '20150303', sex: 'F' } });
    assert.equal(exact.kind, 'manual', 'LÉA is one letter from LÉNA: a person must choose');
    assert.equal((exact as { candidates: unknown[] }).candidates.length, 2);
    await twin('T3', 'MARGUERITE');
    await twin('T4', 'JOSÉPHINE');
    const clear = await reconciler.reconcile({ identifiers: [], demographics: { birthName: 'le gall', givenNames: ['Marguerite'], birthDate: '20150303', sex: 'F' } });
    assert.deepEqual({ ...clear, score: undefined }, { kind: 'automatic', localId: 'T3', method: 'demographics', score: undefined });
  });

  it('reconciles a realistic cross-site population: at least 90% automatically, never a wrong automatic match', async () => {
    const pop = generatePopulation({ localPatients: 5000, pairs: 1000, strangers: 300 });
    const scratch = openDatabase({ dataDir: mkdtempSync(path.join(tmpdir(), 'recon-pop-')) });
    try {
      await migrateToLatest(scratch.db, scratch.dialect);
      const dirB = new PatientDirectory(scratch.db, 'CABINET-B');
      const idsB = new LocalIdentities(scratch.db, 'CABINET-B');
      await loadLocalPopulation(pop, dirB, idsB);
      const m = await measureReconciliation(pop, new IdentityReconciler({ directory: dirB, identities: idsB }));
      assert.equal(m.pairs, 1000);
      assert.ok(pop.pairs.filter((p) => p.defects.includes('no INS')).length > 400, 'most records lack an INS, as in the field');
      assert.equal(m.wrongAutomatic, 0, `wrong automatic matches: ${JSON.stringify(m.wrongExamples.slice(0, 3))}`);
      assert.ok(m.automaticShare >= 0.9, `automatic share ${m.automaticShare}; left to a person: ${JSON.stringify(m.manualDefects)}`);
      assert.ok(incomingOf(pop.pairs[0]!).identifiers.length === 1);
    } finally {
      await scratch.close();
    }
  });
});
