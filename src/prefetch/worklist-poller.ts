import type { Logger } from '../common/log.js';
import type { WorklistItem } from '../dicom/worklist.js';
import { INS_OIDS } from '../identity/ins.js';
import type { Prefetcher } from './prefetcher.js';

/** Appointments read from a worklist carry this prefix, so they never collide with SIU appointment IDs. */
export const WORKLIST_PREFIX = 'MWL-';

/**
 * For a RIS without HL7: the schedule is read by polling a Modality Worklist (C-FIND) every few minutes. Each
 * scheduled step becomes an appointment; a step that was there and is gone before its time is taken as cancelled.
 */
export class WorklistPoller {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      query: (from: Date, to: Date) => Promise<WorklistItem[]>;
      prefetcher: Prefetcher;
      daysAhead: number;
      log: Logger;
    },
  ) {}

  async poll(now = new Date()): Promise<{ steps: number; recorded: number; skipped: number; cancelled: number }> {
    const { prefetcher, log } = this.deps;
    const to = new Date(now.getTime() + this.deps.daysAhead * 86400_000);
    const items = await this.deps.query(now, to);
    const seen = new Set<string>();
    let recorded = 0;
    let skipped = 0;
    for (const item of items) {
      const id = `${WORKLIST_PREFIX}${item.stepId}`;
      const ins = item.otherIds.find((o) => o.oid && INS_OIDS.includes(o.oid));
      if (!item.stepId || !item.start || !ins) {
        skipped++;
        log.debug({ step: item.stepId, reason: !ins ? 'no INS' : 'no start' }, 'worklist item skipped');
        continue;
      }
      seen.add(id);
      try {
        await prefetcher.onAppointment({ event: 'new', appointmentId: id, patient: { ins: ins.id, oid: ins.oid!, ipp: item.patientId || undefined, name: item.patientName }, start: item.start, modality: item.modality, procedure: item.procedure ?? (item.description ? { code: '', text: item.description } : undefined) });
        recorded++;
      } catch (e) {
        skipped++;
        log.warn({ step: item.stepId, err: (e as Error).message }, 'worklist item not recorded');
      }
    }
    let cancelled = 0;
    for (const a of await prefetcher.bookedBetween(WORKLIST_PREFIX, now, to)) {
      if (seen.has(a.appointmentId)) continue;
      await prefetcher.onAppointment({ event: 'cancelled', appointmentId: a.appointmentId, patient: { ins: a.patientIns, oid: a.patientOid } });
      cancelled++;
    }
    log.info({ steps: items.length, recorded, skipped, cancelled }, 'worklist polled');
    return { steps: items.length, recorded, skipped, cancelled };
  }

  start(everyMs: number): void {
    const run = () => void this.poll().catch((e) => this.deps.log.warn({ err: (e as Error).message }, 'worklist poll failed'));
    this.timer = setInterval(run, everyMs);
    this.timer.unref();
    run();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
