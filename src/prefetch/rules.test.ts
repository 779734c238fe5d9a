import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dueAt, ruleFor, selectPriors, withinHours, type PrefetchRule } from './rules.js';
import type { Exam } from '../consumer/dmp-exams.js';

const rule = (r: Partial<PrefetchRule> & { name: string }): PrefetchRule => ({ match: {}, priors: { modalities: ['same'], regions: [], lookbackDays: 1825, maxStudies: 3, sources: ['dmp'] }, ...r });
const exam = (date: string, modality: string, region: string, uid: string): Exam => ({ studyUid: uid, date, modalities: [modality], regions: [{ code: 'X', scheme: 's', display: region }], manifest: { entryUUID: uid, uniqueId: uid, repositoryUniqueId: 'r' } });

test('the first matching rule wins; procedure codes match by glob', () => {
  const rules = [rule({ name: 'thorax CT', match: { modality: 'CT', procedure: 'ZBQK*' } }), rule({ name: 'any MR', match: { modality: 'MR' } }), rule({ name: 'fallback' })];
  const start = new Date('2026-12-01T08:30:00Z');
  assert.equal(ruleFor(rules, { modality: 'ct', procedureCode: 'ZBQK002', start })?.name, 'thorax CT');
  assert.equal(ruleFor(rules, { modality: 'CT', procedureCode: 'NZQK001', start })?.name, 'fallback');
  assert.equal(ruleFor(rules, { modality: 'MR', start })?.name, 'any MR');
  assert.equal(ruleFor([rules[0]!], { modality: 'US', start }), undefined);
  assert.equal(dueAt(rule({ name: 'r', leadHours: 24 }), start, 12).toISOString(), '2026-11-30T08:30:00.000Z');
  assert.equal(dueAt(rule({ name: 'r' }), start, 12).toISOString(), '2026-11-30T20:30:00.000Z');
});

test('allowed hours, including windows over midnight', () => {
  const at = (h: number, m = 0) => new Date(2026, 10, 30, h, m);
  assert.ok(withinHours(undefined, at(12)));
  assert.ok(withinHours('19:00-07:00', at(23)));
  assert.ok(withinHours('19:00-07:00', at(6, 59)));
  assert.ok(!withinHours('19:00-07:00', at(7)));
  assert.ok(!withinHours('19:00-07:00', at(12)));
  assert.ok(withinHours('08:00-18:00', at(12)));
  assert.ok(!withinHours('08:00-18:00', at(18)));
});

test('priors: same modality, region words, look-back, most recent first, at most maxStudies, never after the appointment', () => {
  const start = new Date('2026-12-01T08:30:00Z');
  const exams = [
    exam('2026-11-20', 'CT', 'Scanographie du thorax', 'a'),
    exam('2025-03-10', 'CT', 'Scanographie du thorax', 'b'),
    exam('2019-01-01', 'CT', 'Scanographie du thorax', 'too-old'),
    exam('2026-10-01', 'MR', 'IRM du genou', 'other-modality'),
    exam('2026-09-01', 'CT', 'Scanographie abdominale', 'other-region'),
    exam('2026-12-02', 'CT', 'Scanographie du thorax', 'after'),
    { ...exam('2026-11-01', 'CT', 'Scanographie du thorax', 'no-kos'), manifest: undefined },
  ];
  const r = rule({ name: 'r', priors: { modalities: ['same'], regions: ['thorax'], lookbackDays: 1825, maxStudies: 5, sources: ['dmp'] } });
  assert.deepEqual(selectPriors(r, { modality: 'CT', start }, exams).map((e) => e.studyUid), ['a', 'b']);
  assert.deepEqual(selectPriors({ ...r, priors: { ...r.priors, maxStudies: 1 } }, { modality: 'CT', start }, exams).map((e) => e.studyUid), ['a']);
  assert.deepEqual(selectPriors({ ...r, priors: { ...r.priors, modalities: [], regions: [] } }, { modality: 'CT', start }, exams).map((e) => e.studyUid), ['a', 'other-modality', 'other-region', 'b']);
});
