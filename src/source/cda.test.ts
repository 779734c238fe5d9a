import assert from 'node:assert/strict';
import { test } from 'node:test';
import { imagingReportCda } from '../simulators/ris/reports.js';
import { CdaError, readImagingReport, tsToUtcDtm } from './cda.js';

const spec = { ins: '279035121518989', ipp: 'IPP101', family: 'PAT-TROIS', given: 'DOMINIQUE', birthDate: '19790328', sex: 'F' as const, studyUid: '1.2.3.4', accessionNumber: 'ACC1', setId: 'SET-1', version: 3, documentId: '1.2.250.1.999.7', effectiveTime: '20210108111700+0100' };

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
  assert.equal(r.studyUid, '1.2.3.4');
  assert.equal(r.accessionNumber, 'ACC1');
  assert.equal(r.exam!.scheme, '1.2.250.1.213.2.5');
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
