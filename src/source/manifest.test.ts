import assert from 'node:assert/strict';
import { test } from 'node:test';
import dcmjs from 'dcmjs';
import { buildManifest, personName, type StudyContent } from './manifest.js';

const study: StudyContent = { studyUid: '1.2.3.4', accessionNumber: 'ACN1', studyDate: '20240101', studyTime: '101010', studyDescription: 'CT', studyId: '7', series: [{ seriesUid: '1.2.3.4.1', modality: 'CT', instances: [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: '1.2.3.4.1.1' }] }] };
const source = { retrieveAeTitle: 'DRIMBOX', retrieveLocationUid: '1.2.3', wadoRsBase: 'https://box/dicom-web', institutionName: 'Centre' };
const read = (part10: Buffer) => dcmjs.data.DicomMetaDictionary.naturalizeDataset(dcmjs.data.DicomMessage.readFile(part10.buffer.slice(part10.byteOffset, part10.byteOffset + part10.length) as ArrayBuffer).dict) as any;

test('the KOS names the order as the ANS KOS samples do: accession with its issuer, placer order with its issuer', () => {
  const m = buildManifest(study, { ins: '279035121518989', insOid: '1.2.250.1.213.1.4.10', issuer: 'ASIP-SANTE-INS-NIR', name: 'PAT^DOM' }, source, { accessionNumber: { id: 'ACN103', root: '1.2.250.1.925.27' }, placerOrderNumber: { id: 'OPN103', root: '1.2.250.1.213.4.5.2.6' }, procedureDescription: 'CT Head' }, new Date('2024-06-01T10:00:00Z'));
  const ds = read(m.part10);
  assert.equal(ds.AccessionNumber, 'ACN103', 'the CDA accession number wins over the PACS one');
  assert.equal([ds.IssuerOfAccessionNumberSequence].flat()[0].UniversalEntityID, '1.2.250.1.925.27');
  assert.match(ds.TimezoneOffsetFromUTC, /^[+-]\d{4}$/);
  assert.match(ds.InstanceCreationDate, /^\d{8}$/);
  const r = [ds.ReferencedRequestSequence].flat()[0];
  assert.equal(r.StudyInstanceUID, '1.2.3.4');
  assert.equal(r.AccessionNumber, 'ACN103');
  assert.equal([r.IssuerOfAccessionNumberSequence].flat()[0].UniversalEntityIDType, 'ISO');
  assert.equal(r.PlacerOrderNumberImagingServiceRequest, 'OPN103');
  assert.equal([r.OrderPlacerIdentifierSequence].flat()[0].UniversalEntityID, '1.2.250.1.213.4.5.2.6');
  assert.equal(r.RequestedProcedureDescription, 'CT Head');
  assert.ok('ReferencedStudySequence' in r && 'RequestedProcedureCodeSequence' in r, 'type 2 sequences present (empty)');
  assert.equal(ds.PatientID, '279035121518989');
  assert.equal([ds.IssuerOfPatientIDQualifiersSequence].flat()[0].UniversalEntityID, '1.2.250.1.213.1.4.10');
  assert.equal([ds.OtherPatientIDsSequence].flat()[0].PatientID, '279035121518989');
});

test('patient name cases of the ANS cross-validator: both names, family only, given only, none', () => {
  assert.equal(personName('PAT-TROIS', 'DOMINIQUE'), 'PAT-TROIS^DOMINIQUE');
  assert.equal(personName('PAT-TROIS', undefined), 'PAT-TROIS');
  assert.equal(personName(undefined, 'DOMINIQUE'), '^DOMINIQUE');
  assert.equal(personName(undefined, undefined), undefined);
  for (const name of ['PAT-TROIS^DOMINIQUE', 'PAT-TROIS', '^DOMINIQUE', undefined]) {
    const ds = read(buildManifest(study, { ins: '279035121518989', insOid: '1.2.250.1.213.1.4.10', issuer: 'ASIP-SANTE-INS-NIR', name }, source).part10);
    const alphabetic = [ds.PatientName].flat()[0]?.Alphabetic ?? [ds.PatientName].flat()[0] ?? '';
    assert.equal(alphabetic || undefined, name, `PatientName for ${name ?? 'no name'}`);
    assert.ok('PatientName' in ds, 'Patient\'s Name is type 2: present even when empty');
  }
});
