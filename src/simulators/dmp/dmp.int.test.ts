import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../common/log.js';
import { XdsClient } from '../../xds/client.js';
import { cx, xdsTime, type DocumentEntry, type RegistryObjects, type SubmissionSet } from '../../xds/metadata.js';
import { XdsError } from '../../xds/transactions.js';
import { AssociationType, FrOid, Status } from '../../xds/vocabulary.js';
import { testDatabases } from '../../../test/harness/databases.js';
import { DmpServer } from './server.js';
import { imagingReportCda } from '../ris/reports.js';

const INS = '279035121518989';
const PATIENT = cx(INS, FrOid.insNirTest);

function entry(over: Partial<DocumentEntry> = {}): DocumentEntry {
  return {
    entryUUID: `urn:uuid:${randomUUID()}`,
    uniqueId: `1.2.250.1.999.${Date.now()}.${Math.floor(Math.random() * 1e9)}`,
    patientId: PATIENT,
    mimeType: 'text/xml',
    title: "CR d'imagerie médicale",
    classCode: { code: '10', scheme: FrOid.classCodes, display: 'Compte rendu' },
    typeCode: { code: '18748-4', scheme: FrOid.loinc, display: "CR d'imagerie médicale" },
    formatCode: { code: 'urn:ihe:iti:xds-sd:pdf:2008', scheme: FrOid.ihePdfFormat },
    healthcareFacilityTypeCode: { code: 'SA07', scheme: '1.2.250.1.71.4.2.4', display: 'Cabinet de radiologie' },
    practiceSettingCode: { code: 'ETABLISSEMENT', scheme: '1.2.250.1.213.1.1.4.9' },
    confidentialityCodes: [{ code: 'N', scheme: FrOid.confidentiality, display: 'Normal' }],
    eventCodes: [{ code: 'CT', scheme: '1.2.250.1.213.1.1.5.618', display: 'CT' }],
    languageCode: 'fr-FR',
    creationTime: '20240108111700',
    serviceStartTime: '20240108100000',
    authors: [{ person: '801234560801^BIDEAULT^Jacques^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS', institutions: ['Centre Ambroise^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1750803447'] }],
    ...over,
  };
}

/** A CI-SIS report whose ClinicalDocument/id is the entry's uniqueId, as the DMP requires of a text/xml entry. */
const cdaFor = (d: DocumentEntry, text = 'Pas d anomalie') => Buffer.from(imagingReportCda({ ins: INS, ipp: 'IPP1', family: 'PAT-TROIS', given: 'DOMINIQUE', birthDate: '19790328', sex: 'F', accessionNumber: 'A1', documentId: d.uniqueId, setId: 'SET-1', effectiveTime: '20240108111700+0100', text }), 'utf8');

function submission(docs: DocumentEntry[], extraAssocs: RegistryObjects['associations'] = []): RegistryObjects {
  const ss: SubmissionSet = {
    entryUUID: 'SubmissionSet01',
    uniqueId: `1.2.250.1.999.2.${Date.now()}.${Math.floor(Math.random() * 1e9)}`,
    sourceId: '1.2.250.1.999.2',
    patientId: PATIENT,
    submissionTime: xdsTime(),
    contentTypeCode: { code: '18748-4', scheme: FrOid.loinc },
    authors: docs[0]?.authors ?? [],
  };
  return {
    submissionSets: [ss],
    documents: docs,
    associations: [...docs.map((d, i) => ({ id: `assoc${i}`, type: AssociationType.hasMember, sourceObject: ss.entryUUID, targetObject: d.entryUUID, slots: { SubmissionSetStatus: ['Original'] } })), ...extraAssocs],
  };
}

