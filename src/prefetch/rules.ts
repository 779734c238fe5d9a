import type { Config } from '../config/config.js';
import { examMatches, type Exam } from '../consumer/dmp-exams.js';

export type PrefetchRule = NonNullable<Config['prefetch']>['rules'][number];

/** What prefetch knows of an appointment when choosing a rule and the priors. */
export interface ScheduledProcedure {
  modality?: string;
  procedureCode?: string;
  start: Date;
}

const glob = (pattern: string) => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'i');

/** The first rule whose match accepts the procedure (rules are read top to bottom, as a PACS administrator expects). */
export function ruleFor(rules: PrefetchRule[], p: ScheduledProcedure): PrefetchRule | undefined {
  return rules.find((r) => (!r.match.modality || r.match.modality.toUpperCase() === (p.modality ?? '').toUpperCase()) && (!r.match.procedure || glob(r.match.procedure).test(p.procedureCode ?? '')));
}

/** When the transfers for an appointment may start: the lead time before it. */
export function dueAt(rule: PrefetchRule, start: Date, defaultLeadHours: number): Date {
  return new Date(start.getTime() - (rule.leadHours ?? defaultLeadHours) * 3600_000);
}

/** Whether a local time falls in "HH:MM-HH:MM" (which may cross midnight). */
export function withinHours(window: string | undefined, at: Date): boolean {
  if (!window) return true;
  const [from, to] = window.split('-').map((t) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3, 5))) as [number, number];
  const m = at.getHours() * 60 + at.getMinutes();
  return from <= to ? m >= from && m < to : m >= from || m < to;
}

/** The relevant priors among the patient's exams: kind, region, look-back, most recent first, at most maxStudies. */
export function selectPriors(rule: PrefetchRule, p: ScheduledProcedure, exams: Exam[]): Exam[] {
  const since = new Date(p.start.getTime() - rule.priors.lookbackDays * 86400_000).toISOString().slice(0, 10);
  const before = p.start.toISOString().slice(0, 10);
  const modalities = rule.priors.modalities.flatMap((m) => (m === 'same' ? (p.modality ? [p.modality] : []) : [m.toUpperCase()]));
  return exams
    .filter((e) => (e.manifest || e.foundIn) && e.studyUid)
    .filter((e) => examMatches(e, { from: since, to: before }))
    .filter((e) => !modalities.length || e.modalities.some((m) => modalities.includes(m)))
    .filter((e) => !rule.priors.regions.length || rule.priors.regions.some((region) => examMatches(e, { region })))
    .sort((a, b) => (b.date ?? '').localeCompare(a.date ?? ''))
    .slice(0, rule.priors.maxStudies);
}
