import { CompiledQuery, sql, type Kysely, type SelectQueryBuilder, type Expression, type SqlBool } from 'kysely';
import type { DB, Dialect, InstanceTable, PatientTable, SeriesTable, StudyTable } from './db.js';
import { LEVEL_TAGS, MATCHABLE_BY_TAG, levelRank, normalizePersonName, type Level, type Matchable } from './attributes.js';
import { multi, num, str, type DicomJson } from '../dicom/part10.js';

export interface IndexedInstance {
  header: DicomJson; // data set attributes (no pixel data), bulk data already replaced by URIs
  transferSyntaxUid: string;
  blobKey: string;
  sourceAe?: string;
}

export interface StoredInstance {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  blobKey: string;
  size: number;
  instanceNumber: number | null;
  frames: number | null;
}

export interface FindQuery {
  level: Level;
  /** tag → value in DICOM string form ('' = universal: return the attribute, match everything). */
  keys: Map<string, string>;
  limit: number;
  offset?: number;
}

export interface FindMatch {
  level: Level;
  /** Attributes of the match and of its parent levels, plus the computed counts. */
  attrs: DicomJson;
  studyUid?: string;
  seriesUid?: string;
  sopUid?: string;
}

export class QueryError extends Error {
  override name = 'QueryError';
}

function pick(ds: DicomJson, tags: string[]): DicomJson {
  const out: DicomJson = {};
  for (const t of tags) if (ds[t]) out[t] = ds[t]!;
  return out;
}

function otherPatientIds(ds: DicomJson): string | null {
  const ids: string[] = [];
  const seq = ds['00101002']?.Value as DicomJson[] | undefined;
  for (const item of seq ?? []) {
    const id = str(item, '00100020');
    if (id) ids.push(str(item, '00100021') ? `${id}^${str(item, '00100021')}` : id);
  }
  const retired = multi(ds, '00101000');
  if (retired) ids.push(...retired.split('\\'));
  return ids.length ? `\\${ids.join('\\')}\\` : null;
}

const now = () => new Date().toISOString();

export interface PreparedInstance {
  readonly studyUid: string;
  readonly seriesUid: string;
  readonly sopUid: string;
  readonly t: string;
  readonly patient: PatientRow;
  readonly study: StudyRow;
  readonly series: SeriesRow;
  /** The parent rows as text, compared with what this node last wrote for the series. */
  readonly parentKey: string;
  readonly instance: Omit<InstanceRow, 'series_pk' | 'size'>;
}

// The rows as written: the tables' columns but for those the database or the parent rows provide.
type PatientRow = Omit<PatientTable, 'id' | 'updated_at'>;
type StudyRow = Omit<StudyTable, 'id' | 'patient_pk' | 'updated_at'>;
type SeriesRow = Omit<SeriesTable, 'id' | 'study_pk' | 'updated_at'>;
type InstanceRow = Omit<InstanceTable, 'id'>;

/** Escapes a DICOM wildcard value into a LIKE pattern ('*' → '%', '?' → '_'). */
export function likePattern(value: string): string {
  return value.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%').replace(/\?/g, '_');
}

const hasWildcard = (v: string) => /[*?]/.test(v);

/**
 * The relational index over Patient/Study/Series/Instance. All SQL goes through Kysely with bound
 * parameters; the same code serves SQLite and PostgreSQL.
 */
export class StudyIndex {
  constructor(
    readonly db: Kysely<DB>,
    readonly dialect: Dialect,
  ) {}

  async ping(): Promise<void> {
    await sql`select 1`.execute(this.db);
  }

  /**
   * SQL text of the two statements run for every received instance, built by Kysely once (in this database's
   * dialect) and then run with each instance's parameters: building and compiling the query each time cost
   * more than running it.
   */
  private hotSql: { hasInstance: string; insertInstance: string; columns: readonly (keyof InstanceRow)[] } | undefined;

  private hot() {
    if (this.hotSql) return this.hotSql;
    const sample: InstanceRow = { sop_uid: '', sop_class_uid: '', instance_number: null, transfer_syntax: '', size: 0, blob_key: '', frames: null, metadata: '', received_at: '', source_ae: null, series_pk: 0 };
    const columns = Object.keys(sample) as (keyof InstanceRow)[];
    const insert = this.db
      .insertInto('instances')
      .values(sample)
      // excluded.* (both SQLite and PostgreSQL): the new row's values, so the parameters are the inserted row only.
      .onConflict((oc) => oc.column('sop_uid').doUpdateSet(Object.fromEntries(columns.filter((c) => c !== 'sop_uid').map((c) => [c, sql.ref(`excluded.${c}`)]))))
      .compile();
    this.hotSql = {
      hasInstance: this.db.selectFrom('instances').select('id').where('sop_uid', '=', '').compile().sql,
      insertInstance: insert.sql,
      columns,
    };
    return this.hotSql;
  }

