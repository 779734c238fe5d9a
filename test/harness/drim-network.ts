/**
 * A small DRIM-M network on 127.0.0.1 for browser tests and benchmarks: "CHU A" (OpenDRIM source, Orthanc as
 * its PACS), the DMP and Pro Santé Connect stand-ins, and "Cabinet B" (OpenDRIM consumer with its own Orthanc),
 * wired with a throw-away PKI and a signed trust list. Everything started here is stopped by `stop()`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CompactSign, exportSPKI, generateKeyPair } from 'jose';
import { freePort, startOrthanc, type Orthanc } from './peers.js';
import { startTestNode } from './node.js';
import { issueBoxCertificate, makeTestPki, type TestPki } from './certs.js';
import { createLogger } from '../../src/common/log.js';
import { sendMllp } from '../../src/hl7/mllp.js';
import { parseMessage } from '../../src/hl7/message.js';
import { DmpServer } from '../../src/simulators/dmp/server.js';
import { PscServer } from '../../src/simulators/psc/server.js';
import { imagingReportCda, oruR01, type ReportSpec } from '../../src/simulators/ris/reports.js';

type Node = Awaited<ReturnType<typeof startTestNode>>;

export interface DrimNetwork {
  work: string;
  pki: TestPki;
  orthanc: Orthanc;
  pacsB: Orthanc;
  dmp: DmpServer;
  psc: PscServer;
  a: Node;
  b: Node;
  /** Base URL of B's web application. */
  bUrl: string;
  /** Base URL of B's exchange port (other boxes push routed studies there). */
  bExchangeUrl: string;
  /** Sends a report from A's RIS (ORU^R01 over MLLP); throws unless ACKed AA. */
  /** A's RIS sends the report (the CDA the spec describes, or the one given) and A publishes it. */
  publish(spec: ReportSpec, cda?: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startDrimNetwork(opts: { loadIntoPacsA: string[]; pscAccessTokenTtlSeconds?: number; /** More configuration for B (e.g. prefetch), possibly knowing where both PACS are. */ bConfig?: Record<string, unknown> | ((ctx: { pacsAPort: number; pacsBPort: number; aExchangeBase: string; dmpUrls: { registryUrl: string; repositoryUrl: string } }) => Record<string, unknown>); /** More configuration for A, knowing where B's exchange port and PACS are (e.g. routing). */ aConfig?: (ctx: { bExchangeUrl: string; pacsAPort: number; pacsBPort: number }) => Record<string, unknown>; /** B's PACS also serves a worklist from this folder. */ pacsBWorklists?: string }): Promise<DrimNetwork> {
  const work = mkdtempSync(path.join(tmpdir(), 'drim-net-'));
  const pki = makeTestPki();
  const boxA = issueBoxCertificate(pki, 'drimbox.chu-a.test', 'CHU A');
  const boxB = issueBoxCertificate(pki, 'drimbox.cabinet-b.test', 'Cabinet B');
  const authority = await generateKeyPair('ES256', { extractable: true });
  writeFileSync(path.join(work, 'authority.pem'), await exportSPKI(authority.publicKey));
  const list = { issuer: 'ANS (test)', issuedAt: new Date().toISOString(), version: 1, entries: [{ domain: 'drimbox.chu-a.test', subjectDn: boxA.subjectDn }, { domain: 'drimbox.cabinet-b.test', subjectDn: boxB.subjectDn }] };
  writeFileSync(path.join(work, 'trust-list.jws'), await new CompactSign(new TextEncoder().encode(JSON.stringify(list))).setProtectedHeader({ alg: 'ES256' }).sign(authority.privateKey));
  const bExchangePort = await freePort();
  const bExchangeUrl = `https://127.0.0.1:${bExchangePort}`;
  const exchange = (domain: string, port = 0) => ({ port, domain, trustList: { file: path.join(work, 'trust-list.jws'), authority: path.join(work, 'authority.pem') } });

  const orthanc = await startOrthanc({ name: 'chu-a-pacs', aet: 'PACS' });
  for (const f of opts.loadIntoPacsA) await orthanc.api('POST', '/instances', readFileSync(f));
  const dmp = await new DmpServer({ host: '127.0.0.1', port: 0, dataDir: path.join(work, 'dmp'), log: createLogger('silent') }).start();
  const dmpUrls = { registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` };
  const pacsB = await startOrthanc({ name: 'cabinet-b-pacs', aet: 'PACSB', worklists: opts.pacsBWorklists });
  const a = await startTestNode({ aeTitle: 'DRIMBOXA', dicomTlsPort: 0, tls: { cert: boxA.cert, key: boxA.key, ca: pki.ca }, exchange: exchange('drimbox.chu-a.test'), peers: [{ aeTitle: 'PACS', host: '127.0.0.1', port: orthanc.dicomPort }], source: { pacs: 'PACS', dmp: dmpUrls, organisation: { finess: '750712184', name: 'CHU A' } }, ...(opts.aConfig?.({ bExchangeUrl, pacsAPort: orthanc.dicomPort, pacsBPort: pacsB.dicomPort }) ?? {}) });
  const bPort = await freePort();
  const bUrl = `https://127.0.0.1:${bPort}`;
  // PSC over HTTPS; box B authenticates to it with its certificate (tls_client_auth), as PSC requires.
  const psc = await new PscServer({ host: '127.0.0.1', port: 0, accessTokenTtlSeconds: opts.pscAccessTokenTtlSeconds, tls: { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.ca) }, clients: [{ clientId: 'opendrim-b', tlsSubjectDn: boxB.subjectDn, redirectUris: [`${bUrl}/auth/callback`], postLogoutRedirectUris: [`${bUrl}/auth/login`] }], log: createLogger('silent') }).start();
  // B serves its web UI over HTTPS with its box certificate (from the test authority: browsers are told to accept it).
  const b = await startTestNode({ aeTitle: 'DRIMBOXB', httpPort: bPort, publicUrl: bUrl, dicomTlsPort: 0, tls: { cert: boxB.cert, key: boxB.key, ca: pki.ca }, exchange: exchange('drimbox.cabinet-b.test', bExchangePort), peers: [{ aeTitle: 'PACSB', host: '127.0.0.1', port: pacsB.dicomPort }], consumer: { psc: { issuer: psc.issuer, clientId: 'opendrim-b', clientAuth: 'tls_client_auth' }, dmp: dmpUrls, import: { pacs: 'PACSB', issuer: 'CABINET-B' } }, ...(typeof opts.bConfig === 'function' ? opts.bConfig({ pacsAPort: orthanc.dicomPort, pacsBPort: pacsB.dicomPort, aExchangeBase: a.exchange!.wadoRsBase, dmpUrls }) : (opts.bConfig ?? {})) });

  return {
    work,
    pki,
    orthanc,
    pacsB,
    dmp,
    psc,
    a,
    b,
    bUrl,
    bExchangeUrl,
    async publish(spec, cda) {
      const ack = parseMessage(await sendMllp('127.0.0.1', a.hl7Port!, oruR01(spec, cda ?? imagingReportCda(spec))));
      if (ack.segment('MSA')!.get(1) !== 'AA') throw new Error(`report not published: ${ack.segment('ERR')?.get(8)}`);
      await a.publisher!.queue.settled();
      const [last] = await a.publisher!.queue.list({ limit: 1 });
      if (last?.status === 'failed') throw new Error(`report not published: ${last.error}`);
    },
    async stop() {
      await Promise.all([a.cleanup(), b.cleanup()]);
      await psc.close();
      await dmp.close();
      await Promise.all([orthanc.stop(), pacsB.stop()]);
      rmSync(work, { recursive: true, force: true });
      rmSync(pki.dir, { recursive: true, force: true });
    },
  };
}

// Browser helpers are shared with the demo's self-check (src/demo/browser.ts).
export { CHROMIUM, imageDrawn, launchChromium, pscLogin } from '../../src/demo/browser.js';
