import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Logger } from '../common/log.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import { parseHeader } from '../dicom/part10.js';
import { rewritePatient, type PatientIdentity } from '../dicom/patient-rewrite.js';
import type { OutboundInstance } from '../dicom/scu.js';
import { incomingPatientOf } from '../identity/dicom-patient.js';
import type { ReconciliationQueue, Decision } from '../identity/reconciliation-queue.js';
import type { IdentityReconciler, IncomingPatient } from '../identity/reconciler.js';
import type { BlobStore } from '../store/blobs.js';
import type { StudyIndex } from '../store/study-index.js';
import type { StudyWatch, WatchedStudy } from './study-watch.js';

const PURPOSE = 'inbound';
const BATCH = 50;

export interface LocalPacs {
  send(files: OutboundInstance[]): Promise<{ completed: number; failed: number; error?: string }>;
  countInstances(studyUid: string, patientId: string): Promise<number>;
}

export type IncomingOutcome = { state: 'done'; localId: string; sent: number; method: string } | { state: 'waiting-identity'; caseId: number; reason: string };

/**
 * Studies from outside the institution (pushed by another box, read from a patient's CD) enter the local PACS
 * only through identity reconciliation: the patient they carry is matched to a local identity (automatically
 * when it is safe, else by a person through the queue), every instance is rewritten to that identity with the
 * original identifiers kept in Other Patient IDs Sequence, and only then stored into the PACS.
 */
export class IncomingStudies {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private readonly claimant = `${hostname()}:${process.pid}`;

  constructor(
    private readonly deps: {
      watch: StudyWatch;
      reconciler: IdentityReconciler;
      queue: ReconciliationQueue;
      index: StudyIndex;
      blobs: BlobStore;
      pacs: LocalPacs;
      issuer: string;
      workDir: string;
      stableMs: number;
      audit: AuditTrail;
      log: Logger;
    },
  ) {}

  /** An instance of a study from `origin` ("box:domain", "media:…") was stored here. */
  async arrived(studyUid: string, origin: string): Promise<void> {
    await this.deps.watch.arrived(studyUid, PURPOSE, origin);
  }