  async hasInstance(sopUid: string): Promise<boolean> {
    const { rows } = await this.db.executeQuery(CompiledQuery.raw(this.hot().hasInstance, [sopUid]));
    return rows.length > 0;
  }

  /** The instance's own row; one statement, atomic on its own. */
  private insertInstance(db: Kysely<DB>, row: InstanceRow) {
    const { insertInstance, columns } = this.hot();
    return db.executeQuery(CompiledQuery.raw(insertInstance, columns.map((c) => row[c])));
  }

  /**
   * Parent records (patient, study, series) last written by this node, keyed by Series Instance UID, with the
   * exact values written. Instances of a series arrive in a row and carry the same parent attributes, so all
   * but the first only insert their own row; a changed attribute still rewrites the parents.
   */
  private readonly parents = new Map<string, { key: string; seriesPk: number }>();

  /**
   * The rows an instance will be indexed with, computed before they can be written: ingest prepares them while
   * the file's data sync runs, and writes them once the file is in place.
   */
  prepareInstance(rec: IndexedInstance): PreparedInstance {
    const ds = rec.header;
    const studyUid = str(ds, '0020000D');
    const seriesUid = str(ds, '0020000E');
    const sopUid = str(ds, '00080018');
    const t = now();
    const patientName = str(ds, '00100010');
    const patient: PatientRow = {
      patient_id: str(ds, '00100020'),
      issuer: str(ds, '00100021'),
      patient_name: patientName || null,
      patient_name_norm: patientName ? normalizePersonName(patientName) : null,
      birth_date: str(ds, '00100030') || null,
      sex: str(ds, '00100040') || null,
      other_ids: otherPatientIds(ds),
      attrs: JSON.stringify(pick(ds, LEVEL_TAGS.PATIENT)),
    };
    const referring = str(ds, '00080090');
    const study: StudyRow = {
      study_uid: studyUid,
      study_date: str(ds, '00080020') || null,
      study_time: str(ds, '00080030') || null,
      accession_number: str(ds, '00080050') || null,
      study_id: str(ds, '00200010') || null,
      description: str(ds, '00081030') || null,
      referring_physician: referring || null,
      referring_physician_norm: referring ? normalizePersonName(referring) : null,
      attrs: JSON.stringify(pick(ds, LEVEL_TAGS.STUDY)),
    };
    const series: SeriesRow = {
      series_uid: seriesUid,
      modality: str(ds, '00080060') || null,
      series_number: num(ds, '00200011'),
      description: str(ds, '0008103E') || null,
      series_date: str(ds, '00080021') || null,
      body_part: str(ds, '00180015') || null,
      institution_name: str(ds, '00080080') || null,
      station_name: str(ds, '00081010') || null,
      attrs: JSON.stringify(pick(ds, LEVEL_TAGS.SERIES)),
    };
    const parentKey = JSON.stringify([patient, study, series]);
    const instance: Omit<InstanceRow, 'series_pk' | 'size'> = {
      sop_uid: sopUid,
      sop_class_uid: str(ds, '00080016'),
      instance_number: num(ds, '00200013'),
      transfer_syntax: rec.transferSyntaxUid,
      blob_key: rec.blobKey,
      frames: num(ds, '00280008'),
      metadata: JSON.stringify(ds),
      received_at: t,
      source_ae: rec.sourceAe ?? null,
    };
    return { studyUid, seriesUid, sopUid, t, patient, study, series, parentKey, instance };
  }

