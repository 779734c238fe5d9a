import { test } from 'node:test';
import assert from 'node:assert/strict';
import { examMatches, type Exam } from './dmp-exams.js';

const exam = (date: string, modality: string, region: string, description = 'Compte rendu'): Exam => ({ date, modalities: [modality], regions: [{ code: region.slice(0, 7).toUpperCase(), scheme: '1.2.250.1.213.2.5', display: region }], description });

test('filters: modality, date range (inclusive), region by code, label word or description, accents ignored', () => {
  const ct = exam('2026-11-20', 'CT', 'Scanographie du thorax');
  const mr = exam('2025-03-10', 'MR', 'IRM de l’épaule droite', 'IRM épaule');
  assert.ok(examMatches(ct, { modality: 'ct' }));
  assert.ok(!examMatches(mr, { modality: 'CT' }));
  assert.ok(examMatches(ct, { from: '2026-11-20', to: '2026-11-20' }));
  assert.ok(!examMatches(mr, { from: '2026-01-01' }));
  assert.ok(!examMatches({ ...ct, date: undefined }, { from: '2020-01-01' }), 'an undated exam is not in a date range');
  assert.ok(examMatches(ct, { region: 'thorax' }));
  assert.ok(examMatches(mr, { region: 'epaule' }), 'accents ignored');
  assert.ok(examMatches(ct, { region: 'SCANOGR' }), 'by code');
  assert.ok(!examMatches(ct, { region: 'genou' }));
  assert.ok(examMatches(mr, {}));
});
