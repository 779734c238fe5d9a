import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildManifest, newUid } from '../source/manifest.js';
import { ManifestError, readManifest } from './manifest-reader.js';

test('a manifest built by a source box reads back: study, series, instances and where to fetch them', () => {
  const study = {
    studyUid: newUid(),
    accessionNumber: 'ACC-42',
    series: [
      { seriesUid: newUid(), modality: 'CT', instances: [1, 2, 3].map(() => ({ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: newUid() })) },
      { seriesUid: newUid(), modality: 'SR', instances: [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.88.22', sopInstanceUid: newUid() }] },
    ],
  };
  const kos = buildManifest(study, { ins: '280067512345690', insOid: '1.2.250.1.213.1.4.10', issuer: 'ASIP-SANTE-INS-NIR' }, { retrieveAeTitle: 'DRIMBOXA', retrieveLocationUid: '1.2.3.4', wadoRsBase: 'https://drimbox.chu-a.fr:8443/dicom-web/' });
  const m = readManifest(kos.part10);
  assert.equal(m.studyUid, study.studyUid);
  assert.equal(m.sopInstanceUid, kos.sopInstanceUid);
  assert.equal(m.patientId, '280067512345690');
  assert.equal(m.accessionNumber, 'ACC-42');
  assert.deepEqual(
    m.series.map((s) => ({ uid: s.seriesUid, n: s.instances.length, url: s.retrieveUrl, ae: s.retrieveAeTitle, loc: s.retrieveLocationUid })),
    study.series.map((s) => ({ uid: s.seriesUid, n: s.instances.length, url: `https://drimbox.chu-a.fr:8443/dicom-web/studies/${study.studyUid}/series/${s.seriesUid}`, ae: 'DRIMBOXA', loc: '1.2.3.4' })),
  );
  assert.deepEqual(m.series[0]!.instances.map((i) => i.sopUid), study.series[0]!.instances.map((i) => i.sopInstanceUid));
});

test('what is not a KOS manifest is refused with the reason', () => {
  assert.throws(() => readManifest(Buffer.from('not dicom at all')), (e: Error) => e instanceof ManifestError && /not a readable DICOM file/.test(e.message));
});

test('padding of odd-length values (a Retrieve URL of odd length ends with a space) is removed', () => {
  for (let extra = 0; extra < 2; extra++) {
    const studyUid = `1.2.3.${'4'.repeat(10 + extra)}`;
    const seriesUid = `1.2.5.${'6'.repeat(11 + extra)}`;
    const kos = buildManifest({ studyUid, series: [{ seriesUid, instances: [{ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: newUid() }] }] }, { ins: '280067512345690', insOid: '1.2.250.1.213.1.4.10', issuer: 'ASIP-SANTE-INS-NIR' }, { retrieveAeTitle: 'AE1', retrieveLocationUid: '1.2.3', wadoRsBase: 'https://a.fr/dicom-web' });
    const s = readManifest(kos.part10).series[0]!;
    assert.equal(s.retrieveUrl, `https://a.fr/dicom-web/studies/${studyUid}/series/${seriesUid}`);
    assert.equal(s.seriesUid, seriesUid);
    assert.equal(s.retrieveAeTitle, 'AE1');
  }
});
