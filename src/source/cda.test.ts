import assert from 'node:assert/strict';
import { test } from 'node:test';
import { imagingReportCda } from '../simulators/ris/reports.js';
import { CdaError, readImagingReport, tsToUtcDtm } from './cda.js';

const spec = { ins: '279035121518989', ipp: 'IPP101', family: 'PAT-TROIS', given: 'DOMINIQUE', birthDate: '19790328', sex: 'F' as const, modality: 'CT', region: { code: '51185008', display: 'Thorax' }, studyUid: '1.2.3.4', accessionNumber: 'ACC1', setId: 'SET-1', version: 3, documentId: '1.2.250.1.999.7', effectiveTime: '20210108111700+0100' };

test('reads the CI-SIS header: ids, version, patient INS and IPP, authors, study and accession', () => {
  const r = readImagingReport(imagingReportCda(spec));
  assert.equal(r.uniqueId, '1.2.250.1.999.7');
  assert.equal(r.setId, 'SET-1');
  assert.equal(r.version, 3);
  assert.equal(r.code.code, '18748-4');
  assert.deepEqual(r.patient.ins, { id: '279035121518989', oid: '1.2.250.1.213.1.4.10' });
  assert.deepEqual(r.patient.ipp, { id: 'IPP101', oid: '1.2.250.1.213.4.5.2.4' });
  assert.equal(r.patient.family, 'PAT-TROIS');
  assert.equal(r.patient.birthDate, '19790328');
  assert.equal(r.author!.rpps, '801234567890');
  assert.equal(r.legalAuthenticator!.family, 'MARTIN');
  assert.equal(r.organisation!.finess, '750803447');
  assert.equal(r.exams.length, 1);
  assert.equal(r.exams[0]!.studyUid, '1.2.3.4');
  assert.deepEqual(r.orders[0]!.accessionNumber, { id: 'ACC1', root: '1.2.250.1.925.994044785528.27' });
  assert.equal(r.orders[0]!.placerOrderNumber!.root, '1.2.250.1.213.4.5.2.6');
  assert.notEqual(r.orders[0]!.placerOrderNumber!.id, 'ACC1', 'the order number is not the accession number');
  assert.equal(r.exams[0]!.ccam!.scheme, '1.2.250.1.213.2.5');
  assert.equal(r.exams[0]!.act!.scheme, '2.16.840.1.113883.6.1');
  assert.deepEqual(r.exams[0]!.modalities.map((m) => m.code), ['CT']);
  assert.deepEqual(r.exams[0]!.regions.map((m) => [m.code, m.scheme]), [['51185008', '2.16.840.1.113883.6.96']]);
  assert.deepEqual(r.healthcareFacilityType, { code: 'SA07', scheme: '1.2.250.1.71.4.2.4', display: 'Cabinet de radiologie' });
  assert.equal(r.practiceSetting!.code, 'AMBULATOIRE');
});

test('a report of two exams: each serviceEvent with the order of the same rank', () => {
  const r = readImagingReport(imagingReportCda({ ...spec, exams: [{ studyUid: '1.2.3.1', accessionNumber: 'A1', placerOrderNumber: 'O1' }, { studyUid: '1.2.3.2', accessionNumber: 'A2', placerOrderNumber: 'O2', modality: 'MR' }] }));
  assert.deepEqual(r.exams.map((e) => e.studyUid), ['1.2.3.1', '1.2.3.2']);
  assert.deepEqual(r.orders.map((o) => [o.accessionNumber!.id, o.placerOrderNumber!.id]), [['A1', 'O1'], ['A2', 'O2']]);
  assert.deepEqual(r.exams[1]!.modalities.map((m) => m.code), ['MR']);
});

test('converts HL7 timestamps with an offset to UTC XDS times, keeping their precision', () => {
  assert.equal(tsToUtcDtm('20210108111700+0100'), '20210108101700');
  assert.equal(tsToUtcDtm('202101080030+0100'), '202101072330');
  assert.equal(tsToUtcDtm('20210108'), '20210108');
  assert.equal(tsToUtcDtm('garbage'), undefined);
});

test('refuses what is not a CDA, and XML with a DTD (XXE, entity expansion)', () => {
  assert.throws(() => readImagingReport('<html/>'), CdaError);
  assert.throws(() => readImagingReport('<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1"/></ClinicalDocument>'), /setId/);
  assert.throws(() => readImagingReport('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><ClinicalDocument>&x;</ClinicalDocument>'), /DOCTYPE/);
  assert.throws(() => readImagingReport('<ClinicalDocument>' + '<a>'.repeat(300) + '</a>'.repeat(300) + '</ClinicalDocument>'), /nesting/);
});
