/**
 * Prefetch end to end: the RIS of "Cabinet B" books appointments (SIU over MLLP); B finds the patient's priors in
 * the DMP stand-in (published there by "CHU A"), fetches them from CHU A (Orthanc as its PACS) and pushes them into
 * its own PACS (a second Orthanc) under the IPP the schedule gave, before the appointment.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import dcmjs from 'dcmjs';
import path from 'node:path';
import { generateStudy, type GeneratedStudy } from '../harness/gen-study.js';
import { haveCommand } from '../harness/peers.js';
import { CHROMIUM, launchChromium, pscLogin, startDrimNetwork, type DrimNetwork } from '../harness/drim-network.js';
import { sendMllp } from '../../src/hl7/mllp.js';
import { parseMessage } from '../../src/hl7/message.js';
import { ormO01, siu, type AppointmentSpec } from '../../src/simulators/ris/schedule.js';
import { find } from '../../src/dicom/scu.js';
import { mtlsFetch } from '../../src/common/mtls-fetch.js';

const skip = haveCommand('Orthanc') ? false : 'Orthanc is not installed';
const INS = '280067512345690';

describe('prefetch: SIU in, priors from the DMP and the source box, into the local PACS before the appointment', { skip }, () => {
  let net: DrimNetwork;
  let thorax2025: GeneratedStudy;
  let thorax2026: GeneratedStudy;
  let knee: GeneratedStudy;
  let kneeNotInDmp: GeneratedStudy;
  let xrayAtBoxA: GeneratedStudy;
  let worklists: string;
  const tomorrow = new Date(Date.now() + 24 * 3600_000);
  const appointment: AppointmentSpec = { appointmentId: 'RDV-100', ins: INS, ipp: 'IPP-B-77', family: 'PAT-ECHANGE', given: 'CAMILLE', birthDate: '19800615', sex: 'F', start: tomorrow, modality: 'CT', procedure: { code: 'ZBQK002', text: 'Scanographie du thorax' } };
  const send = async (msg: string) => {
    const ack = parseMessage(await sendMllp('127.0.0.1', net.b.hl7Port!, msg));
    return { code: ack.segment('MSA')!.get(1), text: ack.segment('ERR')?.get(8) ?? '' };
  };
  const state = async (id: string) => (await net.b.prefetcher!.list({ from: new Date(0), to: new Date(Date.now() + 365 * 86400_000) })).find((a) => a.appointmentId === id);
  const until = async (id: string, wanted: string[], ms = 60_000) => {
    const t0 = Date.now();
    for (;;) {
      const a = await state(id);
      if (a && wanted.includes(a.state)) return a;
      if (Date.now() - t0 > ms) assert.fail(`appointment ${id} stayed ${a?.state} (${a?.error ?? ''})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const inPacsB = async (studyUid: string) => find({ aeTitle: 'PACSB', host: '127.0.0.1', port: net.pacsB.dicomPort }, 'DRIMBOXB', 'STUDY', { StudyInstanceUID: studyUid, PatientID: '', NumberOfStudyRelatedInstances: '' });

  before(async () => {
    const gen = path.join(process.env.TMPDIR ?? '/tmp', `prefetch-it-${process.pid}`);
    const common = { patientId: INS, patientName: 'PAT-ECHANGE^CAMILLE', rows: 64, cols: 64 };
    thorax2025 = generateStudy({ out: path.join(gen, 'a'), modality: 'CT', series: 1, slices: 12, accession: 'ACC-T25', studyDate: '20250310', ...common });
    thorax2026 = generateStudy({ out: path.join(gen, 'b'), modality: 'CT', series: 2, slices: 8, accession: 'ACC-T26', studyDate: '20261015', ...common });
    knee = generateStudy({ out: path.join(gen, 'c'), modality: 'MR', series: 1, slices: 5, accession: 'ACC-KNEE', studyDate: '20260601', ...common });
    // An exam A's PACS holds but never published to the DMP (the INS in Other Patient IDs): found only by C-FIND.
    xrayAtBoxA = generateStudy({ out: path.join(gen, 'e'), modality: 'CR', series: 1, slices: 1, accession: 'ACC-RX', studyDate: '20261001', description: 'RADIO THORAX FACE', ...common });
    kneeNotInDmp = generateStudy({ out: path.join(gen, 'd'), modality: 'MR', series: 2, slices: 3, accession: 'ACC-KNEE-2', studyDate: '20260901', description: 'IRM GENOU GAUCHE', ins: INS, ...common });
    worklists = mkdtempSync(path.join(tmpdir(), 'worklists-'));
    net = await startDrimNetwork({
      pacsBWorklists: worklists,
      loadIntoPacsA: [...thorax2025.files, ...thorax2026.files, ...knee.files, ...kneeNotInDmp.files, ...xrayAtBoxA.files],
      bConfig: ({ pacsAPort, pacsBPort, aExchangeBase }) => ({
        // CHU A's PACS is also reachable by DICOM (a neighbouring hospital's PACS) and searched for knee priors.
        peers: [
          { aeTitle: 'PACSB', host: '127.0.0.1', port: pacsBPort },
          { aeTitle: 'PACSA', host: '127.0.0.1', port: pacsAPort },
        ],
        prefetch: {
          onBehalfOf: { id: '8899700218896', familyName: 'RADIO', givenName: 'Jeanne', specialty: 'SM26' },
          pollSeconds: 0.2,
          worklist: { peer: 'PACSB', everyMinutes: 600, daysAhead: 2 },
          tag: { InstitutionName: 'ANTERIORITE DRIM-M' },
          rules: [
            { name: 'CT thorax', match: { modality: 'CT', procedure: 'ZBQK*' }, priors: { modalities: ['same'], regions: ['thorax'], lookbackDays: 3650, maxStudies: 3 }, leadHours: 48 },
            { name: 'IRM genou', match: { modality: 'MR', procedure: 'NZQ*' }, priors: { modalities: ['same'], regions: ['genou'], lookbackDays: 3650, maxStudies: 2, sources: ['pacs:PACSA'] }, leadHours: 48 },
            // CHU A's box is also asked directly (QIDO-RS on its exchange port) for chest X-rays.
            { name: 'Radio thorax', match: { modality: 'CR' }, priors: { modalities: ['same'], regions: ['thorax'], lookbackDays: 3650, maxStudies: 1, sources: [`box:${aExchangeBase}`] }, leadHours: 48 },
          ],
        },
      }),
    });
    rmSync(gen, { recursive: true, force: true });
    const base = { ins: INS, ipp: 'IPP-A-7', family: 'PAT-ECHANGE', given: 'CAMILLE', birthDate: '19800615', sex: 'F' as const };
    const thorax = { code: 'ZBQK002', display: 'Scanographie du thorax' };
    await net.publish({ ...base, studyUid: thorax2025.studyUid, accessionNumber: 'ACC-T25', setId: 'C0000000-0000-4000-8000-000000000001', version: 1, effectiveTime: '20250310113000+0100', examCode: thorax });
    await net.publish({ ...base, studyUid: thorax2026.studyUid, accessionNumber: 'ACC-T26', setId: 'C0000000-0000-4000-8000-000000000002', version: 1, effectiveTime: '20261015113000+0100', examCode: thorax });
    await net.publish({ ...base, studyUid: knee.studyUid, accessionNumber: 'ACC-KNEE', setId: 'C0000000-0000-4000-8000-000000000003', version: 1, effectiveTime: '20260601113000+0100', examCode: { code: 'NZQN001', display: 'IRM du genou' } });
  });
  after(async () => {
    await net?.stop();
    if (worklists) rmSync(worklists, { recursive: true, force: true });
  });

  test('a booked CT of the thorax brings both thorax CT priors (not the knee MR) into PACS B under the IPP from the schedule', async () => {
    assert.deepEqual(await send(siu('S12', appointment, 'CTRL-1')), { code: 'AA', text: '' });
    const a = await until('RDV-100', ['ready', 'failed', 'nothing']);
    assert.equal(a.state, 'ready', a.error);
    assert.deepEqual(a.priors.map((p) => p.studyUid).sort(), [thorax2025.studyUid, thorax2026.studyUid].sort());
    assert.equal(a.total, 28);
    assert.ok(a.readyAt! < a.start);
    for (const s of [thorax2025, thorax2026]) {
      const [hit] = await inPacsB(s.studyUid);
      assert.equal(hit?.['00100020']?.Value?.[0], 'IPP-B-77', 'under the local IPP of the SIU');
      assert.equal(Number(hit?.['00201208']?.Value?.[0]), s.sopUids.length);
    }
    assert.equal((await inPacsB(knee.studyUid)).length, 0, 'the knee MR is not a relevant prior');
    const [id] = await net.pacsB.api('POST', '/tools/find', { Level: 'Instance', Query: { StudyInstanceUID: thorax2025.studyUid }, Limit: 1 });
    const tags = await net.pacsB.api('GET', `/instances/${id}/simplified-tags`);
    assert.equal(tags.InstitutionName, 'ANTERIORITE DRIM-M', 'external priors are marked');
    await net.b.audit.flush();
    const search = await net.b.audit.search({ action: 'prefetch.search' });
    assert.equal(search[0]?.detail.onBehalfOf, '8899700218896');
  });

  test('priors from a peer PACS found by C-FIND (not in the DMP) are brought by C-GET into PACS B under the IPP', async () => {
    const mri: AppointmentSpec = { ...appointment, appointmentId: 'RDV-MR-1', modality: 'MR', procedure: { code: 'NZQN001', text: 'IRM du genou' } };
    assert.equal((await send(siu('S12', mri, 'CTRL-MR-1'))).code, 'AA');
    const a = await until('RDV-MR-1', ['ready', 'failed', 'nothing'], 120_000);
    assert.equal(a.state, 'ready', a.error ?? '');
    assert.deepEqual(a.priors.map((p) => p.studyUid), [kneeNotInDmp.studyUid], 'only the knee MR the PACS holds (the other MR is not of the knee)');
    const rows = await inPacsB(kneeNotInDmp.studyUid);
    assert.equal(rows[0]?.['00100020']?.Value?.[0], appointment.ipp);
    assert.equal(Number(rows[0]?.['00201208']?.Value?.[0]), kneeNotInDmp.files.length);
  });

  test('priors from a peer DRIMbox found by QIDO-RS on its exchange port (for that patient only) are imported', async () => {
    const xray: AppointmentSpec = { ...appointment, appointmentId: 'RDV-RX-1', modality: 'CR', procedure: { code: 'ZBQK001', text: 'Radiographie du thorax' } };
    assert.equal((await send(siu('S12', xray, 'CTRL-RX-1'))).code, 'AA');
    const a = await until('RDV-RX-1', ['ready', 'failed', 'nothing'], 120_000);
    assert.equal(a.state, 'ready', a.error ?? '');
    assert.deepEqual(a.priors.map((p) => p.studyUid), [xrayAtBoxA.studyUid]);
    const rows = await inPacsB(xrayAtBoxA.studyUid);
    assert.equal(rows[0]?.['00100020']?.Value?.[0], appointment.ipp);
    await net.a.audit.flush();
    const searches = await net.a.audit.search({ action: 'exchange.search' });
    assert.ok(searches.some((r) => r.outcome === 'success' && r.patientId === INS), 'A audits the search, naming the patient');
  });

  test('duplicate messages change nothing; a prior already in the PACS is not fetched again', async () => {
    const jobsBefore = (await net.b.imports!.list()).length;
    assert.equal((await send(siu('S12', appointment, 'CTRL-1'))).code, 'AA', 'same control ID');
    assert.equal((await send(siu('S14', appointment, 'CTRL-2'))).code, 'AA', 'same content again');
    assert.equal((await state('RDV-100'))?.state, 'ready');
    // Another appointment of the same patient: the priors are there already.
    assert.equal((await send(siu('S12', { ...appointment, appointmentId: 'RDV-101', start: new Date(Date.now() + 30 * 3600_000) }, 'CTRL-3'))).code, 'AA');
    const b = await until('RDV-101', ['ready', 'failed', 'nothing']);
    assert.equal(b.state, 'ready');
    assert.ok(b.priors.every((p) => p.alreadyThere));
    assert.equal((await net.b.imports!.list()).length, jobsBefore, 'no new import');
  });

  test('a cancelled appointment is not prefetched; a rescheduled one is prefetched at its new time', async () => {
    const later = { ...appointment, appointmentId: 'RDV-200', ipp: 'IPP-B-77', start: new Date(Date.now() + 10 * 86400_000) };
    assert.equal((await send(siu('S12', later, 'CTRL-10'))).code, 'AA');
    assert.equal((await state('RDV-200'))?.state, 'waiting', 'due only 48 h before');
    assert.equal((await send(siu('S15', later, 'CTRL-11'))).code, 'AA');
    assert.equal((await state('RDV-200'))?.state, 'cancelled');
    const moved = { ...appointment, appointmentId: 'RDV-300', start: new Date(Date.now() + 10 * 86400_000) };
    assert.equal((await send(siu('S12', moved, 'CTRL-20'))).code, 'AA');
    assert.equal((await state('RDV-300'))?.state, 'waiting');
    assert.equal((await send(siu('S13', { ...moved, start: new Date(Date.now() + 20 * 3600_000) }, 'CTRL-21'))).code, 'AA');
    assert.equal((await until('RDV-300', ['ready', 'failed', 'nothing'])).state, 'ready');
  });

  test('the prefetch page lists tomorrow\'s appointments with their state (browser)', { skip: existsSync(CHROMIUM) ? false : 'Debian chromium is not installed' }, async () => {
    const browser = await launchChromium();
    try {
      const pg = await (await browser.newContext({ viewport: { width: 1440, height: 700 }, ignoreHTTPSErrors: true })).newPage();
      const day = new Date(appointment.start.getTime()).toISOString().slice(0, 10);
      await pg.goto(`${net.bUrl}/app/prefetch?day=${day}`);
      await pg.click('#psc-login');
      await pscLogin(pg);
      const rows = await pg.$$eval('#appointments tbody tr', (trs) => trs.map((tr) => ({ id: (tr as HTMLElement).dataset.appointment, state: (tr as HTMLElement).dataset.state })));
      assert.ok(rows.some((r) => r.id === 'RDV-100' && r.state === 'ready'), JSON.stringify(rows));
      assert.match((await pg.textContent('#appointments')) ?? '', /Scanographie du thorax/);
      mkdirSync(path.resolve('docs/screenshots'), { recursive: true });
      await pg.screenshot({ path: path.resolve('docs/screenshots/prefetch.png') });
    } finally {
      await browser.close();
    }
  });

  test('an ORM^O01 order with a scheduled time is prefetched like an appointment; its cancellation cancels it', async () => {
    const order = { ...appointment, appointmentId: 'CMD-500', start: new Date(Date.now() + 22 * 3600_000) };
    assert.deepEqual(await send(ormO01(order, 'CTRL-50')), { code: 'AA', text: '' });
    const a = await until('ORD-CMD-500', ['ready', 'failed', 'nothing']);
    assert.equal(a.state, 'ready', a.error);
    assert.equal(a.modality, 'CT');
    const later = { ...order, appointmentId: 'CMD-501', start: new Date(Date.now() + 9 * 86400_000) };
    assert.equal((await send(ormO01(later, 'CTRL-51'))).code, 'AA');
    assert.equal((await state('ORD-CMD-501'))?.state, 'waiting');
    assert.equal((await send(ormO01({ ...later, orderControl: 'CA' }, 'CTRL-52'))).code, 'AA');
    assert.equal((await state('ORD-CMD-501'))?.state, 'cancelled');
  });

  test('a RIS without HL7: the worklist is polled (Orthanc\'s worklist plugin), a step becomes an appointment, a step gone is cancelled', async () => {
    const start = new Date(Date.now() + 26 * 3600_000);
    const pad = (n: number) => String(n).padStart(2, '0');
    const ds = {
      PatientName: 'PAT-ECHANGE^CAMILLE',
      PatientID: 'IPP-B-88',
      IssuerOfPatientID: 'CABINET-B',
      OtherPatientIDsSequence: [{ PatientID: INS, IssuerOfPatientID: 'ASIP-SANTE-INS-NIR', TypeOfPatientID: 'TEXT', IssuerOfPatientIDQualifiersSequence: [{ UniversalEntityID: '1.2.250.1.213.1.4.10', UniversalEntityIDType: 'ISO' }] }],
      PatientBirthDate: '19800615',
      PatientSex: 'F',
      AccessionNumber: 'ACC-WL-1',
      StudyInstanceUID: '1.2.826.0.1.3680043.10.1355.77',
      RequestedProcedureID: 'RP-1',
      RequestedProcedureDescription: 'Scanographie du thorax',
      RequestedProcedureCodeSequence: [{ CodeValue: 'ZBQK002', CodingSchemeDesignator: 'CCAM', CodeMeaning: 'Scanographie du thorax' }],
      ScheduledProcedureStepSequence: [{ Modality: 'CT', ScheduledStationAETitle: 'CT1', ScheduledProcedureStepStartDate: `${start.getFullYear()}${pad(start.getMonth() + 1)}${pad(start.getDate())}`, ScheduledProcedureStepStartTime: `${pad(start.getHours())}${pad(start.getMinutes())}00`, ScheduledProcedureStepID: 'SPS-1', ScheduledProcedureStepDescription: 'TDM thorax' }],
    };
    const meta = { FileMetaInformationVersion: new Uint8Array([0, 1]).buffer, MediaStorageSOPClassUID: '1.2.840.10008.5.1.4.31', MediaStorageSOPInstanceUID: '1.2.826.0.1.3680043.10.1355.78', TransferSyntaxUID: '1.2.840.10008.1.2.1', ImplementationClassUID: '1.2.826.0.1.3680043.10.1355' };
    const dict = new dcmjs.data.DicomDict(dcmjs.data.DicomMetaDictionary.denaturalizeDataset(meta));
    dict.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(ds);
    const file = path.join(worklists, 'sps-1.wl');
    writeFileSync(file, Buffer.from(dict.write()));
    const r1 = await net.b.worklist!.poll();
    assert.equal(r1.recorded, 1, JSON.stringify(r1));
    const a = await until('MWL-SPS-1', ['ready', 'failed', 'nothing']);
    assert.equal(a.state, 'ready', a.error);
    assert.equal(a.procedure, 'Scanographie du thorax');
    assert.equal((await net.b.identities!.lookup(INS))?.localId, 'IPP-B-88', 'the IPP of the worklist is recorded');
    rmSync(file);
    const r2 = await net.b.worklist!.poll();
    assert.equal(r2.cancelled, 1);
    assert.equal((await net.b.prefetcher!.bookedBetween('MWL-', new Date(), new Date(Date.now() + 3 * 86400_000))).length, 0);
  });

  test('bad scheduling messages get an AE naming the problem; the share of ready appointments is exported', async () => {
    const noIns = siu('S12', { ...appointment, appointmentId: 'RDV-400' }).replace(/280067512345690\^\^\^ASIP-SANTE-INS-NIR&1\.2\.250\.1\.213\.1\.4\.10&ISO\^INS~/, '');
    assert.deepEqual(await send(noIns), { code: 'AE', text: 'PID-3 carries no INS (identifier with an INS OID): priors are searched in the DMP by INS' });
    const noStart = siu('S12', { ...appointment, appointmentId: 'RDV-401' }).replace(/AIS\|1\|A\|([^|]*)\|\d{14}\+0000\|/, 'AIS|1|A|$1|2026-13-45|').replace(/\|\^\^\^\d{14}\+0000\|/, '|^^^|');
    assert.equal((await send(noStart)).code, 'AE');
    // Prometheus: appointments of the next 24 h by state, and the share ready in time.
    const https = mtlsFetch({ cert: readFileSync(net.pki.clientCert), key: readFileSync(net.pki.clientKey), ca: readFileSync(net.pki.ca) });
    const metrics = await (await https(`https://127.0.0.1:${net.b.httpPort}/metrics`)).text();
    const ready = Number(/opendrim_prefetch_appointments\{state="ready"\} (\d+)/.exec(metrics)?.[1]);
    const upcoming = (await net.b.prefetcher!.list({ from: new Date(), to: new Date(Date.now() + 86400_000) })).filter((a) => a.state === 'ready').length;
    assert.ok(ready >= 1 && ready === upcoming, `gauge ${ready}, list ${upcoming}`);
    assert.match(metrics, /opendrim_prefetch_ready_before_appointment_ratio 1\b/);
  });
});
