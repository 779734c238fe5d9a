import { createHash, randomUUID } from 'node:crypto';
import { Migrator, sql, type Kysely, type Migration } from 'kysely';
import { readImagingReport } from '../../source/cda.js';
import type { Dialect } from '../../store/db.js';
import { dmpPatientId, MetadataError, parseCx, xdsTime, type Association, type DocumentEntry, type RegistryObjects, type SubmissionSet } from '../../xds/metadata.js';
import { queryValues, type DocumentRequest, type RegistryError, type RetrievedDocument, type StoredQueryRequest } from '../../xds/transactions.js';
import { AssociationType, INS_OIDS, Status, StoredQuery } from '../../xds/vocabulary.js';

/**
 * The DMP stand-in's registry and repository: the XDS.b rules a real registry enforces (ITI TF-3 4.2), kept in
 * the project's database layer (SQLite or PostgreSQL) so that it survives restarts like the real service.
 */

interface DmpDocumentTable {
  entry_uuid: string;
  unique_id: string;
  patient_id: string;
  status: string;
  submission_uuid: string;
  creation_time: string;
  metadata: string;
}
interface DmpContentTable {
  unique_id: string;
  mime_type: string;
  content: Buffer;
}
interface DmpSubmissionTable {
  entry_uuid: string;
  unique_id: string;
  patient_id: string;
  metadata: string;
}
interface DmpAssociationTable {
  id: string;
  type: string;
  source: string;
  target: string;
  metadata: string;
}
export interface DmpDB {
  dmp_documents: DmpDocumentTable;
  dmp_contents: DmpContentTable;
  dmp_submission_sets: DmpSubmissionTable;
  dmp_associations: DmpAssociationTable;
}

