import assert from 'node:assert/strict';
import { test } from 'node:test';
import { imagingReportCda } from '../simulators/ris/reports.js';
import { parseRegistryObjectList, registryObjectListXml, type DocumentEntry } from '../xds/metadata.js';
import { parseXml } from '../xds/xml.js';
import { readImagingReport } from './cda.js';
import { buildSubmission, idnst, type SubmissionContext } from './dmp-submission.js';
import { buildManifest } from './manifest.js';

/**
 * The submitted metadata compared, field by field, with the ANS model: the "Validateur XDS" sample of
 * ansforge/DRIM-M_DATA (a KOS entry and its submission set). Each expectation below states the sample's value or,
 * for what the sample marks as instance-specific (ids, times, hashes, sizes, names), the form the sample's value
 * has. Not compared: the sample's XDM-only slots (URI, a submissionTime inside a document entry), and its
 * signature document (IHE DSG, the DMP security issue).
 */

const ctx: SubmissionContext = {
  sourceOid: '1.2.250.1.999.1.1.8121',
  organisation: { finess: '750803447', name: 'BCOM' },
  healthcareFacilityTypeCode: { code: 'SA07', scheme: '1.2.250.1.71.4.2.4', display: 'Cabinet de radiologie' },
  practiceSettingCode: { code: 'ETABLISSEMENT', scheme: '1.2.250.1.213.1.1.4.9' },
  contentTypeCode: { code: '04', scheme: '1.2.250.1.213.2.2', display: 'Hospitalisation de jour' },
  device: { id: '899711256811', name: 'DRIMBox', given: 'ANS', authority: '1.2.250.1.71.4.2.1' },
};
const spec = {
  ins: '162018885045327', ipp: 'IPP6', family: 'PAT-SIX', given: 'Alain', birthDate: '19960112', sex: 'M' as const,
  documentId: '1.2.250.1.213.4.5.4.403', setId: 'D52DE737-001D-4031-B571-0A0ED7C42300', effectiveTime: '20210104160500+0100',
  radiologist: { rpps: '99700367909', family: 'DOC0036790', given: 'KIT' }, organisation: { finess: '499700367909006', name: 'BCOM' },
  facilityType: { code: 'SA25', display: 'Laboratoire de biologie médicale' },
  accessionNumber: '7252295367250016',
  exams: [{ studyUid: '1.3.6.1.4.1.5962.99.1.3711725607.829148806.1687338938407.3.116', accessionNumber: '7252295367250016', accessionRoot: '1.2.840.113619.6.196', placerOrderNumber: '12989855966', placerOrderRoot: '2.16.840.1.113883.6.96', modality: 'MR', ccam: { code: 'ZCQJ001', display: 'IRM abdomen et pelvis' }, region: { code: '63337009', display: 'Abdomen + pelvis' }, start: '20210104102200+0100', stop: '20210104170500+0100' }],
};

