/**
 * A DRIM-M network on one laptop, on 127.0.0.1 only: the DMP and Pro Santé Connect stand-ins, a RIS simulator,
 * "CHU A" (a hospital: source function, routing, share links; Orthanc as its PACS) and "Cabinet B" (a private
 * imaging centre: consumer, import, prefetch, incoming studies; its own Orthanc), wired with a throw-away
 * certificate authority and a signed trust list generated at start. Seeded with patients, prior exams and
 * reports at A, and tomorrow's appointments at B. Everything started here is stopped by `stop()`.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { exportPKCS8, exportSPKI, generateKeyPair } from 'jose';
import { signTrustList } from '../auth/trust-list.js';
import { loadConfig } from '../config/config.js';
import { createLogger, type Logger } from '../common/log.js';
import { mtlsFetch } from '../common/mtls-fetch.js';
import { OpenDrimNode } from '../node/node.js';
import { sendMllp } from '../hl7/mllp.js';
import { parseMessage } from '../hl7/message.js';
import { DmpServer } from '../simulators/dmp/server.js';
import { PscServer } from '../simulators/psc/server.js';
import { imagingReportCda, oruR01, type ReportSpec } from '../simulators/ris/reports.js';
import { siu, type AppointmentSpec } from '../simulators/ris/schedule.js';
import { generateStudy, type GeneratedStudy } from '../simulators/modality/study.js';
import { freePort, startOrthanc, type Orthanc } from './orthanc.js';
import { issueBoxCertificate, makeTestPki, type TestPki } from './pki.js';

export const INS_OID_TEST = '1.2.250.1.213.1.4.10';

/** The demo's people: the patient is also a PSC stand-in account; B's local IPPs come from its ADT feed. */
export const PATIENTS = {
  camille: { ins: '280067512345690', family: 'PAT-ECHANGE', given: 'CAMILLE', birthDate: '19800615', sex: 'F' as const, ippA: 'A-1001', ippB: 'B-1001' },
  helene: { family: 'LÉVÊQUE', used: 'MOREL', given: 'HÉLÈNE', birthDate: '19620315', sex: 'F' as const, ippA: 'A-2002', ippB: 'B-1002' },
  jean: { ins: '150017512345675', family: 'PETIT', given: 'JEAN', birthDate: '19500101', sex: 'M' as const, ippA: 'A-3003' },
};

export interface DemoNetwork {
  work: string;
  pki: TestPki;
  pacsA: Orthanc;
  pacsB: Orthanc;
  dmp: DmpServer;
  psc: PscServer;
  a: OpenDrimNode;
  b: OpenDrimNode;
  aUrl: string;
  bUrl: string;
  studies: { thorax2025: GeneratedStudy; knee2026: GeneratedStudy; routed: GeneratedStudy; shared: GeneratedStudy };
  appointment: AppointmentSpec;
  share?: { url: string; code?: string };
  /** HTTPS to the nodes, trusting the demo authority. */
  fetch: ReturnType<typeof mtlsFetch>;
  stop(): Promise<void>;
}

/** A preferred port when it is free (stable URLs for people), else any free one. */
async function port(preferred: number): Promise<number> {
  const free = await new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(preferred, '127.0.0.1', () => s.close(() => resolve(true)));
  });
  return free ? preferred : freePort();
}

async function hl7(portNumber: number, message: string): Promise<void> {
  const ack = parseMessage(await sendMllp('127.0.0.1', portNumber, message));
  if (ack.segment('MSA')?.get(1) !== 'AA') throw new Error(`HL7 message refused: ${ack.segment('ERR')?.get(8) ?? ack.toString()}`);
}

