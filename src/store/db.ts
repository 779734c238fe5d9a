import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, type Generated } from 'kysely';
import pg from 'pg';
import { remembered } from '../common/remembered.js';

export interface PatientTable {
  id: Generated<number>;
  patient_id: string;
  issuer: string;
  patient_name: string | null;
  patient_name_norm: string | null;
  birth_date: string | null;
  sex: string | null;
  other_ids: string | null;
  attrs: string;
  updated_at: string;
}
export interface StudyTable {
  id: Generated<number>;
  patient_pk: number;
  study_uid: string;
  study_date: string | null;
  study_time: string | null;
  accession_number: string | null;
  study_id: string | null;
  description: string | null;
  referring_physician: string | null;
  referring_physician_norm: string | null;
  attrs: string;
  updated_at: string;
}
export interface SeriesTable {
  id: Generated<number>;
  study_pk: number;
  series_uid: string;
  modality: string | null;
  series_number: number | null;
  description: string | null;
  series_date: string | null;
  body_part: string | null;
  institution_name: string | null;
  station_name: string | null;
  attrs: string;
  updated_at: string;
}
export interface InstanceTable {
  id: Generated<number>;
  series_pk: number;
  sop_uid: string;
  sop_class_uid: string;
  instance_number: number | null;
  transfer_syntax: string;
  size: number;
  blob_key: string;
  frames: number | null;
  metadata: string;
  received_at: string;
  source_ae: string | null;
}
export interface AuditTable {
  id: Generated<number>;
  at: string;
  actor_type: string;
  actor_id: string;
  actor_address: string | null;
  action: string;
  patient_id: string | null;
  study_uid: string | null;
  outcome: string;
  detail: string;
  prev_hash: string;
  hash: string;
}
/** One report document published for one exam (its KOS); see docs/ihe-integration.md, "Publication identity". */
export interface PublicationTable {
  report_unique_id: string;
  study_uid: string;
  set_id: string;
  report_version: number;
  accession_number: string | null;
  patient_id: string;
  /** published | withdrawn | replaced */
  status: string;
  /** SHA-1 of the CDA as published: a re-sent report with other bytes is another document. */
  cda_hash: string;
  /** The DMP visibility flags as published (JSON). */
  visibility: string;
  report_entry_uuid: string;
  kos_entry_uuid: string;
  kos_unique_id: string;
  kos_instances: number;
  content_digest: string;
  metadata: string;
  created_at: string;
  updated_at: string;
}
export interface PublicationQueueTable {
  id: Generated<number>;
  /** report | withdrawal | exam-change */
  kind: string;
  /** Study UID, else accession number: entries of one exam are worked through in arrival order. */
  exam_key: string;
  document_id: string | null;
  payload: string;
  /** pending | done | failed */
  status: string;
  attempts: number;
  next_attempt_at: string;
  claimed_by: string | null;
  lease_until: string | null;
  outcome: string | null;
  error: string | null;
  sender: string;
  control_id: string | null;
  received_at: string;
  updated_at: string;
}
export interface RejectedInstanceTable {
  sop_uid: string;
  study_uid: string;
  reason: string;
  at: string;
}
export interface CachedStudyTable {
  study_uid: string;
  bytes: number;
  cached_at: string;
  last_access: string;
}
export interface WebSessionTable {
  id_hash: string;
  kind: string;
  data: string;
  csrf: string;
  created_at: string;
  last_seen: string;
  expires_at: string;
}
export interface PatientIdentityTable {
  ins: string;
  ins_oid: string;
  local_id: string;
  issuer: string;
  source: string;
  updated_at: string;
}
export interface ImportJobTable {
  id: Generated<number>;
  study_uid: string;
  patient_ins: string;
  patient_oid: string;
  requested_by: string;
  professional: string;
  manifest: string;
  status: string;
  local_id: string | null;
  done: number;
  total: number;
  attempts: number;
  next_attempt_at: string;
  claimed_by: string | null;
  error: string | null;
  report: string | null;
  tags: string | null;
  source_origin: string | null;
  created_at: string;
  updated_at: string;
}
export interface AppointmentTable {
  appointment_id: string;
  patient_ins: string;
  patient_oid: string;
  ipp: string | null;
  patient_name: string | null;
  start_at: string;
  modality: string | null;
  procedure_code: string | null;
  procedure_text: string | null;
  practitioner: string | null;
  status: string;
  rule: string | null;
  due_at: string;
  state: string;
  priors: string;
  import_ids: string;
  done: number;
  total: number;
  attempts: number;
  next_attempt_at: string;
  error: string | null;
  ready_at: string | null;
  last_control_id: string | null;
  created_at: string;
  updated_at: string;
}
export interface LocalPatientTable {
  local_id: string;
  issuer: string;
  birth_name: string;
  used_name: string | null;
  given_names: string;
  birth_date: string;
  sex: string | null;
  source: string;
  updated_at: string;
}
export interface PatientIdentifierTable {
  identifier: string;
  issuer: string;
  local_id: string;
  source: string;
  updated_at: string;
}
export interface ReconciliationCaseTable {
  id: Generated<number>;
  origin: string;
  study_uid: string;
  incoming: string;
  candidates: string;
  reason: string;
  status: string;
  local_id: string | null;
  decided_by: string | null;
  decided_at: string | null;
  created_at: string;
}
export interface WatchedStudyTable {
  study_uid: string;
  purpose: string;
  origin: string;
  instances: number;
  changed_at: string;
  handled_instances: Generated<number>;
  state: string;
  case_id: number | null;
  error: string | null;
  claimed_by: string | null;
  updated_at: string;
}
export interface RouteTransferTable {
  id: Generated<number>;
  study_uid: string;
  destination: string;
  rule: string;
  status: string;
  total: Generated<number>;
  sent: Generated<number>;
  attempts: Generated<number>;
  next_attempt_at: string;
  claimed_by: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
}
export interface ShareLinkTable {
  id: Generated<number>;
  token_hash: string;
  study_uid: string;
  patient_id: string;
  created_by: string;
  code_hash: string | null;
  expires_at: string;
  revoked_at: string | null;
  failed_codes: Generated<number>;
  opened: Generated<number>;
  created_at: string;
}
export interface DB {
  local_patients: LocalPatientTable;
  patient_identifiers: PatientIdentifierTable;
  reconciliation_cases: ReconciliationCaseTable;
  watched_studies: WatchedStudyTable;
  route_transfers: RouteTransferTable;
  share_links: ShareLinkTable;
  appointments: AppointmentTable;
  patient_identities: PatientIdentityTable;
  import_jobs: ImportJobTable;
  web_sessions: WebSessionTable;
  cached_studies: CachedStudyTable;
  report_publications: PublicationTable;
  publication_queue: PublicationQueueTable;
  rejected_instances: RejectedInstanceTable;
  audit_events: AuditTable;
  patients: PatientTable;
  studies: StudyTable;
  series: SeriesTable;
  instances: InstanceTable;
}