function migrations(dialect: Dialect): Record<string, Migration> {
  const blob = dialect === 'postgres' ? 'bytea' : 'blob';
  return {
    '0001_dmp': {
      async up(db: Kysely<any>) {
        await db.schema
          .createTable('dmp_submission_sets')
          .addColumn('entry_uuid', 'text', (c) => c.primaryKey())
          .addColumn('unique_id', 'text', (c) => c.notNull().unique())
          .addColumn('patient_id', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('dmp_documents')
          .addColumn('entry_uuid', 'text', (c) => c.primaryKey())
          .addColumn('unique_id', 'text', (c) => c.notNull().unique())
          .addColumn('patient_id', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('submission_uuid', 'text', (c) => c.notNull())
          .addColumn('creation_time', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('dmp_documents_patient').on('dmp_documents').columns(['patient_id', 'status']).execute();
        await db.schema
          .createTable('dmp_contents')
          .addColumn('unique_id', 'text', (c) => c.primaryKey())
          .addColumn('mime_type', 'text', (c) => c.notNull())
          .addColumn('content', blob, (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('dmp_associations')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('type', 'text', (c) => c.notNull())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('target', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('dmp_associations_source').on('dmp_associations').column('source').execute();
      },
    },
    '0002_entry_versions': {
      // ITI-57 metadata updates add versions of an entry under the same uniqueId: the uniqueId is no longer unique.
      async up(db: Kysely<any>) {
        await db.schema
          .createTable('dmp_documents_v2')
          .addColumn('entry_uuid', 'text', (c) => c.primaryKey())
          .addColumn('unique_id', 'text', (c) => c.notNull())
          .addColumn('patient_id', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('submission_uuid', 'text', (c) => c.notNull())
          .addColumn('creation_time', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .execute();
        await sql`insert into dmp_documents_v2 select entry_uuid, unique_id, patient_id, status, submission_uuid, creation_time, metadata from dmp_documents`.execute(db);
        await db.schema.dropTable('dmp_documents').execute();
        await db.schema.alterTable('dmp_documents_v2').renameTo('dmp_documents').execute();
        await db.schema.createIndex('dmp_documents_patient_v2').on('dmp_documents').columns(['patient_id', 'status']).execute();
        await db.schema.createIndex('dmp_documents_unique_v2').on('dmp_documents').column('unique_id').execute();
      },
    },
  };
}

export async function migrateDmp(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations(dialect) }, migrationTableName: 'dmp_migrations', migrationLockTableName: 'dmp_migrations_lock' });
  const { error } = await migrator.migrateToLatest();
  if (error) throw new Error(`DMP stand-in migration failed: ${error instanceof Error ? error.message : String(error)}`);
}

/** The French INS (NIR/NIA): 13 characters (digits, 2A/2B for Corsica) and a 2-digit key, 97 - (n mod 97). */
export function validInsKey(ins: string): boolean {
  const m = /^([0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6})([0-9]{2})$/.exec(ins.toUpperCase());
  if (!m) return false;
  const body = m[1]!.replace('2A', '19').replace('2B', '18');
  const key = 97 - Number(BigInt(body) % 97n);
  return key === Number(m[2]);
}

export class RegistryFailure extends Error {
  constructor(readonly errors: RegistryError[]) {
    super(errors.map((e) => `${e.code}: ${e.context}`).join('; '));
  }
}

const fail = (code: string, context: string, location?: string): never => {
  throw new RegistryFailure([{ code, context, location }]);
};

export interface DmpOptions {
  repositoryUniqueId: string;
  /** Patients whose DMP is closed or who refused it: submissions for them are refused like an unknown patient. */
  closedPatients?: string[];
}

export class DmpRegistry {
  constructor(
    private readonly db: Kysely<DmpDB>,
    private readonly opts: DmpOptions,
  ) {}

  get repositoryUniqueId(): string {
    return this.opts.repositoryUniqueId;
  }

  /**
   * The DMP only knows patients identified by a valid INS under one of the INS OIDs. Identifiers are kept in the
   * DMP's own form (`INS^^^&OID&ISO^NH`), whether the identifier type came with them or not.
   */
  private checkPatient(patientId: string, where: string): string {
    const p = parseCx(patientId);
    if (!p) fail('XDSUnknownPatientId', `${where}: patient identifier "${patientId}" is not of the form INS^^^&OID&ISO`, where);
    if (!INS_OIDS.includes(p!.oid)) fail('XDSUnknownPatientId', `${where}: assigning authority ${p!.oid} is not an INS OID (${INS_OIDS.join(', ')})`, where);
    if (!validInsKey(p!.id)) fail('XDSUnknownPatientId', `${where}: ${p!.id} is not a valid INS (bad format or control key)`, where);
    if (this.opts.closedPatients?.includes(p!.id)) fail('XDSUnknownPatientId', `${where}: no open DMP for patient ${p!.id}`, where);
    return dmpPatientId(p!);
  }

  /**
   * What the DMP checks of a CDA document against its metadata (DMP integrator guide, TD2.1): the entry's uniqueId
   * is ClinicalDocument/id and its patient the document's recordTarget INS.
   */
  private checkCda(d: DocumentEntry, content: Buffer): void {
    let h;
    try {
      h = readImagingReport(content);
    } catch (e) {
      return fail('XDSRepositoryMetadataError', `document ${d.uniqueId}: the text/xml document is not a readable CDA (${(e as Error).message})`, d.entryUUID);
    }
    if (h.uniqueId !== d.uniqueId) fail('XDSRepositoryMetadataError', `document ${d.uniqueId}: XDSDocumentEntry.uniqueId must be ClinicalDocument/id (${h.uniqueId})`, d.entryUUID);
    const p = parseCx(d.patientId);
    if (h.patient.ins && p && (h.patient.ins.id !== p.id || h.patient.ins.oid !== p.oid)) fail('XDSPatientIdDoesNotMatch', `document ${d.uniqueId}: patientId ${d.patientId} is not the CDA's recordTarget INS ${h.patient.ins.id}`, d.entryUUID);
  }

  /** ITI-41: validates the whole submission, then stores it in one transaction. */
  async provideAndRegister(objects: RegistryObjects, documents: Map<string, Buffer>): Promise<void> {
    if (objects.submissionSets.length !== 1) fail('XDSRegistryMetadataError', `a submission must contain exactly one submission set (found ${objects.submissionSets.length})`);
    const ss = { ...objects.submissionSets[0]! };
    ss.patientId = this.checkPatient(ss.patientId, 'XDSSubmissionSet.patientId');
    // Symbolic ids (not urn:uuid:) are replaced by UUIDs, and references to them follow.
    const ids = new Map<string, string>();
    const assign = (id: string) => {
      if (id.startsWith('urn:uuid:')) return id;
      if (!ids.has(id)) ids.set(id, `urn:uuid:${randomUUID()}`);
      return ids.get(id)!;
    };
    ss.entryUUID = assign(ss.entryUUID);
    const docs: DocumentEntry[] = [];
    for (const d0 of objects.documents) {
      const content = documents.get(d0.entryUUID);
      if (!content) fail('XDSMissingDocument', `document entry ${d0.entryUUID} (${d0.uniqueId}) has no attached document`, d0.entryUUID);
      const d = { ...d0, entryUUID: assign(d0.entryUUID) };
      if (parseCx(d.patientId)) d.patientId = dmpPatientId(parseCx(d.patientId)!);
      if (d.patientId !== ss.patientId) fail('XDSPatientIdDoesNotMatch', `document ${d.uniqueId}: patientId ${d.patientId} differs from the submission set's ${ss.patientId}`, d.entryUUID);
      const hash = createHash('sha1').update(content!).digest('hex');
      if (d.hash && d.hash.toLowerCase() !== hash) fail('XDSNonIdenticalHash', `document ${d.uniqueId}: hash ${d.hash} does not match the content (${hash})`, d.entryUUID);
      if (d.size !== undefined && d.size !== content!.length) fail('XDSNonIdenticalSize', `document ${d.uniqueId}: size ${d.size} does not match the content (${content!.length})`, d.entryUUID);
      if (!d.classCode.scheme || !d.typeCode.scheme || !d.formatCode.scheme) fail('XDSRegistryMetadataError', `document ${d.uniqueId}: classCode, typeCode and formatCode need a codingScheme slot`, d.entryUUID);
      if (!/^\d{8,14}$/.test(d.creationTime)) fail('XDSRegistryMetadataError', `document ${d.uniqueId}: creationTime "${d.creationTime}" is not an XDS DTM`, d.entryUUID);
      if (d.mimeType === 'text/xml') this.checkCda(d, content!);
      d.hash = hash;
      d.size = content!.length;
      d.repositoryUniqueId = this.opts.repositoryUniqueId;
      d.availabilityStatus = Status.approved;
      d.version = '1';
      d.lid = d.lid && d.lid.startsWith('urn:uuid:') ? d.lid : d.entryUUID;
      docs.push(d);
    }
    for (const id of documents.keys()) if (!objects.documents.some((d) => d.entryUUID === id)) fail('XDSMissingDocumentMetadata', `attached document ${id} has no document entry`, id);
    const assocs: Association[] = objects.associations.map((a) => ({ ...a, id: assign(a.id), sourceObject: assign(a.sourceObject), targetObject: assign(a.targetObject) }));
    for (const d of docs) {
      if (!assocs.some((a) => a.type === AssociationType.hasMember && a.sourceObject === ss.entryUUID && a.targetObject === d.entryUUID)) fail('XDSRegistryMetadataError', `document ${d.uniqueId} is not a member of the submission set (HasMember association missing)`, d.entryUUID);
    }
    const uniqueIds = docs.map((d) => d.uniqueId);
    if (new Set(uniqueIds).size !== uniqueIds.length) fail('XDSDuplicateUniqueIdInRegistry', 'the same document uniqueId appears twice in the submission');
    ss.availabilityStatus = Status.approved;

    await this.db.transaction().execute(async (trx) => {
      if (uniqueIds.length) {
        const dup = await trx.selectFrom('dmp_documents').select('unique_id').where('unique_id', 'in', uniqueIds).executeTakeFirst();
        if (dup) fail('XDSDuplicateUniqueIdInRegistry', `document uniqueId ${dup.unique_id} is already registered`, dup.unique_id);
      }
      if (await trx.selectFrom('dmp_submission_sets').select('entry_uuid').where('unique_id', '=', ss.uniqueId).executeTakeFirst()) fail('XDSDuplicateUniqueIdInRegistry', `submission set uniqueId ${ss.uniqueId} is already registered`);
      const replaced: string[] = [];
      for (const a of assocs) {
        if (a.type !== AssociationType.replace) continue;
        const doc = docs.find((d) => d.entryUUID === a.sourceObject);
        if (!doc) fail('XDSRegistryMetadataError', `RPLC association ${a.id}: its source must be a document of this submission`, a.id);
        const target = await trx.selectFrom('dmp_documents').selectAll().where('entry_uuid', '=', a.targetObject).executeTakeFirst();
        if (!target) fail('XDSUnreferencedObjectURN', `RPLC association ${a.id}: the replaced document ${a.targetObject} is not in the registry`, a.id);
        if (target!.status !== Status.approved) fail('XDSRegistryMetadataError', `RPLC association ${a.id}: the replaced document ${a.targetObject} is not Approved`, a.id);
        if (target!.patient_id !== doc!.patientId) fail('XDSPatientIdDoesNotMatch', `RPLC association ${a.id}: the replaced document belongs to another patient`, a.id);
        const old = JSON.parse(target!.metadata) as DocumentEntry;
        // The replacement continues the replaced document's logical id, with the next version.
        doc!.lid = old.lid ?? old.entryUUID;
        doc!.version = String(Number(old.version ?? '1') + 1);
        replaced.push(a.targetObject);
      }
      for (const id of replaced) await this.setStatus(trx, id, Status.deprecated);
      await trx.insertInto('dmp_submission_sets').values({ entry_uuid: ss.entryUUID, unique_id: ss.uniqueId, patient_id: ss.patientId, metadata: JSON.stringify(ss) }).execute();
      for (const d of docs) {
        await trx.insertInto('dmp_documents').values({ entry_uuid: d.entryUUID, unique_id: d.uniqueId, patient_id: d.patientId, status: Status.approved, submission_uuid: ss.entryUUID, creation_time: d.creationTime, metadata: JSON.stringify(d) }).execute();
        const original = objects.documents.find((o) => assign(o.entryUUID) === d.entryUUID)!;
        await trx.insertInto('dmp_contents').values({ unique_id: d.uniqueId, mime_type: d.mimeType, content: documents.get(original.entryUUID)! }).execute();
      }
      for (const a of assocs) await trx.insertInto('dmp_associations').values({ id: a.id, type: a.type, source: a.sourceObject, target: a.targetObject, metadata: JSON.stringify(a) }).execute();
    });
  }

  private async setStatus(trx: Kysely<DmpDB>, entryUUID: string, status: string): Promise<void> {
    const row = await trx.selectFrom('dmp_documents').select('metadata').where('entry_uuid', '=', entryUUID).executeTakeFirstOrThrow();
    const d = JSON.parse(row.metadata) as DocumentEntry;
    d.availabilityStatus = status;
    await trx.updateTable('dmp_documents').set({ status, metadata: JSON.stringify(d) }).where('entry_uuid', '=', entryUUID).execute();
  }

  /** ITI-57: availability status updates (the DMP's de-publication) and metadata updates (new entry versions). */
  async updateDocumentSet(objects: RegistryObjects): Promise<void> {
    if (objects.submissionSets.length !== 1) fail('XDSRegistryMetadataError', 'an update must contain exactly one submission set');
    const ss = { ...objects.submissionSets[0]!, patientId: this.checkPatient(objects.submissionSets[0]!.patientId, 'XDSSubmissionSet.patientId') };
    const updates = objects.associations.filter((a) => a.type === AssociationType.updateAvailabilityStatus);
    if (!updates.length && !objects.documents.length) fail('XDSMetadataUpdateError', 'the update carries neither an UpdateAvailabilityStatus association nor a new version of a document entry');
    const ssId = ss.entryUUID.startsWith('urn:uuid:') ? ss.entryUUID : `urn:uuid:${randomUUID()}`;
    await this.db.transaction().execute(async (trx) => {
      for (const a of updates) {
        const from = a.slots?.OriginalStatus?.[0];
        const to = a.slots?.NewStatus?.[0];
        if (!from || !to) fail('XDSMetadataUpdateError', `association ${a.id}: OriginalStatus and NewStatus slots are required`, a.id);
        if (![Status.approved, Status.deprecated].includes(to as any)) fail('XDSMetadataUpdateError', `association ${a.id}: NewStatus ${to} is not Approved or Deprecated`, a.id);
        const row = await trx.selectFrom('dmp_documents').select(['status', 'patient_id']).where('entry_uuid', '=', a.targetObject).executeTakeFirst();
        if (!row) fail('XDSUnreferencedObjectURN', `association ${a.id}: document ${a.targetObject} is not in the registry`, a.id);
        if (row!.patient_id !== ss.patientId) fail('XDSPatientIdDoesNotMatch', `association ${a.id}: the document belongs to another patient`, a.id);
        if (row!.status !== from) fail('XDSMetadataUpdateError', `association ${a.id}: document ${a.targetObject} is ${row!.status}, not ${from}`, a.id);
        await this.setStatus(trx, a.targetObject, to!);
      }
      const added: Association[] = [];
      for (const d0 of objects.documents) {
        // ITI TF-2b 3.57.4.1.3.3.1: same logical id and uniqueId, HasMember with PreviousVersion = the current version.
        const member = objects.associations.find((a) => a.type === AssociationType.hasMember && a.sourceObject === ss.entryUUID && a.targetObject === d0.entryUUID);
        const previousVersion = member?.slots?.PreviousVersion?.[0];
        if (!member || !previousVersion) fail('XDSMetadataUpdateError', `document entry ${d0.entryUUID}: a metadata update needs a HasMember association with a PreviousVersion slot`, d0.entryUUID);
        if (!d0.lid) fail('XDSMetadataUpdateError', `document entry ${d0.entryUUID}: a metadata update needs the logical id (lid) of the entry it updates`, d0.entryUUID);
        const rows = await trx.selectFrom('dmp_documents').selectAll().where('unique_id', '=', d0.uniqueId).where('status', '=', Status.approved).execute();
        const current = rows.map((r) => ({ row: r, doc: JSON.parse(r.metadata) as DocumentEntry })).find((x) => (x.doc.lid ?? x.doc.entryUUID) === d0.lid);
        if (!current) fail('XDSMetadataUpdateError', `document entry ${d0.entryUUID}: no Approved entry with logical id ${d0.lid} and uniqueId ${d0.uniqueId}`, d0.entryUUID);
        if ((current!.doc.version ?? '1') !== previousVersion) fail('XDSMetadataVersionError', `document entry ${d0.entryUUID}: PreviousVersion ${previousVersion} is not the current version ${current!.doc.version ?? '1'}`, d0.entryUUID);
        if (current!.row.patient_id !== ss.patientId || dmpPatientId(parseCx(d0.patientId) ?? { id: '', oid: '' }) !== ss.patientId) fail('XDSPatientIdDoesNotMatch', `document entry ${d0.entryUUID}: the patient cannot change in a metadata update`, d0.entryUUID);
        if (d0.mimeType !== current!.doc.mimeType || (d0.hash && d0.hash.toLowerCase() !== (current!.doc.hash ?? '').toLowerCase()) || (d0.size !== undefined && d0.size !== current!.doc.size)) fail('XDSMetadataUpdateError', `document entry ${d0.entryUUID}: mimeType, hash and size describe the content and cannot change in a metadata update`, d0.entryUUID);
        const entryUUID = d0.entryUUID.startsWith('urn:uuid:') ? d0.entryUUID : `urn:uuid:${randomUUID()}`;
        const next: DocumentEntry = { ...d0, patientId: ss.patientId, entryUUID, lid: d0.lid, version: String(Number(previousVersion) + 1), availabilityStatus: Status.approved, hash: current!.doc.hash, size: current!.doc.size, repositoryUniqueId: current!.doc.repositoryUniqueId };
        await this.setStatus(trx, current!.row.entry_uuid, Status.deprecated);
        await trx.insertInto('dmp_documents').values({ entry_uuid: entryUUID, unique_id: next.uniqueId, patient_id: next.patientId, status: Status.approved, submission_uuid: ssId, creation_time: next.creationTime, metadata: JSON.stringify(next) }).execute();
        added.push({ ...member!, id: member!.id.startsWith('urn:uuid:') ? member!.id : `urn:uuid:${randomUUID()}`, sourceObject: ssId, targetObject: entryUUID });
      }
      await trx.insertInto('dmp_submission_sets').values({ entry_uuid: ssId, unique_id: ss.uniqueId, patient_id: ss.patientId, metadata: JSON.stringify({ ...ss, entryUUID: ssId }) }).execute();
      for (const a of updates) {
        const id = a.id.startsWith('urn:uuid:') ? a.id : `urn:uuid:${randomUUID()}`;
        await trx.insertInto('dmp_associations').values({ id, type: a.type, source: ssId, target: a.targetObject, metadata: JSON.stringify({ ...a, id, sourceObject: ssId }) }).execute();
      }
      for (const a of added) await trx.insertInto('dmp_associations').values({ id: a.id, type: a.type, source: a.sourceObject, target: a.targetObject, metadata: JSON.stringify(a) }).execute();
    });
  }

  /** ITI-18 stored queries: FindDocuments, GetDocuments, GetSubmissionSetAndContents. */
  async storedQuery(q: StoredQueryRequest): Promise<RegistryObjects> {
    const single = (name: string): string | undefined => queryValues(q.params[name])[0]?.[0];
    switch (q.queryId) {
      case StoredQuery.findDocuments: {
        const asked = single('$XDSDocumentEntryPatientId');
        if (!asked) fail('XDSStoredQueryParamNumber', 'FindDocuments requires $XDSDocumentEntryPatientId', '$XDSDocumentEntryPatientId');
        if (!q.params.$XDSDocumentEntryStatus) fail('XDSStoredQueryParamNumber', 'FindDocuments requires $XDSDocumentEntryStatus', '$XDSDocumentEntryStatus');
        const patientId = this.checkPatient(asked!, '$XDSDocumentEntryPatientId');
        const statuses = queryValues(q.params.$XDSDocumentEntryStatus).flat();
        const rows = await this.db.selectFrom('dmp_documents').select('metadata').where('patient_id', '=', patientId!).where('status', 'in', statuses).orderBy('creation_time', 'desc').execute();
        const docs = rows.map((r) => JSON.parse(r.metadata) as DocumentEntry).filter((d) => matchesFilters(d, q.params));
        return { documents: docs, submissionSets: [], associations: [] };
      }
      case StoredQuery.getDocuments: {
        const uuids = queryValues(q.params.$XDSDocumentEntryEntryUUID).flat();
        const uids = queryValues(q.params.$XDSDocumentEntryUniqueId).flat();
        if (!uuids.length === !uids.length) fail('XDSStoredQueryParamNumber', 'GetDocuments requires exactly one of $XDSDocumentEntryEntryUUID or $XDSDocumentEntryUniqueId');
        const rows = uuids.length
          ? await this.db.selectFrom('dmp_documents').select('metadata').where('entry_uuid', 'in', uuids).execute()
          : await this.db.selectFrom('dmp_documents').select('metadata').where('unique_id', 'in', uids).execute();
        return { documents: rows.map((r) => JSON.parse(r.metadata)), submissionSets: [], associations: [] };
      }
      case StoredQuery.getSubmissionSetAndContents: {
        const uuid = single('$XDSSubmissionSetEntryUUID');
        const uid = single('$XDSSubmissionSetUniqueId');
        if (!uuid === !uid) fail('XDSStoredQueryParamNumber', 'GetSubmissionSetAndContents requires exactly one of $XDSSubmissionSetEntryUUID or $XDSSubmissionSetUniqueId');
        const ssRow = await this.db.selectFrom('dmp_submission_sets').select(['entry_uuid', 'metadata']).where(uuid ? 'entry_uuid' : 'unique_id', '=', (uuid ?? uid)!).executeTakeFirst();
        if (!ssRow) return { documents: [], submissionSets: [], associations: [] };
        const assocRows = await this.db.selectFrom('dmp_associations').select('metadata').where('source', '=', ssRow.entry_uuid).where('type', '=', AssociationType.hasMember).execute();
        const assocs = assocRows.map((r) => JSON.parse(r.metadata) as Association);
        const targets = assocs.map((a) => a.targetObject);
        const docs = targets.length ? await this.db.selectFrom('dmp_documents').select('metadata').where('entry_uuid', 'in', targets).execute() : [];
        return { submissionSets: [JSON.parse(ssRow.metadata) as SubmissionSet], documents: docs.map((r) => JSON.parse(r.metadata)), associations: assocs };
      }
      default:
        return fail('XDSUnknownStoredQuery', `stored query ${q.queryId} is not supported by this registry`, q.queryId);
    }
  }

  /** ITI-43. */
  async retrieve(reqs: DocumentRequest[]): Promise<{ documents: RetrievedDocument[]; errors: RegistryError[] }> {
    const documents: RetrievedDocument[] = [];
    const errors: RegistryError[] = [];
    for (const r of reqs) {
      if (r.repositoryUniqueId !== this.opts.repositoryUniqueId) {
        errors.push({ code: 'XDSUnknownRepositoryId', context: `repository ${r.repositoryUniqueId} is not this repository (${this.opts.repositoryUniqueId})`, location: r.documentUniqueId });
        continue;
      }
      const row = await this.db.selectFrom('dmp_contents').selectAll().where('unique_id', '=', r.documentUniqueId).executeTakeFirst();
      if (!row) errors.push({ code: 'XDSDocumentUniqueIdError', context: `document ${r.documentUniqueId} is not in this repository`, location: r.documentUniqueId });
      else documents.push({ ...r, mimeType: row.mime_type, content: Buffer.from(row.content) });
    }
    return { documents, errors };
  }
}

/** Code and time filters of FindDocuments (ITI TF-2a 3.18.4.1.2.3.7.1). */
function matchesFilters(d: DocumentEntry, params: Record<string, string[]>): boolean {
  const codeParam = (name: string, values: { code: string; scheme: string }[]) => {
    const groups = queryValues(params[name]);
    // Values within one Slot Value are ORed, separate Values are ANDed.
    return groups.every((g) => g.some((v) => {
      const [code, , scheme] = v.split('^');
      return values.some((c) => c.code === code && (!scheme || c.scheme === scheme));
    }));
  };
  if (params.$XDSDocumentEntryClassCode && !codeParam('$XDSDocumentEntryClassCode', [d.classCode])) return false;
  if (params.$XDSDocumentEntryTypeCode && !codeParam('$XDSDocumentEntryTypeCode', [d.typeCode])) return false;
  if (params.$XDSDocumentEntryFormatCode && !codeParam('$XDSDocumentEntryFormatCode', [d.formatCode])) return false;
  if (params.$XDSDocumentEntryEventCodeList && !codeParam('$XDSDocumentEntryEventCodeList', d.eventCodes)) return false;
  if (params.$XDSDocumentEntryConfidentialityCode && !codeParam('$XDSDocumentEntryConfidentialityCode', d.confidentialityCodes)) return false;
  const time = (name: string, value: string | undefined, cmp: (a: string, b: string) => boolean) => {
    const p = queryValues(params[name])[0]?.[0];
    if (!p) return true;
    if (!value) return false;
    const n = Math.min(p.length, value.length);
    return cmp(value.slice(0, n), p.slice(0, n));
  };
  // From is inclusive, To exclusive, compared at the precision of the shorter value.
  return (
    time('$XDSDocumentEntryCreationTimeFrom', d.creationTime, (a, b) => a >= b) &&
    time('$XDSDocumentEntryCreationTimeTo', d.creationTime, (a, b) => a < b) &&
    time('$XDSDocumentEntryServiceStartTimeFrom', d.serviceStartTime, (a, b) => a >= b) &&
    time('$XDSDocumentEntryServiceStartTimeTo', d.serviceStartTime, (a, b) => a < b) &&
    time('$XDSDocumentEntryServiceStopTimeFrom', d.serviceStopTime, (a, b) => a >= b) &&
    time('$XDSDocumentEntryServiceStopTimeTo', d.serviceStopTime, (a, b) => a < b)
  );
}

export { MetadataError, xdsTime };