function submit() {
  const cda = Buffer.from(imagingReportCda(spec), 'utf8');
  const report = readImagingReport(cda);
  const study = { studyUid: spec.exams[0]!.studyUid, accessionNumber: spec.accessionNumber, series: [{ seriesUid: '1.2.3.1', modality: 'MR', instances: [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.4', sopInstanceUid: '1.2.3.1.1' }] }] };
  const manifest = buildManifest(study, { ins: spec.ins, insOid: '1.2.250.1.213.1.4.10', issuer: 'ASIP-SANTE-INS-NIR', name: 'PAT-SIX^Alain' }, { retrieveAeTitle: 'DRIMBOX', retrieveLocationUid: '1.2.3', wadoRsBase: 'https://box/dicom-web' }, { accessionNumber: report.orders[0]!.accessionNumber, placerOrderNumber: report.orders[0]!.placerOrderNumber });
  const sub = buildSubmission({ report, cda, exams: [{ exam: report.exams[0], order: report.orders[0], study, manifest }], ins: { id: spec.ins, oid: '1.2.250.1.213.1.4.10' }, visibility: { hiddenFromProfessionals: false, invisibleToPatient: false, invisibleToLegalRepresentatives: false }, withReport: true }, ctx);
  // Through the wire format and back, as the DMP reads it.
  const parsed = parseRegistryObjectList(parseXml(`<r xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">${registryObjectListXml(sub.objects)}</r>`).r.RegistryObjectList);
  return { parsed, kos: parsed.documents.find((d) => d.mimeType === 'application/dicom')!, report: parsed.documents.find((d) => d.mimeType === 'text/xml')! };
}

const code = (c: { code: string; scheme: string; display?: string }) => `${c.code}|${c.scheme}|${c.display ?? ''}`;

test('KOS document entry: every field of the ANS validator sample, with its value or its form', () => {
  const { kos } = submit();
  const model: [string, unknown, string | RegExp][] = [
    ['mimeType', kos.mimeType, 'application/dicom'],
    ['hash (upper-case SHA-1)', kos.hash, /^[0-9A-F]{40}$/],
    ['size', String(kos.size), /^\d+$/],
    ['creationTime', kos.creationTime, /^\d{14}$/],
    ['languageCode', kos.languageCode, 'fr-FR'],
    ['legalAuthenticator', kos.legalAuthenticator, '899700367909^DOC0036790^KIT^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS'],
    ['serviceStartTime', kos.serviceStartTime, '20210104092200'],
    ['serviceStopTime', kos.serviceStopTime, '20210104160500'],
    ['sourcePatientId', kos.sourcePatientId, '162018885045327^^^&1.2.250.1.213.1.4.10&ISO^PI'],
    ['sourcePatientInfo', kos.sourcePatientInfo!.join(' '), 'PID-5|PAT-SIX^Alain^^^^^L PID-7|19960112 PID-8|M'],
    ['title', kos.title, "Reference d'Objets d'un Examen d'Imagerie"],
    ['comments', kos.comments, 'KOS'],
    ['authorPerson', kos.authors[0]!.person, '899711256811^DRIMBox^ANS^^^^^^&1.2.250.1.71.4.2.1&ISO^U^^^EI'],
    ['authorInstitution', kos.authors[0]!.institutions!.join(), 'BCOM^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^499700367909006'],
    ['classCode', code(kos.classCode), '31|1.2.250.1.213.1.1.4.1|Imagerie médicale'],
    ['typeCode', code(kos.typeCode), "IMG-KOS|1.2.250.1.213.1.1.4.12|Reference d'objets d'un examen d'imagerie"],
    ['confidentialityCode', kos.confidentialityCodes.map(code).join(), 'N|2.16.840.1.113883.5.25|Normal'],
    ['formatCode', code(kos.formatCode), "1.2.840.10008.5.1.4.1.1.88.59|1.2.840.10008.2.6.1|Document de Références d'objets d'imagerie selon profil IHE RAD XDS-I"],
    ['healthcareFacilityTypeCode', code(kos.healthcareFacilityTypeCode), 'SA25|1.2.250.1.71.4.2.4|Laboratoire de biologie médicale'],
    ['practiceSettingCode', code(kos.practiceSettingCode), 'AMBULATOIRE|1.2.250.1.213.1.1.4.9|Ambulatoire'],
    ['eventCode: modality', kos.eventCodes.filter((c) => c.scheme === '1.2.250.1.213.1.1.5.618').map(code).join(), 'MR|1.2.250.1.213.1.1.5.618|Magnetic Resonance'],
    ['eventCode: CCAM act', kos.eventCodes.filter((c) => c.scheme === '1.2.250.1.213.2.5').map((c) => c.code).join(), 'ZCQJ001'],
    ['referenceIdList: accession', kos.referenceIdList![0], '7252295367250016^^^&1.2.840.113619.6.196&ISO^urn:ihe:iti:xds:2013:accession'],
    ['referenceIdList: study', kos.referenceIdList![1], /^1\.3\.6\.1\.4\.1\.5962\.99\.1\.3711725607\.829148806\.1687338938407\.3\.116\^\^\^&[0-9.]+&ISO\^urn:ihe:iti:xds:2016:studyInstanceUID$/],
    ['referenceIdList: order', kos.referenceIdList![2], '12989855966^^^&2.16.840.1.113883.6.96&ISO^urn:ihe:iti:xds:2013:order'],
    ['patientId', kos.patientId, '162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH'],
    ['uniqueId (the KOS SOP Instance UID)', kos.uniqueId, /^[0-9.]+$/],
  ];
  const differences = model.filter(([, actual, expected]) => (expected instanceof RegExp ? !expected.test(String(actual)) : actual !== expected)).map(([f, actual, expected]) => `${f}: ${String(actual)} ≠ ${String(expected)}`);
  assert.deepEqual(differences, []);
  // The region is published with the code system the CDA gives it (SNOMED CT): the sample files its SNOMED code
  // under the CCAM OID, which no validator of the code system would accept.
  assert.ok(kos.eventCodes.some((c) => c.code === '63337009' && c.scheme === '2.16.840.1.113883.6.96'));
});

test('submission set: the ANS model\'s contentTypeCode scheme, the device as author, the INS in NH form', () => {
  const { parsed, kos } = submit();
  const ss = parsed.submissionSets[0]!;
  assert.equal(code(ss.contentTypeCode), '04|1.2.250.1.213.2.2|Hospitalisation de jour');
  assert.deepEqual(ss.authors[0], kos.authors[0]);
  assert.equal(ss.patientId, '162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH');
  assert.equal(ss.sourceId, '1.2.250.1.999.1.1.8121');
  assert.match(ss.uniqueId, /^1\.2\.250\.1\.999\.1\.1\.8121\.[0-9.]+$/);
  assert.match(ss.submissionTime, /^\d{14}$/);
  for (const a of parsed.associations.filter((x) => x.type.endsWith('HasMember'))) assert.deepEqual(a.slots, { SubmissionSetStatus: ['Original'] });
});

test('report entry: the CDA\'s author, ids and codes; the same patient and references as its manifest', () => {
  const { report, kos } = submit();
  const r: DocumentEntry = report;
  assert.equal(r.uniqueId, '1.2.250.1.213.4.5.4.403', 'uniqueId = ClinicalDocument/id');
  assert.equal(code(r.classCode), '10|1.2.250.1.213.1.1.4.1|Compte rendu');
  assert.equal(`${r.typeCode.code}|${r.typeCode.scheme}`, '18748-4|2.16.840.1.113883.6.1');
  assert.equal(`${r.formatCode.code}|${r.formatCode.scheme}`, 'urn:ihe:iti:xds-sd:pdf:2008|1.3.6.1.4.1.19376.1.2.3');
  assert.equal(r.authors[0]!.person, '899700367909^DOC0036790^KIT^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS');
  assert.deepEqual(r.authors[0]!.specialties, ['G15_10/SM44^Médecin - Radio-diagnostic (SM)^1.2.250.1.213.1.1.4.5']);
  assert.equal(r.creationTime, '20210104150500');
  assert.deepEqual(r.referenceIdList, kos.referenceIdList);
  assert.equal(r.patientId, kos.patientId);
  assert.equal(r.sourcePatientId, kos.sourcePatientId);
});

test('IDNST: a 9-character FINESS gets its "1" prefix, an already typed identifier is kept', () => {
  assert.equal(idnst('750803447'), '1750803447');
  assert.equal(idnst('2A0000123'), '12A0000123');
  assert.equal(idnst('1750803447'), '1750803447');
  assert.equal(idnst('499700367909006'), '499700367909006');
  assert.equal(idnst('30000000000000'), '30000000000000');
});