export async function startDemoNetwork(opts: { work: string; log?: Logger; ports?: { a?: number; b?: number } }): Promise<DemoNetwork> {
  const log = opts.log ?? createLogger('warn');
  const work = opts.work;
  mkdirSync(work, { recursive: true });
  const started: Array<() => Promise<unknown>> = [];
  const stopAll = async () => {
    for (const stop of started.reverse()) await stop().catch(() => undefined);
  };
  try {
    const pki = makeTestPki();
    started.push(async () => rmSync(pki.dir, { recursive: true, force: true }));
    const boxA = issueBoxCertificate(pki, 'drimbox.chu-a.test', 'CHU A');
    const boxB = issueBoxCertificate(pki, 'drimbox.cabinet-b.test', 'Cabinet B');
    // The trust list authority (the ANS in the real programme) signs the list of boxes.
    const authority = await generateKeyPair('ES256', { extractable: true });
    writeFileSync(path.join(work, 'trust-authority.pem'), await exportSPKI(authority.publicKey));
    const list = { issuer: 'Autorité de démonstration', issuedAt: new Date().toISOString(), version: 1, entries: [{ domain: 'drimbox.chu-a.test', subjectDn: boxA.subjectDn }, { domain: 'drimbox.cabinet-b.test', subjectDn: boxB.subjectDn }] };
    writeFileSync(path.join(work, 'trust-list.jws'), await signTrustList(list, await exportPKCS8(authority.privateKey)));
    const trustList = { file: path.join(work, 'trust-list.jws'), authority: path.join(work, 'trust-authority.pem') };

    const pacsA = await startOrthanc({ name: 'chu-a-pacs', aet: 'PACSA' });
    started.push(() => pacsA.stop());
    const pacsB = await startOrthanc({ name: 'cabinet-b-pacs', aet: 'PACSB' });
    started.push(() => pacsB.stop());
    const dmp = await new DmpServer({ host: '127.0.0.1', port: 0, dataDir: path.join(work, 'dmp'), log }).start();
    started.push(() => dmp.close());
    const dmpUrls = { registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` };

    const aPort = await port(opts.ports?.a ?? 18443);
    const bPort = await port(opts.ports?.b ?? 18444);
    const bExchangePort = await port(18445);
    const aUrl = `https://127.0.0.1:${aPort}`;
    const bUrl = `https://127.0.0.1:${bPort}`;
    const bExchangeUrl = `https://127.0.0.1:${bExchangePort}`;
    const psc = await new PscServer({ host: '127.0.0.1', port: await port(18446), tls: { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.ca) }, clients: [{ clientId: 'opendrim-b', tlsSubjectDn: boxB.subjectDn, redirectUris: [`${bUrl}/auth/callback`], postLogoutRedirectUris: [`${bUrl}/auth/login`] }], log }).start();
    started.push(() => psc.close());

    const node = async (name: string, overrides: Record<string, unknown>) => {
      const dataDir = path.join(work, name);
      // The demo's HL7 senders, all on this machine: the RIS simulator (reports, orders, appointments) and the DPI's ADT feed.
      const senders = [
        { name: 'RIS (simulator)', from: ['127.0.0.1'], application: 'RIS_SIM', messages: ['reports', 'orders', 'scheduling'] },
        { name: 'DPI (ADT feed)', from: ['127.0.0.1'], application: 'DPI', messages: ['adt'] },
      ];
      const config = loadConfig({ env: {}, overrides: { bind: '127.0.0.1', dicomPort: 0, dicomTlsPort: 0, 'hl7.port': 0, 'hl7.bind': '127.0.0.1', 'hl7.senders': senders, dataDir, ...overrides } });
      const n = new OpenDrimNode(config, log.child({ node: name }));
      await n.start();
      started.push(() => n.close(2000));
      return n;
    };
    const a = await node('chu-a', {
      aeTitle: 'DRIMBOXA',
      httpPort: aPort,
      publicUrl: aUrl,
      tls: { cert: boxA.cert, key: boxA.key, ca: pki.ca },
      exchange: { port: 0, domain: 'drimbox.chu-a.test', trustList },
      peers: [{ aeTitle: 'PACSA', host: '127.0.0.1', port: pacsA.dicomPort }],
      source: { pacs: 'PACSA', dmp: dmpUrls, organisation: { finess: '750712184', name: 'CHU A' } },
      routing: {
        pacs: 'PACSA',
        watch: { everySeconds: 2, lookbackDays: 1 },
        stableSeconds: 3,
        destinations: [{ name: 'cabinet-b', type: 'opendrim', url: bExchangeUrl, gzip: true }],
        // Dr Claire MOREAU practises at Cabinet B: her patients' exams go there.
        rules: [{ name: 'correspondants-cabinet-b', when: { referringPhysicianName: ['MOREAU^CLAIRE'] }, destinations: ['cabinet-b'] }],
      },
      share: { pacs: 'PACSA' },
    });
    const b = await node('cabinet-b', {
      aeTitle: 'DRIMBOXB',
      httpPort: bPort,
      publicUrl: bUrl,
      tls: { cert: boxB.cert, key: boxB.key, ca: pki.ca },
      exchange: { port: bExchangePort, domain: 'drimbox.cabinet-b.test', trustList },
      peers: [{ aeTitle: 'PACSB', host: '127.0.0.1', port: pacsB.dicomPort }],
      consumer: { psc: { issuer: psc.issuer, clientId: 'opendrim-b', clientAuth: 'tls_client_auth' }, dmp: dmpUrls, import: { pacs: 'PACSB', issuer: 'CABINET-B' } },
      prefetch: {
        onBehalfOf: { id: '8899700218896', familyName: 'RADIO', givenName: 'Jeanne', specialty: 'SM26' },
        pollSeconds: 2,
        tag: { InstitutionName: 'ANTERIORITE DRIM-M' },
        rules: [{ name: 'Scanner du thorax', match: { modality: 'CT', procedure: 'ZBQK*' }, priors: { modalities: ['same'], regions: ['thorax'], lookbackDays: 3650, maxStudies: 3 }, leadHours: 48 }],
      },
      incoming: { pacs: 'PACSB', issuer: 'CABINET-B', stableSeconds: 3, acceptFromBoxes: ['drimbox.chu-a.test'] },
    });

    // ---- Seeding ----
    const gen = path.join(work, 'generated');
    const today = new Date().toISOString().slice(0, 10).replace(/-/g, '');
    const c = PATIENTS.camille;
    const thorax2025 = generateStudy({ out: path.join(gen, 'thorax'), modality: 'CT', series: 1, slices: 24, rows: 256, cols: 256, patientId: c.ippA, issuer: 'CHU-A', ins: c.ins, patientName: `${c.family}^${c.given}`, birthDate: c.birthDate, sex: c.sex, studyDate: '20250310', accession: 'A-THX-25', description: 'SCANNER THORAX', referring: 'DURAND^PAUL' });
    const knee2026 = generateStudy({ out: path.join(gen, 'knee'), modality: 'MR', series: 2, slices: 12, rows: 256, cols: 256, patientId: c.ippA, issuer: 'CHU-A', ins: c.ins, patientName: `${c.family}^${c.given}`, birthDate: c.birthDate, sex: c.sex, studyDate: '20260601', accession: 'A-GEN-26', description: 'IRM GENOU DROIT', referring: 'DURAND^PAUL' });
    const j = PATIENTS.jean;
    const shared = generateStudy({ out: path.join(gen, 'shared'), modality: 'CT', series: 1, slices: 16, rows: 256, cols: 256, patientId: j.ippA, issuer: 'CHU-A', ins: j.ins, patientName: `${j.family}^${j.given}`, birthDate: j.birthDate, sex: j.sex, studyDate: '20261015', accession: 'A-ABD-26', description: 'SCANNER ABDOMEN', referring: 'DURAND^PAUL' });
    for (const f of [...thorax2025.files, ...knee2026.files, ...shared.files]) await pacsA.api('POST', '/instances', readFileSync(f));
    // The RIS of A sends the signed reports: A publishes them to the DMP with the KOS manifests.
    const report = (spec: Partial<ReportSpec> & { studyUid: string; accessionNumber: string; effectiveTime: string; examCode: { code: string; display: string }; text: string }): ReportSpec => ({ ins: c.ins, ipp: c.ippA, family: c.family, given: c.given, birthDate: c.birthDate, sex: c.sex, version: 1, ...spec });
    const thoraxReport = report({ studyUid: thorax2025.studyUid, accessionNumber: 'A-THX-25', effectiveTime: '20250310113000+0100', examCode: { code: 'ZBQK002', display: 'Scanographie du thorax' }, setId: 'D0000000-0000-4000-8000-000000000001', text: 'Scanner thoracique : pas de nodule.' });
    const kneeReport = report({ studyUid: knee2026.studyUid, accessionNumber: 'A-GEN-26', effectiveTime: '20260601150000+0200', examCode: { code: 'NZQN001', display: 'IRM du genou' }, setId: 'D0000000-0000-4000-8000-000000000002', text: 'IRM du genou droit : fissure méniscale interne.' });
    for (const r of [thoraxReport, kneeReport]) await hl7(a.hl7Port!, oruR01(r, imagingReportCda(r)));
    // AA means queued: the demo goes on once A has published them.
    await a.publisher!.queue.settled();
    // B's ADT feed: its patients and their local IPPs (Camille with her INS; Hélène by name only).
    const h = PATIENTS.helene;
    await hl7(b.hl7Port!, ['MSH|^~\\&|DPI|CABINET-B|OPENDRIM|CABINET-B|20261203080000||ADT^A28^ADT_A05|DEMO-ADT-1|P|2.5', `PID|||${c.ins}^^^ASIP-SANTE-INS-NIR&${INS_OID_TEST}&ISO^INS~${c.ippB}^^^CABINET-B&1.2.250.1.999.2&ISO^PI||${c.family}^${c.given}^^^^^L||${c.birthDate}|${c.sex}`].join('\r'));
    await hl7(b.hl7Port!, ['MSH|^~\\&|DPI|CABINET-B|OPENDRIM|CABINET-B|20261203080000||ADT^A28^ADT_A05|DEMO-ADT-2|P|2.5', `PID|||${h.ippB}^^^CABINET-B&1.2.250.1.999.2&ISO^PI||${h.family}^${h.given}^^^^^L~${h.used}^${h.given}^^^^^D||${h.birthDate}|${h.sex}`].join('\r'));
    // B's RIS books tomorrow's CT of the thorax for Camille: B's prefetch brings A's prior.
    const tomorrow = new Date(Date.now() + 86400_000);
    tomorrow.setUTCHours(8, 30, 0, 0);
    const appointment: AppointmentSpec = { appointmentId: 'RDV-DEMO-1', ins: c.ins, ipp: c.ippB, family: c.family, given: c.given, birthDate: c.birthDate, sex: c.sex, start: tomorrow, modality: 'CT', procedure: { code: 'ZBQK002', text: 'Scanographie du thorax' } };
    await hl7(b.hl7Port!, siu('S12', appointment, 'DEMO-SIU-1'));
    // Today at A: Hélène's chest X-ray, asked by Dr MOREAU of Cabinet B (A's records lost the accents).
    const routed = generateStudy({ out: path.join(gen, 'routed'), modality: 'CR', series: 1, slices: 1, rows: 512, cols: 512, patientId: h.ippA, issuer: 'CHU-A', patientName: 'LEVEQUE^HELENE', birthDate: h.birthDate, sex: h.sex, studyDate: today, accession: 'A-RX-DEMO', description: 'RADIO THORAX', referring: 'MOREAU^CLAIRE' });
    for (const f of routed.files) await pacsA.api('POST', '/instances', readFileSync(f));
    rmSync(gen, { recursive: true, force: true });

    const fetchTls = mtlsFetch({ cert: readFileSync(boxA.cert), key: readFileSync(boxA.key), ca: readFileSync(pki.ca) });
    // A share link for Jean PETIT's CT, as the front desk would hand it out instead of a CD.
    const res = await fetchTls(`${aUrl}/api/share-links`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ studyUid: shared.studyUid, hours: 72, code: true }) });
    const share = res.status === 201 ? ((await res.json()) as { url: string; code?: string }) : undefined;

    return { work, pki, pacsA, pacsB, dmp, psc, a, b, aUrl, bUrl, studies: { thorax2025, knee2026, routed, shared }, appointment, share, fetch: fetchTls, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
