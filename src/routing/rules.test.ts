import assert from 'node:assert/strict';
import { test } from 'node:test';
import { routesFor, ruleMatches, type RouteRule } from './rules.js';

const rule = (when: RouteRule['when'], destinations = ['hopital-b'], trigger: 'stable' | 'hl7' = 'stable'): RouteRule => ({ name: 'r', when, trigger, destinations });
const facts = { modalities: ['CT', 'SR'], stationNames: ['CT-URG'], institutionNames: ['CHU A'], referringPhysicianName: 'Müller^Hans', referringPhysicianId: '810001234567' };

test('conditions: lists of globs, case, accents and ^ ignored; all stated conditions must hold', () => {
  assert.equal(ruleMatches(rule({ referringPhysicianName: ['MULLER^*'] }), facts), true);
  assert.equal(ruleMatches(rule({ referringPhysicianName: ['muller hans'] }), facts), true);
  assert.equal(ruleMatches(rule({ referringPhysicianName: ['HOUSE^GREGORY', 'CUDDY^*'] }), facts), false);
  assert.equal(ruleMatches(rule({ modality: ['MR', 'C?'] }), facts), true);
  assert.equal(ruleMatches(rule({ modality: ['CT'], stationName: ['MR-*'] }), facts), false, 'both must hold');
  assert.equal(ruleMatches(rule({ referringPhysicianId: ['810001234567'] }), facts), true);
  assert.equal(ruleMatches(rule({ orderingPhysician: ['*'] }), facts), false, 'an HL7 condition does not hold without the HL7 fields');
  assert.equal(ruleMatches(rule({}), facts), true);
  assert.equal(ruleMatches(rule({ institutionName: ['CHU (A)'] }), { ...facts, institutionNames: ['CHU A'] }), true, 'punctuation in patterns is literal, not regex');
});

test('destinations are collected once per trigger, first rule named', () => {
  const rules = [rule({ modality: ['CT'] }, ['b', 'c']), { ...rule({}, ['b']), name: 'second' }, rule({}, ['d'], 'hl7')];
  assert.deepEqual(routesFor(rules, facts, 'stable'), [{ destination: 'b', rule: 'r' }, { destination: 'c', rule: 'r' }]);
  assert.deepEqual(routesFor(rules, facts, 'hl7'), [{ destination: 'd', rule: 'r' }]);
});
