import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { Dialect } from './db.js';

/**
 * Versioned schema migrations. Never edit a released migration: add a new one.
 * Written against Kysely's schema builder so that the same steps run on SQLite and PostgreSQL.
 */
function migrations(dialect: Dialect): Record<string, Migration> {
  const pk = dialect === 'postgres' ? 'bigserial' : 'integer';
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  return {
    '0001_index': {
      async up(db: Kysely<any>) {
        await db.schema
          .createTable('patients')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('patient_id', 'text', (c) => c.notNull())
          .addColumn('issuer', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('patient_name', 'text')
          .addColumn('patient_name_norm', 'text')
          .addColumn('birth_date', 'text')
          .addColumn('sex', 'text')
          .addColumn('other_ids', 'text')
          .addColumn('attrs', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addUniqueConstraint('patients_id_issuer', ['patient_id', 'issuer'])
          .execute();
        await db.schema
          .createTable('studies')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('patient_pk', big, (c) => c.notNull().references('patients.id'))
          .addColumn('study_uid', 'text', (c) => c.notNull().unique())
          .addColumn('study_date', 'text')
          .addColumn('study_time', 'text')
          .addColumn('accession_number', 'text')
          .addColumn('study_id', 'text')
          .addColumn('description', 'text')
          .addColumn('referring_physician', 'text')
          .addColumn('referring_physician_norm', 'text')
          .addColumn('attrs', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('series')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('study_pk', big, (c) => c.notNull().references('studies.id').onDelete('cascade'))
          .addColumn('series_uid', 'text', (c) => c.notNull().unique())
          .addColumn('modality', 'text')
          .addColumn('series_number', 'integer')
          .addColumn('description', 'text')
          .addColumn('series_date', 'text')
          .addColumn('body_part', 'text')
          .addColumn('institution_name', 'text')
          .addColumn('station_name', 'text')
          .addColumn('attrs', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('instances')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('series_pk', big, (c) => c.notNull().references('series.id').onDelete('cascade'))
          .addColumn('sop_uid', 'text', (c) => c.notNull().unique())
          .addColumn('sop_class_uid', 'text', (c) => c.notNull())
          .addColumn('instance_number', 'integer')
          .addColumn('transfer_syntax', 'text', (c) => c.notNull())
          .addColumn('size', big, (c) => c.notNull())
          .addColumn('blob_key', 'text', (c) => c.notNull())
          .addColumn('frames', 'integer')
          .addColumn('metadata', 'text', (c) => c.notNull())
          .addColumn('received_at', 'text', (c) => c.notNull())
          .addColumn('source_ae', 'text')
          .execute();
        await db.schema.createIndex('studies_patient').on('studies').column('patient_pk').execute();
        await db.schema.createIndex('studies_date').on('studies').column('study_date').execute();
        await db.schema.createIndex('studies_accession').on('studies').column('accession_number').execute();
        await db.schema.createIndex('series_study').on('series').column('study_pk').execute();
        await db.schema.createIndex('series_modality').on('series').column('modality').execute();
        await db.schema.createIndex('instances_series').on('instances').columns(['series_pk', 'instance_number']).execute();
        await db.schema.createIndex('patients_name').on('patients').column('patient_name_norm').execute();
      },
      async down(db: Kysely<any>) {
        for (const t of ['instances', 'series', 'studies', 'patients']) await db.schema.dropTable(t).execute();
      },
    },
    '0002_audit': {
      async up(db: Kysely<any>) {
        await db.schema
          .createTable('audit_events')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('at', 'text', (c) => c.notNull())
          .addColumn('actor_type', 'text', (c) => c.notNull())
          .addColumn('actor_id', 'text', (c) => c.notNull())
          .addColumn('actor_address', 'text')
          .addColumn('action', 'text', (c) => c.notNull())
          .addColumn('patient_id', 'text')
          .addColumn('study_uid', 'text')
          .addColumn('outcome', 'text', (c) => c.notNull())
          .addColumn('detail', 'text', (c) => c.notNull())
          .addColumn('prev_hash', 'text', (c) => c.notNull())
          .addColumn('hash', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('audit_at').on('audit_events').column('at').execute();
        await db.schema.createIndex('audit_patient').on('audit_events').column('patient_id').execute();
        await db.schema.createIndex('audit_actor').on('audit_events').column('actor_id').execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.dropTable('audit_events').execute();
      },
    },
    '0003_source': {
      async up(db: Kysely<any>) {
        // One row per published report (CDA setId): what is in the DMP now, to replace or withdraw it later.
        await db.schema
          .createTable('publications')
          .addColumn('set_id', 'text', (c) => c.primaryKey())
          .addColumn('study_uid', 'text', (c) => c.notNull())
          .addColumn('accession_number', 'text')
          .addColumn('patient_id', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('report_version', 'integer', (c) => c.notNull())
          .addColumn('report_entry_uuid', 'text', (c) => c.notNull())
          .addColumn('report_unique_id', 'text', (c) => c.notNull())
          .addColumn('kos_entry_uuid', 'text', (c) => c.notNull())
          .addColumn('kos_unique_id', 'text', (c) => c.notNull())
          .addColumn('kos_instances', 'integer', (c) => c.notNull())
          .addColumn('content_digest', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('publications_study').on('publications').column('study_uid').execute();
        await db.schema.createIndex('publications_accession').on('publications').column('accession_number').execute();
        // Instances rejected by an IOCM rejection note: left out of manifests even while the PACS still holds them.
        await db.schema
          .createTable('rejected_instances')
          .addColumn('sop_uid', 'text', (c) => c.primaryKey())
          .addColumn('study_uid', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('rejected_study').on('rejected_instances').column('study_uid').execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.dropTable('rejected_instances').execute();
        await db.schema.dropTable('publications').execute();
      },
    },
    '0004_study_cache': {
      async up(db: Kysely<any>) {
        // Studies brought from the local PACS to serve other DRIMboxes: only these are ever evicted.
        await db.schema
          .createTable('cached_studies')
          .addColumn('study_uid', 'text', (c) => c.primaryKey())
          .addColumn('bytes', big, (c) => c.notNull())
          .addColumn('cached_at', 'text', (c) => c.notNull())
          .addColumn('last_access', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('cached_studies_access').on('cached_studies').column('last_access').execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.dropTable('cached_studies').execute();
      },
    },
    '0005_sessions': {
      async up(db: Kysely<any>) {
        // Server-side web sessions: the cookie carries a random token, the table only its SHA-256.
        await db.schema
          .createTable('web_sessions')
          .addColumn('id_hash', 'text', (c) => c.primaryKey())
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('data', 'text', (c) => c.notNull())
          .addColumn('csrf', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('last_seen', 'text', (c) => c.notNull())
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('web_sessions_expires').on('web_sessions').column('expires_at').execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.dropTable('web_sessions').execute();
      },
    },
    '0006_imports': {
      async up(db: Kysely<any>) {
        // Local identities by INS: from decisions made in the import queue, the local PACS, later HL7 ADT.
        await db.schema
          .createTable('patient_identities')
          .addColumn('ins', 'text', (c) => c.primaryKey())
          .addColumn('ins_oid', 'text', (c) => c.notNull())
          .addColumn('local_id', 'text', (c) => c.notNull())
          .addColumn('issuer', 'text', (c) => c.notNull())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        // Imports of remote exams into the local PACS: a durable job per exam, resumable, with its report.
        await db.schema
          .createTable('import_jobs')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('study_uid', 'text', (c) => c.notNull())
          .addColumn('patient_ins', 'text', (c) => c.notNull())
          .addColumn('patient_oid', 'text', (c) => c.notNull())
          .addColumn('requested_by', 'text', (c) => c.notNull())
          .addColumn('professional', 'text', (c) => c.notNull())
          .addColumn('manifest', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('local_id', 'text')
          .addColumn('done', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('total', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'text', (c) => c.notNull())
          .addColumn('claimed_by', 'text')
          .addColumn('error', 'text')
          .addColumn('report', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('import_jobs_status').on('import_jobs').columns(['status', 'next_attempt_at']).execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.dropTable('import_jobs').execute();
        await db.schema.dropTable('patient_identities').execute();
      },
    },
    '0007_prefetch': {
      async up(db: Kysely<any>) {
        // Appointments from the RIS schedule and the prefetch state of each.
        await db.schema
          .createTable('appointments')
          .addColumn('appointment_id', 'text', (c) => c.primaryKey())
          .addColumn('patient_ins', 'text', (c) => c.notNull())
          .addColumn('patient_oid', 'text', (c) => c.notNull())
          .addColumn('ipp', 'text')
          .addColumn('patient_name', 'text')
          .addColumn('start_at', 'text', (c) => c.notNull())
          .addColumn('modality', 'text')
          .addColumn('procedure_code', 'text')
          .addColumn('procedure_text', 'text')
          .addColumn('practitioner', 'text')
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('rule', 'text')
          .addColumn('due_at', 'text', (c) => c.notNull())
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('priors', 'text', (c) => c.notNull().defaultTo('[]'))
          .addColumn('import_ids', 'text', (c) => c.notNull().defaultTo('[]'))
          .addColumn('done', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('total', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'text', (c) => c.notNull())
          .addColumn('error', 'text')
          .addColumn('ready_at', 'text')
          .addColumn('last_control_id', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('appointments_due').on('appointments').columns(['state', 'due_at']).execute();
        await db.schema.createIndex('appointments_start').on('appointments').column('start_at').execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.dropTable('appointments').execute();
      },
    },
    '0008_import_tags': {
      async up(db: Kysely<any>) {
        // Attributes set on imported instances so users can tell external priors (e.g. Institution Name).
        await db.schema.alterTable('import_jobs').addColumn('tags', 'text').execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.alterTable('import_jobs').dropColumn('tags').execute();
      },
    },
    '0009_import_source': {
      async up(db: Kysely<any>) {
        // The source box an import draws on, for per-site concurrency limits.
        await db.schema.alterTable('import_jobs').addColumn('source_origin', 'text').execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.alterTable('import_jobs').dropColumn('source_origin').execute();
      },
    },
    '0010_identity_routing': {
      async up(db: Kysely<any>) {
        // The local identity domain as HL7 ADT and reconciliation decisions describe it: demographics of local
        // patients, and every identifier (INS, other sites' IPPs) known to designate one of them.
        await db.schema
          .createTable('local_patients')
          .addColumn('local_id', 'text', (c) => c.primaryKey())
          .addColumn('issuer', 'text', (c) => c.notNull())
          .addColumn('birth_name', 'text', (c) => c.notNull())
          .addColumn('used_name', 'text')
          .addColumn('given_names', 'text', (c) => c.notNull())
          .addColumn('birth_date', 'text', (c) => c.notNull())
          .addColumn('sex', 'text')
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('local_patients_birth_date').on('local_patients').column('birth_date').execute();
        await db.schema
          .createTable('patient_identifiers')
          .addColumn('identifier', 'text', (c) => c.notNull())
          .addColumn('issuer', 'text', (c) => c.notNull())
          .addColumn('local_id', 'text', (c) => c.notNull())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('patient_identifiers_pk', ['identifier', 'issuer'])
          .execute();
        // Incoming patients no rule could match safely, waiting for a person.
        await db.schema
          .createTable('reconciliation_cases')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('origin', 'text', (c) => c.notNull())
          .addColumn('study_uid', 'text', (c) => c.notNull())
          .addColumn('incoming', 'text', (c) => c.notNull())
          .addColumn('candidates', 'text', (c) => c.notNull())
          .addColumn('reason', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('local_id', 'text')
          .addColumn('decided_by', 'text')
          .addColumn('decided_at', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('reconciliation_cases_status').on('reconciliation_cases').columns(['status', 'created_at']).execute();
        // Studies received (from the PACS or another box) and watched until stable: no new instance for a while.
        await db.schema
          .createTable('watched_studies')
          .addColumn('study_uid', 'text', (c) => c.notNull())
          .addColumn('purpose', 'text', (c) => c.notNull())
          .addColumn('origin', 'text', (c) => c.notNull())
          .addColumn('instances', 'integer', (c) => c.notNull())
          .addColumn('changed_at', 'text', (c) => c.notNull())
          .addColumn('handled_instances', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('state', 'text', (c) => c.notNull())
          .addColumn('case_id', 'integer')
          .addColumn('error', 'text')
          .addColumn('claimed_by', 'text')
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('watched_studies_pk', ['study_uid', 'purpose'])
          .execute();
        // The routing outbox: one transfer per study and destination, retried with backoff until done.
        await db.schema
          .createTable('route_transfers')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('study_uid', 'text', (c) => c.notNull())
          .addColumn('destination', 'text', (c) => c.notNull())
          .addColumn('rule', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('total', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('sent', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'text', (c) => c.notNull())
          .addColumn('claimed_by', 'text')
          .addColumn('error', 'text')
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('route_transfers_due').on('route_transfers').columns(['status', 'next_attempt_at']).execute();
        // Time-limited links giving a patient or a correspondent one exam instead of a CD.
        await db.schema
          .createTable('share_links')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('token_hash', 'text', (c) => c.notNull().unique())
          .addColumn('study_uid', 'text', (c) => c.notNull())
          .addColumn('patient_id', 'text', (c) => c.notNull())
          .addColumn('created_by', 'text', (c) => c.notNull())
          .addColumn('code_hash', 'text')
          .addColumn('expires_at', 'text', (c) => c.notNull())
          .addColumn('revoked_at', 'text')
          .addColumn('failed_codes', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('opened', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', 'text', (c) => c.notNull())
          .execute();
      },
      async down(db: Kysely<any>) {
        for (const t of ['share_links', 'route_transfers', 'watched_studies', 'reconciliation_cases', 'patient_identifiers', 'local_patients']) await db.schema.dropTable(t).execute();
      },
    },
    '0011_publication_identity': {
      async up(db: Kysely<any>) {
        // A publication is one report document for one exam: the ANS test reports of different exams share a
        // setId, so the setId alone cannot key it (docs/ihe-integration.md, "Publication identity").
        await db.schema
          .createTable('report_publications')
          .addColumn('report_unique_id', 'text', (c) => c.notNull())
          .addColumn('study_uid', 'text', (c) => c.notNull())
          .addColumn('set_id', 'text', (c) => c.notNull())
          .addColumn('report_version', 'integer', (c) => c.notNull())
          .addColumn('accession_number', 'text')
          .addColumn('patient_id', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('cda_hash', 'text', (c) => c.notNull())
          .addColumn('visibility', 'text', (c) => c.notNull())
          .addColumn('report_entry_uuid', 'text', (c) => c.notNull())
          .addColumn('kos_entry_uuid', 'text', (c) => c.notNull())
          .addColumn('kos_unique_id', 'text', (c) => c.notNull())
          .addColumn('kos_instances', 'integer', (c) => c.notNull())
          .addColumn('content_digest', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .addColumn('created_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('report_publications_pk', ['report_unique_id', 'study_uid'])
          .execute();
        await db.schema.createIndex('report_publications_study').on('report_publications').columns(['study_uid', 'status']).execute();
        await db.schema.createIndex('report_publications_set').on('report_publications').column('set_id').execute();
        await db.schema.createIndex('report_publications_accession').on('report_publications').column('accession_number').execute();
        // Rows of the former per-setId table carry over as they are (their visibility and CDA hash were not kept).
        await sql`insert into report_publications (report_unique_id, study_uid, set_id, report_version, accession_number, patient_id, status, cda_hash, visibility, report_entry_uuid, kos_entry_uuid, kos_unique_id, kos_instances, content_digest, metadata, created_at, updated_at)
          select report_unique_id, study_uid, set_id, report_version, accession_number, patient_id, status, '', '{}', report_entry_uuid, kos_entry_uuid, kos_unique_id, kos_instances, content_digest, metadata, created_at, updated_at from publications`.execute(db);
        await db.schema.dropTable('publications').execute();
        // What the RIS asked for, kept before the acknowledgement: AA means this row is durable. Worked through
        // in arrival order per exam, retried with backoff while the PACS or the DMP cannot take it.
        await db.schema
          .createTable('publication_queue')
          .addColumn('id', pk, (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('exam_key', 'text', (c) => c.notNull())
          .addColumn('document_id', 'text')
          .addColumn('payload', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', 'text', (c) => c.notNull())
          .addColumn('claimed_by', 'text')
          .addColumn('lease_until', 'text')
          .addColumn('outcome', 'text')
          .addColumn('error', 'text')
          .addColumn('sender', 'text', (c) => c.notNull())
          .addColumn('control_id', 'text')
          .addColumn('received_at', 'text', (c) => c.notNull())
          .addColumn('updated_at', 'text', (c) => c.notNull())
          .execute();
        await db.schema.createIndex('publication_queue_due').on('publication_queue').columns(['status', 'next_attempt_at']).execute();
        await db.schema.createIndex('publication_queue_exam').on('publication_queue').columns(['exam_key', 'status']).execute();
      },
      async down(db: Kysely<any>) {
        await db.schema.dropTable('publication_queue').execute();
        await db.schema.dropTable('report_publications').execute();
      },
    },
  };
}

export async function migrateToLatest(db: Kysely<any>, dialect: Dialect): Promise<void> {
  const provider: MigrationProvider = { getMigrations: async () => migrations(dialect) };
  const migrator = new Migrator({ db, provider, migrationTableName: 'opendrim_migrations', migrationLockTableName: 'opendrim_migrations_lock' });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  // A database that cannot be reached is not a failed migration: say where it was looked for.
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error && !failed && code && /^(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EHOSTUNREACH|ECONNRESET|28P01|3D000|28000)$/.test(code)) {
    const why = { ECONNREFUSED: 'nothing listens there', ENOTFOUND: 'the host name is unknown', ETIMEDOUT: 'no answer', EHOSTUNREACH: 'the host is unreachable', ECONNRESET: 'the connection was cut', '28P01': 'the password was refused', '28000': 'the user is not allowed', '3D000': 'the database does not exist' }[code];
    throw new Error(`the database could not be reached (${why}: ${(error as Error).message}); check DATABASE_URL`);
  }
  if (error || failed) {
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}