export type Dialect = 'sqlite' | 'postgres';
export interface Database {
  db: Kysely<DB>;
  dialect: Dialect;
  close(): Promise<void>;
}

/** SQLite under dataDir by default; PostgreSQL when the URL says so. The same Kysely queries run on both. */
export function openDatabase(opts: { databaseUrl?: string; dataDir: string }): Database {
  const url = opts.databaseUrl;
  if (url && /^postgres(ql)?:\/\//.test(url)) {
    // Bounded waits: a silent database fails the request in seconds instead of holding a DICOM association open.
    const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 10_000, statement_timeout: 30_000, query_timeout: 35_000, idle_in_transaction_session_timeout: 60_000 });
    // A broken connection must not crash the process, idle in the pool or checked out by a query in flight (pg
    // emits 'error' on the client itself, and an unhandled 'error' event ends a Node process): the query in
    // flight fails, the client is discarded, the pool makes a new one.
    pool.on('error', () => undefined);
    pool.on('connect', (client) => client.on('error', () => undefined));
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
    return { db, dialect: 'postgres', close: () => db.destroy() };
  }
  if (url && !/^sqlite:/.test(url)) throw new Error(`DATABASE_URL must start with postgres:// or sqlite: (got ${url.split(':')[0]}:)`);
  const file = url ? url.replace(/^sqlite:(\/\/)?/, '') : path.join(opts.dataDir, 'index.sqlite');
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const sqlite = new SQLite(file);
  // SQLite gives its -wal and -shm files the database file's permissions.
  if (file !== ':memory:') chmodSync(file, 0o600);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  // PS3.4 matching is case-sensitive except for PN (which we match on a normalised column); make LIKE agree with PostgreSQL.
  sqlite.pragma('case_sensitive_like = ON');
  const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  return { db, dialect: 'sqlite', close: () => db.destroy() };
}

/**
 * Kysely's SQLite driver prepares every statement on every execution; the same few statements run for each
 * received instance, so prepared statements are kept and reused (better-sqlite3 statements are reusable).
 */
function withStatementCache(sqlite: SQLite.Database): SQLite.Database {
  const cache = new Map<string, SQLite.Statement>();
  const prepare = sqlite.prepare.bind(sqlite);
  return new Proxy(sqlite, {
    get(target, prop, receiver) {
      if (prop === 'prepare') {
        return (source: string) => remembered(cache, source, 500, prepare);
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
