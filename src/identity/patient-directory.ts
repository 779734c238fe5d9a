import type { Kysely } from 'kysely';
import type { DB } from '../store/db.js';
import type { Demographics } from './demographics.js';

export interface LocalPatient {
  localId: string;
  issuer: string;
  demographics: Demographics;
  source: string;
}

export interface Identifier {
  id: string;
  issuer: string;
}

/**
 * The local identity domain: local patients with their demographics (from HL7 ADT, from the local PACS, from
 * identities created in the reconciliation queue) and the other identifiers known to designate each of them
 * (INS, another site's IPP once a person or a rule has matched it).
 */
export class PatientDirectory {
  constructor(
    private readonly db: Kysely<DB>,
    readonly issuer: string,
  ) {}

  async upsert(p: { localId: string; demographics: Demographics; source: string }): Promise<void> {
    const d = p.demographics;
    const row = {
      local_id: p.localId,
      issuer: this.issuer,
      birth_name: d.birthName,
      used_name: d.usedName ?? null,
      given_names: JSON.stringify(d.givenNames),
      birth_date: d.birthDate,
      sex: d.sex ?? null,
      source: p.source,
      updated_at: new Date().toISOString(),
    };
    await this.db
      .insertInto('local_patients')
      .values(row)
      .onConflict((oc) => oc.column('local_id').doUpdateSet({ birth_name: row.birth_name, used_name: row.used_name, given_names: row.given_names, birth_date: row.birth_date, sex: row.sex, source: row.source, updated_at: row.updated_at }))
      .execute();
  }

  async addIdentifier(id: Identifier, localId: string, source: string): Promise<void> {
    const updated_at = new Date().toISOString();
    await this.db
      .insertInto('patient_identifiers')
      .values({ identifier: id.id, issuer: id.issuer, local_id: localId, source, updated_at })
      .onConflict((oc) => oc.columns(['identifier', 'issuer']).doUpdateSet({ local_id: localId, source, updated_at }))
      .execute();
  }

  async byIdentifier(id: Identifier): Promise<string | undefined> {
    const row = await this.db.selectFrom('patient_identifiers').select('local_id').where('identifier', '=', id.id).where('issuer', '=', id.issuer).executeTakeFirst();
    return row?.local_id;
  }

  async get(localId: string): Promise<LocalPatient | undefined> {
    const row = await this.db.selectFrom('local_patients').selectAll().where('local_id', '=', localId).executeTakeFirst();
    return row ? toPatient(row) : undefined;
  }

  /** Candidates for a demographic match: blocked on birth date, the trait systems disagree on least. */
  async bornOn(birthDate: string): Promise<LocalPatient[]> {
    if (!birthDate) return [];
    const rows = await this.db.selectFrom('local_patients').selectAll().where('birth_date', '=', birthDate).limit(500).execute();
    return rows.map(toPatient);
  }

  /** A merge (ADT^A40): identifiers of the absorbed local patient now designate the survivor, which stays. */
  async merge(absorbed: string, survivor: string, source: string): Promise<void> {
    await this.db.updateTable('patient_identifiers').set({ local_id: survivor, source, updated_at: new Date().toISOString() }).where('local_id', '=', absorbed).execute();
    await this.db.deleteFrom('local_patients').where('local_id', '=', absorbed).execute();
  }
}

function toPatient(row: { local_id: string; issuer: string; birth_name: string; used_name: string | null; given_names: string; birth_date: string; sex: string | null; source: string }): LocalPatient {
  return {
    localId: row.local_id,
    issuer: row.issuer,
    source: row.source,
    demographics: { birthName: row.birth_name, usedName: row.used_name ?? undefined, givenNames: JSON.parse(row.given_names) as string[], birthDate: row.birth_date, sex: row.sex ?? undefined },
  };
}
