import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../common/log.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import type { IncomingOutcome, IncomingStudies } from '../routing/incoming-studies.js';
import { IngestError, type Ingestor } from '../store/ingest.js';
import { readMedia, type MediaContent } from './media-reader.js';
import { extractZip, type ZipLimits } from './safe-zip.js';

export interface MediaReport {
  kind: MediaContent['kind'];
  instances: number;
  problems: Array<{ file: string; reason: string }>;
  studies: Array<{ studyUid: string; instances: number; outcome: IncomingOutcome | { state: 'failed'; error: string } }>;
  documents?: MediaContent['documents'];
}

/**
 * Imports a patient's media (CD/DVD/USB content as a folder, or a zip/XDM archive): every DICOM file is stored
 * here, then each exam goes through identity reconciliation into the local PACS (or waits in the queue).
 * Corrupt and non-DICOM files are reported; the rest is imported.
 */
export class MediaImport {
  constructor(
    private readonly deps: { ingestor: Ingestor; incoming: IncomingStudies; workDir: string; limits: ZipLimits; audit: AuditTrail; log: Logger },
  ) {}

  /** A zip archive (uploaded, or built by the CLI from a folder), extracted safely then imported. */
  async importZip(zipFile: string, label: string, by: string, onProgress?: (p: { stage: string; done: number; total: number }) => void): Promise<MediaReport> {
    const dir = await mkdtemp(path.join(this.deps.workDir, 'media-'));
    try {
      onProgress?.({ stage: 'extract', done: 0, total: 0 });
      await extractZip(zipFile, dir, this.deps.limits);
      return await this.importFolder(dir, label, by, onProgress);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async importFolder(dir: string, label: string, by: string, onProgress?: (p: { stage: string; done: number; total: number }) => void): Promise<MediaReport> {
    const { ingestor, incoming, audit, log } = this.deps;
    const content = await readMedia(dir);
    const problems = [...content.problems];
    const perStudy = new Map<string, number>();
    let done = 0;
    for (const file of content.files) {
      const w = ingestor.begin();
      try {
        await pipeline(createReadStream(file), w);
        const r = await ingestor.commit(w, { sourceAe: undefined });
        perStudy.set(r.studyUid, (perStudy.get(r.studyUid) ?? 0) + 1);
      } catch (e) {
        await w.discard().catch(() => undefined);
        problems.push({ file: path.relative(dir, file), reason: e instanceof IngestError ? e.message : `unreadable: ${(e as Error).message}` });
      }
      onProgress?.({ stage: 'store', done: ++done, total: content.files.length });
    }
    const studies: MediaReport['studies'] = [];
    for (const [studyUid, instances] of perStudy) {
      try {
        studies.push({ studyUid, instances, outcome: await incoming.processNow(studyUid, `media:${label}`) });
      } catch (e) {
        studies.push({ studyUid, instances, outcome: { state: 'failed', error: (e as Error).message } });
      }
    }
    const report: MediaReport = { kind: content.kind, instances: [...perStudy.values()].reduce((a, b) => a + b, 0), problems, studies, documents: content.documents };
    await audit.record({ actorType: 'practitioner', actorId: by, action: 'media.import', outcome: studies.every((s) => s.outcome.state !== 'failed') ? 'success' : 'failure', detail: { label, kind: content.kind, instances: report.instances, problems: problems.length, studies: studies.map((s) => ({ study: s.studyUid, state: s.outcome.state })) } });
    log.info({ label, kind: content.kind, instances: report.instances, problems: problems.length, studies: studies.length }, 'media imported');
    return report;
  }
}
