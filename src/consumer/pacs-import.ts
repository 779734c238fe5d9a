import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql, type Kysely, type Selectable } from 'kysely';
import type { Logger } from '../common/log.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { Professional } from '../auth/professional-token.js';
import { rewritePatient, type Settable } from '../dicom/patient-rewrite.js';
import type { OutboundInstance } from '../dicom/scu.js';
import { JobLeases } from '../store/job-leases.js';
import type { DB, Dialect, ImportJobTable } from '../store/db.js';
import type { BlobStore } from '../store/blobs.js';
import type { LocalIdentities } from '../identity/local-identities.js';
import type { InstanceProvider } from '../dicomweb/wado.js';
import type { RemoteExamCache } from './remote-exam-cache.js';
import type { ManifestSeries } from './manifest-reader.js';

export type ImportStatus = 'waiting-identity' | 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface ImportJob {
  id: number;
  studyUid: string;
  patientIns: string;
  status: ImportStatus;
  localId?: string;
  done: number;
  total: number;
  attempts: number;
  error?: string;
  report?: { sent: number; failed: number; inPacs: number; localId: string; seconds: number };
  requestedBy: string;
  createdAt: string;
  updatedAt: string;
}

export interface ImportRequest {
  studyUid: string;
  series: ManifestSeries[];
  patient: { ins: string; oid: string };
  professional: Professional;
  /** Attributes to set on the imported instances (e.g. InstitutionName marking external priors). */
  tags?: Settable;
}

/** How the rewritten instances reach the local PACS (C-STORE or STOW-RS), and how to count them there. */
export interface LocalPacs {
  send(files: OutboundInstance[]): Promise<{ completed: number; failed: number; error?: string }>;
  countInstances(studyUid: string, patientId: string): Promise<number>;
  /** SOP Instance UIDs of a series the PACS already holds (C-FIND image level): a resumed import skips them. */
  present?(studyUid: string, seriesUid: string): Promise<Set<string>>;
}

const MAX_ATTEMPTS = 5;
const BATCH = 25;
/** Bytes of rewritten instances a batch keeps in memory before it is sent. */
const BATCH_BYTES = 32 * 1024 * 1024;

/**
 * Imports of exams held by other DRIMboxes into the local PACS, one durable job each (a row in import_jobs):
 * identity first (the local IPP for the INS; without one the job waits for a person's decision and nothing is
 * sent), then the series are brought into the local cache, rewritten to the local identity (originals kept in
 * Other Patient IDs) and sent in batches, and finally counted in the PACS. Failures are retried with exponential
 * backoff; a node that dies mid-job leaves it to be resumed (instances already in the PACS are simply sent again
 * and the PACS keeps one copy). Several nodes sharing PostgreSQL claim jobs with SKIP LOCKED.
 */
export class PacsImports {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private filling = false;
  /** Jobs running on this node, with the source box each draws on. */
  private readonly active = new Map<number, string>();
  private readonly leases: JobLeases;
  private get nodeId(): string {
    return this.leases.nodeId;
  }

  constructor(
    private readonly deps: {
      db: Kysely<DB>;
      dialect: Dialect;
      identities: LocalIdentities;
      remote: RemoteExamCache;
      /** Series found in a peer PACS come from there (C-GET into the local cache), by AE title. */
      peerPacs?: (aeTitle: string) => InstanceProvider | undefined;
      blobs: BlobStore;
      pacs: LocalPacs;
      workDir: string;
      audit: AuditTrail;
      log: Logger;
      retryBaseMs?: number;
      /** Jobs run at once by this node (default 2). */
      parallel?: number;
      /** Jobs drawing on one source box at once (by origin); unlimited when undefined. */
      perSourceLimit?: (origin: string) => number | undefined;
      /** Least time between two job starts drawing on the same source box (default 100 ms). */
      startSpacingMs?: number;
      /** Stable across restarts (host and data directory): the node takes back its own claims when it starts. */
      nodeId?: string;
      leaseMs?: number;
    },
  ) {
    this.leases = new JobLeases({ db: deps.db, table: 'import_jobs', running: 'running', queued: 'queued', log: deps.log, nodeId: deps.nodeId ?? `${hostname()}:${randomUUID()}`, leaseMs: deps.leaseMs });
  }