for (const dbCase of await testDatabases()) {
  describe(`DMP stand-in (XDS.b registry + repository) on ${dbCase.name}`, () => {
    let dmp: DmpServer;
    let xds: XdsClient;
    let dataDir: string;
    let dropDb: () => Promise<void>;

    before(async () => {
      dataDir = mkdtempSync(path.join(tmpdir(), 'opendrim-dmp-'));
      dropDb = dbCase.drop;
      dmp = await new DmpServer({ host: '127.0.0.1', port: 0, dataDir, databaseUrl: dbCase.url, log: createLogger('silent'), closedPatients: ['180012345678965'] }).start();
      xds = new XdsClient({ registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` });
    });
    after(async () => {
      await dmp.close();
      await dropDb();
      rmSync(dataDir, { recursive: true, force: true });
    });

    test('ITI-41 then ITI-18 and ITI-43: a report and a KOS come back with their metadata and bytes', async () => {
      const kos = Buffer.from('DICM-KOS-bytes');
      const report = entry();
      const cda = cdaFor(report);
      const manifest = entry({ mimeType: 'application/dicom', typeCode: { code: 'IMG-KOS', scheme: FrOid.typeCodesImg }, classCode: { code: '31', scheme: FrOid.classCodes }, formatCode: { code: '1.2.840.10008.5.1.4.1.1.88.59', scheme: FrOid.dicomUid } });
      await xds.provideAndRegister({ objects: submission([report, manifest]), documents: new Map([[report.entryUUID, cda], [manifest.entryUUID, kos]]) });

      const found = await xds.findDocuments({ patientId: PATIENT });
      const byUid = new Map(found.objects.documents.map((d) => [d.uniqueId, d]));
      const r = byUid.get(report.uniqueId)!;
      assert.ok(r, 'report registered');
      assert.equal(r.hash, createHash('sha1').update(cda).digest('hex'));
      assert.equal(r.size, cda.length);
      assert.equal(r.availabilityStatus, Status.approved);
      assert.equal(r.repositoryUniqueId, dmp.registry.repositoryUniqueId);
      assert.deepEqual(r.typeCode, report.typeCode);
      assert.deepEqual(r.eventCodes, report.eventCodes);
      assert.equal(r.authors[0]!.person, report.authors[0]!.person);
      assert.equal(r.title, "CR d'imagerie médicale");

      const onlyKos = await xds.findDocuments({ patientId: PATIENT, formatCodes: [{ code: '1.2.840.10008.5.1.4.1.1.88.59', scheme: FrOid.dicomUid }] });
      assert.deepEqual(onlyKos.objects.documents.map((d) => d.uniqueId), [manifest.uniqueId]);
      assert.equal((await xds.findDocuments({ patientId: PATIENT, classCodes: [{ code: '99', scheme: FrOid.classCodes }] })).objects.documents.length, 0);
      assert.equal((await xds.findDocuments({ patientId: PATIENT, creationTimeFrom: '20240109' })).objects.documents.length, 0);
      assert.equal((await xds.findDocuments({ patientId: PATIENT, creationTimeFrom: '20240108', creationTimeTo: '20240109' })).objects.documents.length, 2);
      assert.equal((await xds.findDocuments({ patientId: PATIENT, serviceStartTimeTo: '2024' })).objects.documents.length, 0);

      const refs = await xds.findDocuments({ patientId: PATIENT }, 'ObjectRef');
      assert.equal(refs.objectRefs.length, 2);
      const got = await xds.getDocuments([r.entryUUID]);
      assert.equal(got.objects.documents[0]!.uniqueId, report.uniqueId);
      const ssc = await xds.getSubmissionSetAndContents(got.objects.documents[0]!.entryUUID);
      assert.equal(ssc.objects.submissionSets.length, 0, 'a document UUID is not a submission set');

      const docs = await xds.retrieve([{ repositoryUniqueId: r.repositoryUniqueId!, documentUniqueId: report.uniqueId }, { repositoryUniqueId: r.repositoryUniqueId!, documentUniqueId: manifest.uniqueId }]);
      assert.deepEqual(docs.map((d) => [d.mimeType, d.content.toString()]), [['text/xml', cda.toString()], ['application/dicom', kos.toString()]]);
    });

    test('RPLC replaces (the old version is Deprecated, the new one continues its lid) and ITI-57 deprecates', async () => {
      const v1 = entry();
      await xds.provideAndRegister({ objects: submission([v1]), documents: new Map([[v1.entryUUID, cdaFor(v1)]]) });
      const v2 = entry();
      await xds.provideAndRegister({ objects: submission([v2], [{ id: 'rplc', type: AssociationType.replace, sourceObject: v2.entryUUID, targetObject: v1.entryUUID }]), documents: new Map([[v2.entryUUID, cdaFor(v2)]]) });
      const both = await xds.getDocuments([v1.entryUUID, v2.entryUUID]);
      const s = new Map(both.objects.documents.map((d) => [d.uniqueId, d]));
      assert.equal(s.get(v1.uniqueId)!.availabilityStatus, Status.deprecated);
      assert.equal(s.get(v2.uniqueId)!.availabilityStatus, Status.approved);
      assert.equal(s.get(v2.uniqueId)!.lid, s.get(v1.uniqueId)!.lid);
      assert.equal(s.get(v2.uniqueId)!.version, '2');
      const approved = await xds.findDocuments({ patientId: PATIENT });
      assert.ok(!approved.objects.documents.some((d) => d.uniqueId === v1.uniqueId), 'deprecated version no longer found as Approved');

      // Replacing an already deprecated document is refused.
      const v3 = entry();
      await assert.rejects(
        xds.provideAndRegister({ objects: submission([v3], [{ id: 'rplc', type: AssociationType.replace, sourceObject: v3.entryUUID, targetObject: v1.entryUUID }]), documents: new Map([[v3.entryUUID, cdaFor(v3)]]) }),
        (e: unknown) => e instanceof XdsError && e.errors[0]!.code === 'XDSRegistryMetadataError' && /not Approved/.test(e.message),
      );

      const ss = submission([]).submissionSets[0]!;
      await xds.updateStatus({ ...ss, entryUUID: `urn:uuid:${randomUUID()}` }, [{ entryUUID: v2.entryUUID, from: Status.approved, to: Status.deprecated }]);
      assert.equal((await xds.getDocuments([v2.entryUUID])).objects.documents[0]!.availabilityStatus, Status.deprecated);
      const deprecated = await xds.findDocuments({ patientId: PATIENT, status: [Status.deprecated] });
      assert.ok(deprecated.objects.documents.some((d) => d.uniqueId === v2.uniqueId));
      // A second change from Approved fails: the document is no longer Approved.
      await assert.rejects(xds.updateStatus({ ...ss, entryUUID: `urn:uuid:${randomUUID()}`, uniqueId: ss.uniqueId + '.1' }, [{ entryUUID: v2.entryUUID, from: Status.approved, to: Status.deprecated }]), /XDSMetadataUpdateError/);
    });

    test('ITI-57 metadata update: a new version of the entry under the same uniqueId, the previous one Deprecated', async () => {
      const d = entry();
      await xds.provideAndRegister({ objects: submission([d]), documents: new Map([[d.entryUUID, cdaFor(d)]]) });
      const [stored] = (await xds.getDocuments([d.entryUUID])).objects.documents;
      const ss = (n: string) => ({ ...submission([]).submissionSets[0]!, entryUUID: `urn:uuid:${randomUUID()}`, uniqueId: `1.2.250.1.999.3.${n}.${Date.now()}` });
      const masked = { ...stored!, entryUUID: `urn:uuid:${randomUUID()}`, availabilityStatus: undefined, version: undefined, confidentialityCodes: [...stored!.confidentialityCodes, { code: 'MASQUE_PS', scheme: '1.2.250.1.213.1.1.4.13', display: 'Masqué aux professionnels de santé' }] };
      await assert.rejects(xds.updateMetadata(ss('a'), [{ entry: masked, previousVersion: '7' }]), /XDSMetadataVersionError/);
      await assert.rejects(xds.updateMetadata(ss('b'), [{ entry: { ...masked, hash: 'AB'.repeat(20) }, previousVersion: '1' }]), /cannot change/);
      await xds.updateMetadata(ss('c'), [{ entry: masked, previousVersion: '1' }]);
      const versions = (await xds.storedQuery('urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4', { $XDSDocumentEntryUniqueId: [`('${d.uniqueId}')`] })).objects.documents;
      assert.deepEqual(versions.map((v) => [v.version, v.availabilityStatus]).sort(), [['1', Status.deprecated], ['2', Status.approved]]);
      assert.ok(versions.find((v) => v.version === '2')!.confidentialityCodes.some((c) => c.code === 'MASQUE_PS'));
      assert.equal(versions[0]!.lid, versions[1]!.lid);
      const [doc] = await xds.retrieve([{ repositoryUniqueId: stored!.repositoryUniqueId!, documentUniqueId: d.uniqueId }]);
      assert.equal(doc!.content.toString(), cdaFor(d).toString(), 'the content is unchanged');
    });

    test('a text/xml entry must carry a CDA whose id is its uniqueId and whose patient is its patient', async () => {
      const d = entry();
      await assert.rejects(xds.provideAndRegister({ objects: submission([d]), documents: new Map([[d.entryUUID, cdaFor(entry())]]) }), /uniqueId must be ClinicalDocument\/id/);
      await assert.rejects(xds.provideAndRegister({ objects: submission([d]), documents: new Map([[d.entryUUID, Buffer.from('<report/>')]]) }), /not a readable CDA/);
    });

    test('refusals come back as RegistryErrorList with the XDS error code', async () => {
      const expectError = async (p: Promise<unknown>, code: string, re?: RegExp) =>
        assert.rejects(p, (e: unknown) => e instanceof XdsError && e.errors.some((x) => x.code === code) && (!re || re.test(e.message)));
      const d = entry({ patientId: cx('123', '1.2.3') });
      const objs = submission([d]);
      objs.submissionSets[0]!.patientId = d.patientId;
      await expectError(xds.provideAndRegister({ objects: objs, documents: new Map([[d.entryUUID, Buffer.from('x')]]) }), 'XDSUnknownPatientId', /not an INS OID/);
      const badKey = cx('279035121518988', FrOid.insNirTest);
      await expectError(xds.findDocuments({ patientId: badKey }), 'XDSUnknownPatientId', /control key/);
      await expectError(xds.findDocuments({ patientId: cx('180012345678965', FrOid.insNir) }), 'XDSUnknownPatientId', /no open DMP/);

      const ok = entry();
      await xds.provideAndRegister({ objects: submission([ok]), documents: new Map([[ok.entryUUID, cdaFor(ok)]]) });
      const dup = entry({ uniqueId: ok.uniqueId });
      await expectError(xds.provideAndRegister({ objects: submission([dup]), documents: new Map([[dup.entryUUID, cdaFor(dup)]]) }), 'XDSDuplicateUniqueIdInRegistry');
      const noDoc = entry();
      await expectError(xds.provideAndRegister({ objects: submission([noDoc]), documents: new Map() }), 'XDSMissingDocument');
      const badHash = entry({ hash: 'deadbeef' });
      await expectError(xds.provideAndRegister({ objects: submission([badHash]), documents: new Map([[badHash.entryUUID, cdaFor(badHash)]]) }), 'XDSNonIdenticalHash');
      const orphan = entry();
      const o = submission([orphan]);
      o.associations = [];
      await expectError(xds.provideAndRegister({ objects: o, documents: new Map([[orphan.entryUUID, cdaFor(orphan)]]) }), 'XDSRegistryMetadataError', /HasMember/);
      await expectError(xds.storedQuery('urn:uuid:00000000-0000-0000-0000-000000000000', {}), 'XDSUnknownStoredQuery');
      await expectError(xds.storedQuery('urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d', {}), 'XDSStoredQueryParamNumber');
      await expectError(xds.retrieve([{ repositoryUniqueId: dmp.registry.repositoryUniqueId, documentUniqueId: '1.2.3.404' }]), 'XDSDocumentUniqueIdError');
      await expectError(xds.retrieve([{ repositoryUniqueId: '9.9.9', documentUniqueId: ok.uniqueId }]), 'XDSUnknownRepositoryId');
    });

    test('a missing mandatory slot is a metadata error naming it; XML attacks and non-SOAP bodies get a SOAP fault', async () => {
      const missing = entry();
      const objs = submission([missing]);
      const { serialize } = await import('../../xds/soap.js');
      const { provideAndRegisterXml } = await import('../../xds/transactions.js');
      let xml = provideAndRegisterXml({ objects: objs, documents: new Map([[missing.entryUUID, Buffer.from('x')]]) }, () => 'doc1@test');
      xml = xml.replace(/<rim:Slot name="creationTime">.*?<\/rim:Slot>/, '');
      const msg = serialize({ action: 'urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b', bodyXml: xml, attachments: new Map([['doc1@test', Buffer.from('x')]]) });
      const res = await post(`${dmp.url}/repository`, msg.contentType, msg.body);
      assert.equal(res.status, 200);
      assert.match(res.body, /XDSRegistryMetadataError/);
      assert.match(res.body, /creationTime/);

      const xxe = `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>&e;</soap:Body></soap:Envelope>`;
      const r1 = await post(`${dmp.url}/registry`, 'application/soap+xml', Buffer.from(xxe));
      assert.equal(r1.status, 400);
      assert.match(r1.body, /Fault/);
      assert.match(r1.body, /DOCTYPE/);
      assert.doesNotMatch(r1.body, /root:/);
      const laughs = `<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><l>&b;</l>`;
      assert.equal((await post(`${dmp.url}/registry`, 'application/soap+xml', Buffer.from(laughs))).status, 400);
      const deep = `<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>${'<a>'.repeat(500)}${'</a>'.repeat(500)}</soap:Body></soap:Envelope>`;
      const r2 = await post(`${dmp.url}/registry`, 'application/soap+xml', Buffer.from(deep));
      assert.equal(r2.status, 400);
      assert.match(r2.body, /nesting/);
      const r3 = await post(`${dmp.url}/registry`, 'application/json', Buffer.from('{}'));
      assert.equal(r3.status, 400);
      assert.match(r3.body, /unsupported content type/);
      const r4 = await post(`${dmp.url}/repository`, 'application/soap+xml', Buffer.from(`<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Header><Action xmlns="http://www.w3.org/2005/08/addressing">urn:ihe:iti:2007:RegistryStoredQuery</Action></soap:Header><soap:Body><x/></soap:Body></soap:Envelope>`));
      assert.equal(r4.status, 400);
      assert.match(r4.body, /not served at this endpoint/);
    });
  });
}

function post(url: string, contentType: string, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': contentType } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
