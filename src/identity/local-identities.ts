import type { Kysely } from 'kysely';
import type { DB } from '../store/db.js';

export interface LocalIdentity {
  localId: string;
  issuer: string;
  source: string;
}

/** Where a local identity can also be found: the local PACS, by the INS kept in Other Patient IDs. */
export type PacsIdentityLookup = (ins: string) => Promise<Array<{ patientId: string; issuer: string }>>;

/**
 * The local patient identifier (IPP) for an INS: from the identity table (decisions made by users, HL7 ADT),
 * else from the local PACS when exactly one patient there carries the INS. Never a guess: several candidates
 * or none means no identity, and the caller asks a person.
 */
export class LocalIdentities {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly localIssuer: string,
    private readonly pacs?: PacsIdentityLookup,
  ) {}

  async lookup(ins: string): Promise<LocalIdentity | undefined> {
    const row = await this.db.selectFrom('patient_identities').selectAll().where('ins', '=', ins).executeTakeFirst();
    if (row) return { localId: row.local_id, issuer: row.issuer, source: row.source };
    if (!this.pacs) return undefined;
    const found = (await this.pacs(ins)).filter((c) => !c.issuer || c.issuer === this.localIssuer);
    if (found.length !== 1) return undefined;
    return { localId: found[0]!.patientId, issuer: found[0]!.issuer || this.localIssuer, source: 'pacs' };
  }

  async record(ins: string, insOid: string, localId: string, source: string): Promise<void> {
    const now = new Date().toISOString();
    const row = { ins, ins_oid: insOid, local_id: localId, issuer: this.localIssuer, source, updated_at: now };
    await this.db
      .insertInto('patient_identities')
      .values(row)
      .onConflict((oc) => oc.column('ins').doUpdateSet({ local_id: localId, issuer: this.localIssuer, source, updated_at: now }))
      .execute();
  }

  get issuer(): string {
    return this.localIssuer;
  }

  /** A merge (ADT^A40): every INS that pointed at the old local ID now points at the surviving one. */
  async merge(oldLocalId: string, newLocalId: string, source: string): Promise<number> {
    const r = await this.db.updateTable('patient_identities').set({ local_id: newLocalId, source, updated_at: new Date().toISOString() }).where('local_id', '=', oldLocalId).executeTakeFirst();
    return Number(r.numUpdatedRows);
  }
}