  /**
   * Adds or replaces one instance and refreshes its patient, study and series records, atomically, from what
   * `prepareInstance` computed; `size` is the stored file's, known once it is complete.
   */
  async writeInstance(p: PreparedInstance, size: number): Promise<{ studyUid: string; seriesUid: string; sopUid: string }> {
    const { studyUid, seriesUid, sopUid, t, patient, study, series, parentKey } = p;
    const instance = { ...p.instance, size };
    const write = async (useCache: boolean) => {
      const cached = useCache ? this.parents.get(seriesUid) : undefined;
      if (cached && cached.key === parentKey) {
        // Parents unchanged: one statement, no transaction. A foreign-key failure (parents deleted meanwhile)
        // sends the caller to the full write.
        await this.insertInstance(this.db, { ...instance, series_pk: cached.seriesPk });
        return cached.seriesPk;
      }
      return this.db.transaction().execute(async (trx) => {
        const { id: patientPk } = await trx
          .insertInto('patients')
          .values({ ...patient, updated_at: t })
          .onConflict((oc) => oc.columns(['patient_id', 'issuer']).doUpdateSet({ ...patient, updated_at: t }))
          .returning('id')
          .executeTakeFirstOrThrow();
        const studyRow = { ...study, patient_pk: Number(patientPk), updated_at: t };
        const { id: studyPk } = await trx
          .insertInto('studies')
          .values(studyRow)
          .onConflict((oc) => oc.column('study_uid').doUpdateSet(studyRow))
          .returning('id')
          .executeTakeFirstOrThrow();
        const seriesRow = { ...series, study_pk: Number(studyPk), updated_at: t };
        const row = await trx
          .insertInto('series')
          .values(seriesRow)
          .onConflict((oc) => oc.column('series_uid').doUpdateSet(seriesRow))
          .returning('id')
          .executeTakeFirstOrThrow();
        const seriesPk = Number(row.id);
        await this.insertInstance(trx, { ...instance, series_pk: seriesPk });
        return seriesPk;
      });
    };
    let seriesPk: number;
    try {
      seriesPk = await write(true);
    } catch {
      // The cached parents may be stale (deleted or changed by another node sharing the database): redo in full.
      this.parents.delete(seriesUid);
      seriesPk = await write(false);
    }
    if (this.parents.size > 10_000) this.parents.clear();
    this.parents.set(seriesUid, { key: parentKey, seriesPk });
    return { studyUid, seriesUid, sopUid };
  }

  /** Instances of a study, series or single instance, in a stable order (series, then instance number). */
  async listInstances(where: { studyUid?: string; seriesUid?: string; sopUid?: string; patientId?: string }): Promise<StoredInstance[]> {
    let q = this.db
      .selectFrom('instances')
      .innerJoin('series', 'series.id', 'instances.series_pk')
      .innerJoin('studies', 'studies.id', 'series.study_pk')
      .select([
        'studies.study_uid as studyUid',
        'series.series_uid as seriesUid',
        'instances.sop_uid as sopUid',
        'instances.sop_class_uid as sopClassUid',
        'instances.transfer_syntax as transferSyntaxUid',
        'instances.blob_key as blobKey',
        'instances.size as size',
        'instances.instance_number as instanceNumber',
        'instances.frames as frames',
      ]);
    if (where.studyUid) q = q.where('studies.study_uid', '=', where.studyUid);
    if (where.seriesUid) q = q.where('series.series_uid', '=', where.seriesUid);
    if (where.sopUid) q = q.where('instances.sop_uid', '=', where.sopUid);
    if (where.patientId !== undefined) {
      q = q.innerJoin('patients', 'patients.id', 'studies.patient_pk').where('patients.patient_id', '=', where.patientId);
    }
    const rows = await q.orderBy('series.series_number').orderBy('series.id').orderBy('instances.instance_number').orderBy('instances.id').execute();
    return rows.map((r) => ({ ...r, size: Number(r.size) }));
  }

  /** Stored metadata (DICOM JSON text) of matching instances, in pages so a large study is never held whole. */
  async *metadata(where: { studyUid: string; seriesUid?: string; sopUid?: string }, pageSize = 500): AsyncGenerator<string> {
    let after = 0;
    for (;;) {
      let q = this.db
        .selectFrom('instances')
        .innerJoin('series', 'series.id', 'instances.series_pk')
        .innerJoin('studies', 'studies.id', 'series.study_pk')
        .select(['instances.id as id', 'instances.metadata as metadata'])
        .where('studies.study_uid', '=', where.studyUid)
        .where('instances.id', '>', after);
      if (where.seriesUid) q = q.where('series.series_uid', '=', where.seriesUid);
      if (where.sopUid) q = q.where('instances.sop_uid', '=', where.sopUid);
      const rows = await q.orderBy('instances.id').limit(pageSize).execute();
      for (const r of rows) yield r.metadata;
      if (rows.length < pageSize) return;
      after = Number(rows[rows.length - 1]!.id);
    }
  }