  start(tickMs = 2000): void {
    this.timer = setInterval(() => void this.tick(), tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Processes the inbound studies that have become stable. */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const study of await this.deps.watch.claimStable(PURPOSE, this.deps.stableMs, this.claimant)) await this.process(study).catch(() => undefined);
    } finally {
      this.busy = false;
    }
  }

  /** Processes one study now (a CD import does not wait for stability: all its files are there). */
  async processNow(studyUid: string, origin: string): Promise<IncomingOutcome> {
    let study = await this.deps.watch.get(studyUid, PURPOSE);
    if (!study) {
      await this.deps.watch.observed(studyUid, PURPOSE, origin, (await this.deps.index.listInstances({ studyUid })).length);
      study = (await this.deps.watch.get(studyUid, PURPOSE))!;
    }
    return this.process(study);
  }

  private async process(study: WatchedStudy): Promise<IncomingOutcome> {
    const { reconciler, queue, watch, audit, log } = this.deps;
    try {
      const incoming = await this.patientOf(study.study_uid);
      const match = await reconciler.reconcile(incoming);
      if (match.kind === 'manual') {
        const caseId = await queue.open({ origin: study.origin, studyUid: study.study_uid, incoming, candidates: match.candidates, reason: match.reason });
        await watch.settle(study, 'waiting-identity', { caseId, error: null });
        await audit.record({ actorType: 'system', actorId: study.origin, action: 'identity.reconcile', studyUid: study.study_uid, patientId: incoming.ins?.value ?? incoming.identifiers[0]?.id, outcome: 'success', detail: { decision: 'manual', reason: match.reason, case: caseId, candidates: match.candidates.map((c) => c.localId) } });
        log.info({ study: study.study_uid, case: caseId, reason: match.reason }, 'incoming study waits in the reconciliation queue');
        return { state: 'waiting-identity', caseId, reason: match.reason };
      }
      await reconciler.remember(incoming, match.localId, `automatic:${match.method}`);
      await audit.record({ actorType: 'system', actorId: study.origin, action: 'identity.reconcile', studyUid: study.study_uid, patientId: match.localId, outcome: 'success', detail: { decision: 'automatic', method: match.method, score: match.score, localId: match.localId } });
      const sent = await this.forward(study.study_uid, incoming, match.localId);
      await watch.settle(study, 'done', { error: null });
      return { state: 'done', localId: match.localId, sent, method: match.method };
    } catch (e) {
      await watch.settle(study, 'failed', { error: (e as Error).message });
      log.warn({ study: study.study_uid, err: (e as Error).message }, 'incoming study could not be stored into the PACS');
      throw e;
    }
  }

  /** A person's decision on a case: the identity is remembered and the study goes into the PACS. */
  async decide(caseId: number, decision: Decision, by: string): Promise<{ localId: string; sent: number }> {
    const { queue, reconciler, watch, audit } = this.deps;
    const { case: c, localId, created } = await queue.decide(caseId, decision, by);
    await reconciler.remember(c.incoming, localId, `decision:${by}`);
    await audit.record({ actorType: 'practitioner', actorId: by, action: 'identity.decide', studyUid: c.studyUid, patientId: localId, outcome: 'success', detail: { case: caseId, localId, created } });
    const study = await watch.get(c.studyUid, PURPOSE);
    try {
      const sent = await this.forward(c.studyUid, c.incoming, localId);
      if (study) await watch.settle(study, 'done', { error: null });
      return { localId, sent };
    } catch (e) {
      if (study) await watch.settle(study, 'failed', { error: (e as Error).message });
      throw e;
    }
  }

  private async patientOf(studyUid: string): Promise<IncomingPatient> {
    const first = (await this.deps.index.listInstances({ studyUid }))[0];
    if (!first) throw new Error(`study ${studyUid} has no instance here`);
    return incomingPatientOf(parseHeader(await this.bytes(first.blobKey), true).dataset);
  }

  private async bytes(key: string): Promise<Buffer> {
    const local = this.deps.blobs.localPath?.(key);
    if (local) return readFile(local);
    const chunks: Buffer[] = [];
    for await (const c of this.deps.blobs.read(key)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** Every instance rewritten to the local identity and stored into the PACS; checked there afterwards. */
  private async forward(studyUid: string, incoming: IncomingPatient, localId: string): Promise<number> {
    const { index, pacs, issuer, audit, log } = this.deps;
    const dir = path.join(this.deps.workDir, `incoming-${studyUid}-${process.pid}`);
    await mkdir(dir, { recursive: true });
    const started = Date.now();
    const keep: PatientIdentity[] = incoming.ins ? [{ patientId: incoming.ins.value, issuer: 'INS' }] : [];
    const instances = await index.listInstances({ studyUid });
    let sent = 0;
    let failed = 0;
    let lastError: string | undefined;
    try {
      for (let i = 0; i < instances.length; i += BATCH) {
        const batch: OutboundInstance[] = [];
        for (const inst of instances.slice(i, i + BATCH)) {
          const file = path.join(dir, `${inst.sopUid}.dcm`);
          await writeFile(file, rewritePatient(await this.bytes(inst.blobKey), { patientId: localId, issuer }, keep));
          batch.push({ sopClassUid: inst.sopClassUid, sopInstanceUid: inst.sopUid, transferSyntaxUid: inst.transferSyntaxUid, path: file });
        }
        const r = await pacs.send(batch);
        sent += r.completed;
        failed += r.failed;
        lastError = r.error ?? lastError;
        await Promise.all(batch.map((b) => rm(b.path, { force: true })));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const inPacs = await pacs.countInstances(studyUid, localId);
    if (failed || inPacs < instances.length) throw new Error(`${failed} instance(s) refused by the PACS, ${inPacs} of ${instances.length} found there under ${localId}${lastError ? `: ${lastError}` : ''}`);
    await audit.record({ actorType: 'system', actorId: 'incoming', action: 'incoming.store', studyUid, patientId: localId, outcome: 'success', detail: { instances: sent, seconds: (Date.now() - started) / 1000 } });
    log.info({ study: studyUid, localId, instances: sent }, 'incoming study stored into the local PACS under the local identity');
    return sent;
  }
}
