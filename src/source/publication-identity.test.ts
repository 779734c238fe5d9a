import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PublicationTable } from '../store/db.js';
import { imagingReportCda } from '../simulators/ris/reports.js';
import { readImagingReport } from './cda.js';
import { decidePublication } from './publication-identity.js';

const patient = { ins: '279035121518989', ipp: 'IPP101', family: 'PAT-TROIS', given: 'DOMINIQUE', birthDate: '19790328', sex: 'F' as const };
// The ANS test reports of exams C, G and I share this setId, all at version 1.
const SHARED_SET = 'D52DE737-001D-4031-B571-0A0ED7C42300';
const visible = { hiddenFromProfessionals: false, invisibleToPatient: true, invisibleToLegalRepresentatives: false };

function row(over: Partial<PublicationTable>): PublicationTable {
  return { report_unique_id: '1.2.250.1.213.4.5.4.403', study_uid: '1.2.250.1.213.4.5.2.1.103', set_id: SHARED_SET, report_version: 1, accession_number: 'ACN103', patient_id: '', status: 'published', cda_hash: 'H1', visibility: JSON.stringify(visible), report_entry_uuid: 'urn:uuid:r', kos_entry_uuid: 'urn:uuid:k', kos_unique_id: '1.2', kos_instances: 1, content_digest: '', metadata: '{}', created_at: '', updated_at: '', ...over };
}
const report = (documentId: string, studyUid: string, version = 1) => readImagingReport(imagingReportCda({ ...patient, documentId, studyUid, accessionNumber: 'ACN', setId: SHARED_SET, version }));

test('a report of another exam sharing the setId is a new publication, not "already published"', () => {
  const exam108 = report('1.2.250.1.213.4.5.4.407', '1.2.250.1.213.4.5.2.1.108');
  assert.deepEqual(decidePublication(exam108, 'H2', visible, ['1.2.250.1.213.4.5.2.1.108'], [], []), { action: 'new' });
});

test('the same document again is unchanged; with other flags it is a visibility update', () => {
  const exam103 = report('1.2.250.1.213.4.5.4.403', '1.2.250.1.213.4.5.2.1.103');
  assert.equal(decidePublication(exam103, 'H1', visible, ['1.2.250.1.213.4.5.2.1.103'], [row({})], [row({})]).action, 'unchanged');
  assert.equal(decidePublication(exam103, 'H1', { ...visible, hiddenFromProfessionals: true }, ['1.2.250.1.213.4.5.2.1.103'], [row({})], [row({})]).action, 'visibility');
});

test('a new version of the same setId for the same exam replaces; an older one is refused by versionNumber', () => {
  const v2 = report('1.2.250.1.213.4.5.4.4072', '1.2.250.1.213.4.5.2.1.103', 2);
  const d = decidePublication(v2, 'H3', visible, ['1.2.250.1.213.4.5.2.1.103'], [], [row({})]);
  assert.equal(d.action, 'replace');
  const old = decidePublication(report('1.2.250.1.213.4.5.4.9', '1.2.250.1.213.4.5.2.1.103', 1), 'H4', visible, ['1.2.250.1.213.4.5.2.1.103'], [], [row({ report_version: 2 })]);
  assert.equal(old.action, 'refused');
  assert.equal(old.action === 'refused' && old.field, 'ClinicalDocument/versionNumber');
});

test('undecidable cases are refused with the field: same id for another exam, same id with other content, a withdrawn id', () => {
  const exam103 = report('1.2.250.1.213.4.5.4.403', '1.2.250.1.213.4.5.2.1.103');
  const other = decidePublication(exam103, 'H1', visible, ['1.2.250.1.213.4.5.2.1.999'], [row({})], []);
  assert.equal(other.action === 'refused' && other.field, 'ClinicalDocument/id');
  const changed = decidePublication(exam103, 'HX', visible, ['1.2.250.1.213.4.5.2.1.103'], [row({})], [row({})]);
  assert.match(changed.action === 'refused' ? changed.reason : '', /other content/);
  const withdrawn = decidePublication(exam103, 'H1', visible, ['1.2.250.1.213.4.5.2.1.103'], [row({ status: 'withdrawn' })], []);
  assert.match(withdrawn.action === 'refused' ? withdrawn.reason : '', /withdrawn/);
});
