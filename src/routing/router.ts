import { hostname } from 'node:os';
import type { Logger } from '../common/log.js';
import type { PacsGateway } from '../source/pacs.js';
import type { RouteOutbox } from './outbox.js';
import { routesFor, type RouteRule, type StudyFacts } from './rules.js';
import type { StudyWatch } from './study-watch.js';

const PURPOSE = 'route';

const ymd = (d: Date) => d.toISOString().slice(0, 10).replace(/-/g, '');

/**
 * Automatic routing: studies of the local PACS are watched (C-FIND of recent studies and their instance counts,
 * so any PACS works without being configured to forward); once a study has been stable for `stableMs`, its
 * attributes are matched against the rules and a transfer is queued in the outbox for each destination.
 * A study that grows again later is matched again (the receiver drops what it already has).
 */
export class Router {
  private timers: NodeJS.Timeout[] = [];
  private readonly claimant = `${hostname()}:${process.pid}`;
  private busy = false;

  constructor(
    private readonly deps: {
      watch: StudyWatch;
      outbox: RouteOutbox;
      rules: RouteRule[];
      stableMs: number;
      pacs?: { gateway: PacsGateway; everyMs: number; lookbackDays: number };
      log: Logger;
    },
  ) {}

  start(tickMs = 2000): void {
    const { pacs } = this.deps;
    // everyMs 0: the PACS is read for routed studies but not watched (HL7 triggers only).
    if (pacs && pacs.everyMs > 0) {
      void this.pollPacs();
      this.timers.push(setInterval(() => void this.pollPacs(), pacs.everyMs));
    }
    this.timers.push(setInterval(() => void this.tick(), tickMs));
    this.timers.push(setInterval(() => void this.deps.watch.releaseStale(10 * 60_000).catch(() => undefined), 60_000));
    for (const t of this.timers) t.unref();
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** New or grown studies in the PACS: their count is recorded and the stability clock restarts. */
  async pollPacs(): Promise<number> {
    const pacs = this.deps.pacs;
    if (!pacs) return 0;
    const now = new Date();
    try {
      const studies = await pacs.gateway.recentStudies(ymd(new Date(now.getTime() - pacs.lookbackDays * 86400_000)), ymd(now));
      let changed = 0;
      for (const s of studies) if (s.instances > 0 && (await this.deps.watch.observed(s.studyUid, PURPOSE, 'pacs', s.instances))) changed++;
      if (changed) this.deps.log.debug({ changed }, 'new or grown studies in the PACS');
      return changed;
    } catch (e) {
      this.deps.log.warn({ err: (e as Error).message, pacs: pacs.gateway.aeTitle }, 'routing could not query the PACS for recent studies');
      return 0;
    }
  }

  /** Handles the studies that have become stable. */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (const study of await this.deps.watch.claimStable(PURPOSE, this.deps.stableMs, this.claimant)) {
        try {
          const facts = await this.factsOf(study.study_uid);
          const routes = routesFor(this.deps.rules, facts, 'stable');
          for (const r of routes) await this.deps.outbox.enqueue(study.study_uid, r.destination, r.rule);
          await this.deps.watch.settle(study, routes.length ? 'routed' : 'no-rule', { error: null });
          this.deps.log.info({ study: study.study_uid, instances: study.instances, routes }, routes.length ? 'stable study routed' : 'stable study matches no routing rule');
        } catch (e) {
          // The PACS did not answer: the study is looked at again on the next tick.
          await this.deps.watch.settle({ ...study }, 'watching', { error: (e as Error).message });
          this.deps.log.warn({ study: study.study_uid, err: (e as Error).message }, 'routing could not evaluate a stable study');
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /** Routes a study now for an HL7 order or report, with the HL7 fields the rules may test. */
  async routeForMessage(studyUid: string, hl7: { orderingPhysician: string[]; destinationFacility: string[] }): Promise<Array<{ destination: string; rule: string }>> {
    const facts = { ...(await this.factsOf(studyUid)), ...hl7 };
    const routes = routesFor(this.deps.rules, facts, 'hl7');
    for (const r of routes) await this.deps.outbox.enqueue(studyUid, r.destination, r.rule);
    return routes;
  }

  private async factsOf(studyUid: string): Promise<StudyFacts> {
    if (!this.deps.pacs) return { modalities: [], stationNames: [], institutionNames: [] };
    return this.deps.pacs.gateway.studyFacts(studyUid);
  }
}
