import type { Config } from '../config/config.js';
import { normaliseName } from '../identity/demographics.js';

export type RouteRule = NonNullable<Config['routing']>['rules'][number];

/** What a rule can look at: a study's DICOM attributes, and for HL7-triggered rules the order or report. */
export interface StudyFacts {
  modalities: string[];
  stationNames: string[];
  institutionNames: string[];
  referringPhysicianName?: string;
  referringPhysicianId?: string;
  orderingPhysician?: string[];
  destinationFacility?: string[];
}

/** Glob (* and ?) over values compared without case, accents or punctuation differences (Dr Müller = DR MULLER). */
function globMatch(pattern: string, value: string): boolean {
  const literal = (piece: string) => normaliseName(piece.replace(/\^/g, ' ')).replace(/[.+^${}()|[\]\\]/g, '\\$&');
  const source = pattern
    .split(/([*?])/)
    .map((piece) => (piece === '*' ? '.*' : piece === '?' ? '.' : literal(piece)))
    .join('')
    .replace(/ ?\.\* ?/g, ' ?.*');
  return new RegExp(`^${source}$`).test(normaliseName(value.replace(/\^/g, ' ')));
}

const anyMatches = (patterns: string[] | undefined, values: Array<string | undefined>): boolean =>
  patterns === undefined || values.some((v) => v !== undefined && v !== '' && patterns.some((p) => globMatch(p, v)));

/** True when every condition the rule states holds for the study (a rule with no condition takes everything). */
export function ruleMatches(rule: RouteRule, facts: StudyFacts): boolean {
  const w = rule.when;
  return (
    anyMatches(w.modality, facts.modalities) &&
    anyMatches(w.stationName, facts.stationNames) &&
    anyMatches(w.institutionName, facts.institutionNames) &&
    anyMatches(w.referringPhysicianName, [facts.referringPhysicianName]) &&
    anyMatches(w.referringPhysicianId, [facts.referringPhysicianId]) &&
    anyMatches(w.orderingPhysician, facts.orderingPhysician ?? []) &&
    anyMatches(w.destinationFacility, facts.destinationFacility ?? [])
  );
}

/** The destinations a study goes to under the rules of a trigger, each with the first rule that sends it there. */
export function routesFor(rules: RouteRule[], facts: StudyFacts, trigger: 'stable' | 'hl7'): Array<{ destination: string; rule: string }> {
  const out = new Map<string, string>();
  for (const r of rules) if (r.trigger === trigger && ruleMatches(r, facts)) for (const d of r.destinations) if (!out.has(d)) out.set(d, r.name);
  return [...out].map(([destination, rule]) => ({ destination, rule }));
}