  /** When a job drawing on each source box last started. */
  private readonly lastStart = new Map<string, number>();
  private spacingTimer: NodeJS.Timeout | undefined;

  async enqueue(req: ImportRequest): Promise<number> {
    const now = new Date().toISOString();
    const total = req.series.reduce((n, s) => n + s.instances.length, 0);
    const row = await this.deps.db
      .insertInto('import_jobs')
      .values({ study_uid: req.studyUid, patient_ins: req.patient.ins, patient_oid: req.patient.oid, requested_by: req.professional.id, professional: JSON.stringify(req.professional), manifest: JSON.stringify(req.series), status: 'queued', total, done: 0, attempts: 0, tags: req.tags ? JSON.stringify(req.tags) : null, source_origin: originOf(req.series), next_attempt_at: now, created_at: now, updated_at: now })
      .returning('id')
      .executeTakeFirstOrThrow();
    await this.deps.audit.record({ actorType: 'practitioner', actorId: req.professional.id, action: 'consumer.import', patientId: req.patient.ins, studyUid: req.studyUid, outcome: 'success', detail: { step: 'requested', job: Number(row.id), instances: total } });
    this.kick();
    return Number(row.id);
  }

  async list(limit = 100): Promise<ImportJob[]> {
    const rows = await this.deps.db.selectFrom('import_jobs').selectAll().orderBy('id', 'desc').limit(limit).execute();
    return rows.map(toJob);
  }

  async get(id: number): Promise<ImportJob | undefined> {
    const row = await this.deps.db.selectFrom('import_jobs').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toJob(row) : undefined;
  }