  /** Patient ID of a study, for audit records. */
  async patientOfStudy(studyUid: string): Promise<string | undefined> {
    const row = await this.db.selectFrom('studies').innerJoin('patients', 'patients.id', 'studies.patient_pk').select('patients.patient_id').where('studies.study_uid', '=', studyUid).executeTakeFirst();
    return row?.patient_id;
  }

  async counts(): Promise<{ patients: number; studies: number; series: number; instances: number; bytes: number }> {
    const one = async (t: 'patients' | 'studies' | 'series' | 'instances') =>
      Number((await this.db.selectFrom(t).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const bytes = await this.db.selectFrom('instances').select((eb) => eb.fn.sum('size').as('b')).executeTakeFirstOrThrow();
    return { patients: await one('patients'), studies: await one('studies'), series: await one('series'), instances: await one('instances'), bytes: Number(bytes.b ?? 0) };
  }

  /** Total stored bytes of a study. */
  async studySize(studyUid: string): Promise<number> {
    const row = await this.db
      .selectFrom('instances')
      .innerJoin('series', 'series.id', 'instances.series_pk')
      .innerJoin('studies', 'studies.id', 'series.study_pk')
      .select((eb) => eb.fn.sum('instances.size').as('b'))
      .where('studies.study_uid', '=', studyUid)
      .executeTakeFirst();
    return Number(row?.b ?? 0);
  }

  /**
   * Removes a study from the index (instances, series, the study, and the patient when it has no other study)
   * and returns the blob keys its instances used, for the caller to delete once the index no longer points at them.
   */
  async deleteStudy(studyUid: string): Promise<string[]> {
    const keys = await this.db.transaction().execute(async (trx) => {
      const study = await trx.selectFrom('studies').select(['id', 'patient_pk']).where('study_uid', '=', studyUid).executeTakeFirst();
      if (!study) return [];
      const series = await trx.selectFrom('series').select(['id', 'series_uid']).where('study_pk', '=', study.id).execute();
      const seriesPks = series.map((s) => s.id);
      const blobs = seriesPks.length ? await trx.selectFrom('instances').select('blob_key').where('series_pk', 'in', seriesPks).execute() : [];
      if (seriesPks.length) {
        await trx.deleteFrom('instances').where('series_pk', 'in', seriesPks).execute();
        await trx.deleteFrom('series').where('id', 'in', seriesPks).execute();
      }
      await trx.deleteFrom('studies').where('id', '=', study.id).execute();
      const others = await trx.selectFrom('studies').select('id').where('patient_pk', '=', study.patient_pk).limit(1).executeTakeFirst();
      if (!others) await trx.deleteFrom('patients').where('id', '=', study.patient_pk).execute();
      for (const s of series) this.parents.delete(s.series_uid);
      return blobs.map((b) => b.blob_key);
    });
    return keys;
  }

  async deleteInstance(sopUid: string): Promise<void> {
    await this.db.deleteFrom('instances').where('sop_uid', '=', sopUid).execute();
  }

  /**
   * Hierarchical query shared by C-FIND and QIDO-RS (PS3.4 C.2/C.6): single value, wildcard, range,
   * list of UIDs and universal matching; keys below the query level are rejected, not silently ignored.
   */
  async find(query: FindQuery): Promise<{ matches: FindMatch[]; truncated: boolean }> {
    const rank = levelRank(query.level);
    const base = this.baseQuery(query.level);
    let q = base;
    for (const [tag, rawValue] of query.keys) {
      const m = MATCHABLE_BY_TAG.get(tag);
      const value = rawValue.trim();
      if (!m || value === '' || value === '*') continue;
      if (levelRank(m.level) > rank) throw new QueryError(`${m.keyword} cannot be matched at ${query.level} level`);
      q = q.where((eb) => this.condition(m, value, eb as any) as Expression<SqlBool>);
    }
    const idCol = { PATIENT: 'patients.id', STUDY: 'studies.id', SERIES: 'series.id', IMAGE: 'instances.id' }[query.level];
    const rows = await q
      .orderBy(sql.ref(idCol))
      .limit(query.limit + 1)
      .offset(query.offset ?? 0)
      .execute();
    const truncated = rows.length > query.limit;
    const page = rows.slice(0, query.limit) as Array<Record<string, any>>;
    const matches = await this.decorate(query.level, page);
    return { matches, truncated };
  }

  private baseQuery(level: Level): SelectQueryBuilder<any, any, any> {
    const db = this.db as Kysely<any>;
    switch (level) {
      case 'PATIENT':
        return db.selectFrom('patients').select(['patients.id as pk', 'patients.attrs as patient_attrs']);
      case 'STUDY':
        return db
          .selectFrom('studies')
          .innerJoin('patients', 'patients.id', 'studies.patient_pk')
          .select(['studies.id as pk', 'patients.attrs as patient_attrs', 'studies.attrs as study_attrs', 'studies.study_uid as study_uid']);
      case 'SERIES':
        return db
          .selectFrom('series')
          .innerJoin('studies', 'studies.id', 'series.study_pk')
          .innerJoin('patients', 'patients.id', 'studies.patient_pk')
          .select(['series.id as pk', 'patients.attrs as patient_attrs', 'studies.attrs as study_attrs', 'series.attrs as series_attrs', 'studies.study_uid as study_uid', 'series.series_uid as series_uid']);
      case 'IMAGE':
        return db
          .selectFrom('instances')
          .innerJoin('series', 'series.id', 'instances.series_pk')
          .innerJoin('studies', 'studies.id', 'series.study_pk')
          .innerJoin('patients', 'patients.id', 'studies.patient_pk')
          .select([
            'instances.id as pk',
            'patients.attrs as patient_attrs',
            'studies.attrs as study_attrs',
            'series.attrs as series_attrs',
            'instances.metadata as metadata',
            'instances.transfer_syntax as transfer_syntax',
            'studies.study_uid as study_uid',
            'series.series_uid as series_uid',
            'instances.sop_uid as sop_uid',
          ]);
    }
  }

  private condition(m: Matchable, value: string, eb: any): unknown {
    const col = m.column ? sql.ref(m.column) : undefined;
    switch (m.kind) {
      case 'uid': {
        const uids = value.split('\\').map((u) => u.trim()).filter(Boolean);
        return uids.length === 1 ? eb(m.column, '=', uids[0]) : eb(m.column, 'in', uids);
      }
      case 'number': {
        const n = Number(value);
        if (!Number.isFinite(n)) throw new QueryError(`${m.keyword}: "${value}" is not a number`);
        return eb(m.column, '=', n);
      }
      case 'date':
      case 'time': {
        const clean = value.replace(/[:]/g, '');
        const check = m.kind === 'date' ? /^(\d{8})?(-(\d{8})?)?$/ : /^(\d{2,6}(\.\d{1,6})?)?(-(\d{2,6}(\.\d{1,6})?)?)?$/;
        if (!check.test(clean) || clean === '-') throw new QueryError(`${m.keyword}: "${value}" is not a ${m.kind === 'date' ? 'date (YYYYMMDD) or date range' : 'time (HHMMSS) or time range'}`);
        if (!clean.includes('-')) {
          return m.kind === 'date' ? eb(m.column, '=', clean) : sql<SqlBool>`${col} LIKE ${clean + '%'}`;
        }
        const [lo, hi] = clean.split('-') as [string, string];
        const conds: unknown[] = [];
        if (lo) conds.push(eb(m.column, '>=', lo));
        if (hi) conds.push(eb(m.column, '<=', m.kind === 'time' ? hi.padEnd(6, '9') + '.999999' : hi));
        return eb.and(conds);
      }
      case 'pn':
      case 'text': {
        const v = m.kind === 'pn' ? normalizePersonName(value) : value;
        if (value.includes('\\') && m.kind === 'text') {
          return eb(m.column, 'in', value.split('\\'));
        }
        return hasWildcard(v) ? sql<SqlBool>`${col} LIKE ${likePattern(v)} ESCAPE '\\'` : eb(m.column, '=', v);
      }
      case 'otherIds':
        return sql<SqlBool>`${col} LIKE ${'%\\' + likePattern(value).replace(/%/g, '%') + '%'} ESCAPE '\\'`;
      case 'modalities': {
        const mods = value.split('\\').map((s) => s.trim()).filter(Boolean);
        return eb.exists(
          (this.db as Kysely<any>)
            .selectFrom('series as s2')
            .select(sql.lit(1).as('one'))
            .whereRef('s2.study_pk', '=', 'studies.id')
            .where('s2.modality', 'in', mods),
        );
      }
    }
  }

  /** Adds parent-level attributes and the computed counts PS3.4 defines (number of related series/instances, modalities). */
  private async decorate(level: Level, rows: Array<Record<string, any>>): Promise<FindMatch[]> {
    if (rows.length === 0) return [];
    const pks = rows.map((r) => Number(r.pk));
    const db = this.db as Kysely<any>;
    const counts = new Map<number, Record<string, number>>();
    const mods = new Map<number, Set<string>>();
    const add = (pk: number, k: string, n: number) => counts.set(pk, { ...(counts.get(pk) ?? {}), [k]: n });
    if (level === 'PATIENT') {
      for (const r of await db.selectFrom('studies').select(['patient_pk as pk', (eb: any) => eb.fn.countAll().as('n')]).where('patient_pk', 'in', pks).groupBy('patient_pk').execute()) add(Number(r.pk), 'studies', Number(r.n));
      for (const r of await db.selectFrom('series').innerJoin('studies', 'studies.id', 'series.study_pk').select(['studies.patient_pk as pk', (eb: any) => eb.fn.countAll().as('n')]).where('studies.patient_pk', 'in', pks).groupBy('studies.patient_pk').execute()) add(Number(r.pk), 'series', Number(r.n));
      for (const r of await db.selectFrom('instances').innerJoin('series', 'series.id', 'instances.series_pk').innerJoin('studies', 'studies.id', 'series.study_pk').select(['studies.patient_pk as pk', (eb: any) => eb.fn.countAll().as('n')]).where('studies.patient_pk', 'in', pks).groupBy('studies.patient_pk').execute()) add(Number(r.pk), 'instances', Number(r.n));
    } else if (level === 'STUDY') {
      for (const r of await db.selectFrom('series').select(['study_pk as pk', 'modality']).where('study_pk', 'in', pks).execute()) {
        const pk = Number(r.pk);
        add(pk, 'series', (counts.get(pk)?.series ?? 0) + 1);
        if (r.modality) mods.set(pk, (mods.get(pk) ?? new Set()).add(String(r.modality)));
      }
      for (const r of await db.selectFrom('instances').innerJoin('series', 'series.id', 'instances.series_pk').select(['series.study_pk as pk', (eb: any) => eb.fn.countAll().as('n')]).where('series.study_pk', 'in', pks).groupBy('series.study_pk').execute()) add(Number(r.pk), 'instances', Number(r.n));
    } else if (level === 'SERIES') {
      for (const r of await db.selectFrom('instances').select(['series_pk as pk', (eb: any) => eb.fn.countAll().as('n')]).where('series_pk', 'in', pks).groupBy('series_pk').execute()) add(Number(r.pk), 'instances', Number(r.n));
    }
    return rows.map((r) => {
      const pk = Number(r.pk);
      const attrs: DicomJson = { ...JSON.parse(r.patient_attrs) };
      if (r.study_attrs) Object.assign(attrs, JSON.parse(r.study_attrs));
      if (r.series_attrs) Object.assign(attrs, JSON.parse(r.series_attrs));
      if (r.metadata) {
        const md = JSON.parse(r.metadata) as DicomJson;
        for (const [t, v] of Object.entries(md)) if (!attrs[t]) attrs[t] = v;
        attrs['00083002'] = { vr: 'UI', Value: [r.transfer_syntax] };
      }
      const c = counts.get(pk) ?? {};
      if (level === 'PATIENT') {
        attrs['00201200'] = { vr: 'IS', Value: [c.studies ?? 0] };
        attrs['00201202'] = { vr: 'IS', Value: [c.series ?? 0] };
        attrs['00201204'] = { vr: 'IS', Value: [c.instances ?? 0] };
      } else if (level === 'STUDY') {
        attrs['00201206'] = { vr: 'IS', Value: [c.series ?? 0] };
        attrs['00201208'] = { vr: 'IS', Value: [c.instances ?? 0] };
        const m = [...(mods.get(pk) ?? [])].sort();
        attrs['00080061'] = m.length ? { vr: 'CS', Value: m } : { vr: 'CS' };
      } else if (level === 'SERIES') {
        attrs['00201209'] = { vr: 'IS', Value: [c.instances ?? 0] };
      }
      attrs['00080056'] = { vr: 'CS', Value: ['ONLINE'] };
      return { level, attrs, studyUid: r.study_uid, seriesUid: r.series_uid, sopUid: r.sop_uid };
    });
  }
}