  /** A person names the local patient for a waiting job: recorded for this INS, and the job goes on. */
  async decideIdentity(id: number, localId: string, by: string): Promise<void> {
    const job = await this.deps.db.selectFrom('import_jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!job) throw new Error(`import ${id} does not exist`);
    if (job.status !== 'waiting-identity') throw new Error(`import ${id} is not waiting for an identity (${job.status})`);
    await this.deps.identities.record(job.patient_ins, job.patient_oid, localId, `decision:${by}`);
    await this.update(id, { status: 'queued', local_id: localId, error: null, next_attempt_at: new Date().toISOString() });
    await this.deps.audit.record({ actorType: 'practitioner', actorId: by, action: 'identity.decide', patientId: job.patient_ins, studyUid: job.study_uid, outcome: 'success', detail: { job: id, localId } });
    this.kick();
  }

  /** A failed job is tried again from the start (what is already in the PACS is not duplicated there). */
  async retry(id: number, by: string): Promise<void> {
    const r = await this.deps.db.updateTable('import_jobs').set({ status: 'queued', attempts: 0, error: null, next_attempt_at: new Date().toISOString(), updated_at: new Date().toISOString() }).where('id', '=', id).where('status', '=', 'failed').executeTakeFirst();
    if (!Number(r.numUpdatedRows)) throw new Error(`import ${id} is not failed`);
    await this.deps.audit.record({ actorType: 'practitioner', actorId: by, action: 'consumer.import', outcome: 'success', detail: { step: 'retry', job: id } });
    this.kick();
  }

  /** Jobs not started yet (queued or waiting for an identity) are cancelled; returns how many. */
  async cancel(ids: number[], by: string): Promise<number> {
    if (!ids.length) return 0;
    const r = await this.deps.db.updateTable('import_jobs').set({ status: 'cancelled', updated_at: new Date().toISOString() }).where('id', 'in', ids).where('status', 'in', ['queued', 'waiting-identity']).executeTakeFirst();
    const n = Number(r.numUpdatedRows);
    if (n) await this.deps.audit.record({ actorType: 'system', actorId: by, action: 'consumer.import', outcome: 'success', detail: { step: 'cancelled', jobs: ids, cancelled: n } });
    return n;
  }

  start(pollMs = 2000): void {
    this.stopped = false;
    // Jobs this node held when it was stopped, and those whose node died (lease run out), are resumed.
    this.leases.start();
    this.timer = setInterval(() => this.kick(), pollMs);
    this.timer.unref();
  }

  /** No new job is claimed after this (jobs in flight finish): a stopping node leaves the rest to others. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.spacingTimer) clearTimeout(this.spacingTimer);
    this.leases.stop();
  }

  /**
   * Starts queued jobs while this node has room: at most `parallel` at once, and no more per source box than
   * its limit (jobs of a busy site wait while others go ahead).
   */
  kick(): void {
    if (this.filling || this.stopped) return;
    this.filling = true;
    void (async () => {
      try {
        while (this.active.size < (this.deps.parallel ?? 2)) {
          const perOrigin = new Map<string, number>();
          for (const o of this.active.values()) perOrigin.set(o, (perOrigin.get(o) ?? 0) + 1);
          const saturated = [...perOrigin].filter(([o, n]) => {
            const limit = this.deps.perSourceLimit?.(o);
            return limit !== undefined && n >= limit;
          }).map(([o]) => o);
          // Jobs on one source box start spaced out. Started together, equal jobs share the link evenly, finish
          // together and then all store into the PACS at once while the link idles; the next batch starts
          // together again, and so on for the whole day. Spaced starts keep them out of step, so some are always
          // transferring while others store (measured by bench:prefetch).
          const spacing = this.deps.startSpacingMs ?? 100;
          const now = Date.now();
          const cooling = [...this.lastStart].filter(([o, t]) => o && now - t < spacing).map(([o]) => o);
          const job = await this.claim([...new Set([...saturated, ...cooling])]);
          if (!job) {
            if (cooling.length && !this.spacingTimer) {
              const wait = Math.max(1, spacing - Math.min(...cooling.map((o) => now - this.lastStart.get(o)!)));
              this.spacingTimer = setTimeout(() => {
                this.spacingTimer = undefined;
                this.kick();
              }, wait);
              this.spacingTimer.unref();
            }
            break;
          }
          const id = Number(job.id);
          if (job.source_origin) this.lastStart.set(job.source_origin, Date.now());
          this.active.set(id, job.source_origin ?? '');
          this.leases.hold(id);
          void this.run(job)
            .catch((e) => this.deps.log.error({ err: e, job: id }, 'import worker failed'))
            .finally(() => {
              this.active.delete(id);
              this.leases.release(id);
              this.kick();
            });
        }
      } catch (e) {
        this.deps.log.error({ err: e }, 'import worker failed');
      } finally {
        this.filling = false;
      }
    })();
  }

  private async claim(excludedOrigins: string[] = []): Promise<Selectable<ImportJobTable> | undefined> {
    const { db, dialect } = this.deps;
    const now = new Date().toISOString();
    if (dialect === 'postgres') {
      const r = await sql<{ id: number }>`update import_jobs set status = 'running', claimed_by = ${this.nodeId}, updated_at = ${now}
        where id = (select id from import_jobs where status = 'queued' and next_attempt_at <= ${now}
          and not (coalesce(source_origin, '') = any(${excludedOrigins}::text[])) order by id limit 1 for update skip locked)
        returning id`.execute(db);
      const id = r.rows[0]?.id;
      return id === undefined ? undefined : db.selectFrom('import_jobs').selectAll().where('id', '=', Number(id)).executeTakeFirst();
    }
    let q = db.selectFrom('import_jobs').select('id').where('status', '=', 'queued').where('next_attempt_at', '<=', now);
    if (excludedOrigins.length) q = q.where((eb) => eb(eb.fn.coalesce('source_origin', eb.val('')), 'not in', excludedOrigins));
    const next = await q.orderBy('id').limit(1).executeTakeFirst();
    if (!next) return undefined;
    const r = await db.updateTable('import_jobs').set({ status: 'running', claimed_by: this.nodeId, updated_at: now }).where('id', '=', next.id).where('status', '=', 'queued').executeTakeFirst();
    return Number(r.numUpdatedRows) ? db.selectFrom('import_jobs').selectAll().where('id', '=', next.id).executeTakeFirst() : this.claim(excludedOrigins);
  }

  private async update(id: number, set: Partial<Record<'status' | 'local_id' | 'done' | 'total' | 'attempts' | 'next_attempt_at' | 'error' | 'report' | 'claimed_by', string | number | null>>): Promise<void> {
    await this.deps.db
      .updateTable('import_jobs')
      .set({ ...(set as object), updated_at: new Date().toISOString() })
      .where('id', '=', id)
      .execute();
  }

  private async run(job: Selectable<ImportJobTable>): Promise<void> {
    const { identities, remote, blobs, pacs, audit, log } = this.deps;
    const id = Number(job.id);
    const started = Date.now();
    const professional = JSON.parse(job.professional) as Professional;
    const series = JSON.parse(job.manifest) as ManifestSeries[];
    const tags = job.tags ? (JSON.parse(job.tags) as Settable) : {};
    const dir = path.join(this.deps.workDir, `import-${id}`);
    try {
      const identity = job.local_id ? { localId: job.local_id, issuer: identities.issuer, source: 'job' } : await identities.lookup(job.patient_ins);
      if (!identity) {
        await this.update(id, { status: 'waiting-identity', error: `no local patient is known for INS ${job.patient_ins}: name the local patient ID to continue`, claimed_by: null });
        log.info({ job: id, ins: job.patient_ins }, 'import waits for an identity decision');
        return;
      }
      if (!job.local_id && identity.source === 'pacs') await identities.record(job.patient_ins, job.patient_oid, identity.localId, 'pacs');
      await this.update(id, { local_id: identity.localId });
      await mkdir(dir, { recursive: true });
      let sent = 0;
      let skipped = 0;
      let failed = 0;
      let lastError: string | undefined;
      for (const s of series) {
        let batch: OutboundInstance[] = [];
        let batchBytes = 0;
        const flush = async () => {
          if (!batch.length) return;
          const r = await pacs.send(batch);
          sent += r.completed;
          failed += r.failed;
          lastError = r.error ?? lastError;
          await Promise.all(batch.filter((b) => !b.bytes).map((b) => rm(b.path, { force: true })));
          batchBytes = 0;
          batch = [];
          await this.update(id, { done: sent });
        };
        const peer = s.pacs ? this.deps.peerPacs?.(s.pacs) : undefined;
        if (s.pacs && !peer) throw new Error(`the peer PACS ${s.pacs} of this prior is no longer configured`);
        // Resuming (a retry, a node restarted mid-transfer): what the PACS holds already is neither fetched nor
        // sent again. A series partly there is completed instance by instance; a series absent comes whole.
        // Only a retried or resumed job asks (a fresh one would pay a C-FIND per series for nothing).
        const resuming = Number(job.attempts) > 0 || Number(job.done) > 0;
        const have = pacs.present && resuming ? await pacs.present(job.study_uid, s.seriesUid).catch(() => new Set<string>()) : new Set<string>();
        const missing = s.instances.filter((i) => !have.has(i.sopUid));
        const already = s.instances.length - missing.length;
        if (already) {
          sent += already;
          skipped += already;
          await this.update(id, { done: sent });
        }
        if (!missing.length) continue;
        const who = { professional, patient: job.patient_ins, background: true };
        const fetchTarget = (sopUid?: string) => {
          const target = { studyUid: job.study_uid, seriesUid: s.seriesUid, ...(sopUid ? { sopUid } : {}) };
          return peer ? peer.instances(target) : remote.instances(target, s, who);
        };
        const from = already
          ? (async function* () {
              for (const i of missing) yield* fetchTarget(i.sopUid);
            })()
          : fetchTarget();
        for await (const inst of from) {
          const local = blobs.localPath(inst.blobKey);
          const original = local ? await readFile(local) : await streamToBuffer(blobs.read(inst.blobKey));
          const file = path.join(dir, `${inst.sopUid}.dcm`);
          const rewritten = rewritePatient(original, { patientId: identity.localId, issuer: identity.issuer }, [{ patientId: job.patient_ins, issuer: 'INS' }], tags);
          const item: OutboundInstance = { sopClassUid: inst.sopClassUid, sopInstanceUid: inst.sopUid, transferSyntaxUid: inst.transferSyntaxUid, path: file };
          // Sent from memory while the batch stays small (no temporary file written, read back and removed);
          // a large instance goes through a file so a batch never holds more than BATCH_BYTES.
          if (rewritten.length <= BATCH_BYTES / 4) {
            item.bytes = rewritten;
            batchBytes += rewritten.length;
          } else await writeFile(file, rewritten);
          batch.push(item);
          if (batch.length >= BATCH || batchBytes >= BATCH_BYTES) await flush();
        }
        await flush();
      }
      const inPacs = await pacs.countInstances(job.study_uid, identity.localId);
      const report = { sent, alreadyInPacs: skipped, failed, inPacs, localId: identity.localId, seconds: Math.round((Date.now() - started) / 100) / 10 };
      if (failed > 0 || inPacs < Number(job.total)) throw new Error(`${failed} instance(s) refused by the PACS, ${inPacs} of ${job.total} found there afterwards${lastError ? `: ${lastError}` : ''}`);
      await this.update(id, { status: 'done', report: JSON.stringify(report), error: null, claimed_by: null });
      await audit.record({ actorType: 'practitioner', actorId: professional.id, action: 'consumer.import', patientId: job.patient_ins, studyUid: job.study_uid, outcome: 'success', detail: { step: 'done', job: id, ...report } });
      log.info({ job: id, ...report }, 'exam imported into the local PACS');
    } catch (e) {
      const attempts = Number(job.attempts) + 1;
      const final = attempts >= MAX_ATTEMPTS;
      const delay = (this.deps.retryBaseMs ?? 5000) * 2 ** (attempts - 1);
      await this.update(id, { status: final ? 'failed' : 'queued', attempts, error: (e as Error).message, next_attempt_at: new Date(Date.now() + delay).toISOString(), claimed_by: null });
      await audit.record({ actorType: 'practitioner', actorId: professional.id, action: 'consumer.import', patientId: job.patient_ins, studyUid: job.study_uid, outcome: 'failure', detail: { step: final ? 'failed' : 'retry-scheduled', job: id, attempts, error: (e as Error).message } });
      log.warn({ job: id, attempts, final, err: (e as Error).message }, 'import attempt failed');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

async function streamToBuffer(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

function toJob(r: Selectable<ImportJobTable>): ImportJob {
  return {
    id: Number(r.id),
    studyUid: r.study_uid,
    patientIns: r.patient_ins,
    status: r.status as ImportStatus,
    localId: r.local_id ?? undefined,
    done: Number(r.done),
    total: Number(r.total),
    attempts: Number(r.attempts),
    error: r.error ?? undefined,
    report: r.report ? JSON.parse(r.report) : undefined,
    requestedBy: r.requested_by,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** The source box (origin of the Retrieve URLs) an import draws on. */
function originOf(series: ManifestSeries[]): string | null {
  const pacs = series.find((s) => s.pacs)?.pacs;
  if (pacs) return `dicom:${pacs}`;
  const url = series.find((s) => s.retrieveUrl)?.retrieveUrl;
  try {
    return url ? new URL(url).origin : null;
  } catch {
    return null;
  }
}
