/**
 * npm run bench:prefetch — a simulated day: BENCH_APPOINTMENTS (default 200) appointments at "Cabinet B" whose
 * priors are held by two source DRIMboxes ("CHU A1", "CHU A2", each with Orthanc as its PACS), reached through a
 * simulated WAN (TCP proxy: 20 ms one way, 100 Mbit/s per link) while B caps each site at 80 Mbit/s. The RIS books
 * the day (SIU over MLLP, starts spread over the next 12 hours, lead time 12 hours, so everything is due now and
 * the day is compressed into one run). Prints the share of appointments ready before their time, bytes moved,
 * wall time and the throughput against the configured caps. Asserts nothing (performance is not a test).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { CompactSign, exportSPKI, generateKeyPair } from 'jose';
import { generateStudy } from '../test/harness/gen-study.js';
import { freePort, startOrthanc, type Orthanc } from '../test/harness/peers.js';
import { startTestNode } from '../test/harness/node.js';
import { issueBoxCertificate, makeTestPki } from '../test/harness/certs.js';
import { startWanProcess, type Wan } from '../test/harness/wan.js';
import { createLogger } from '../src/common/log.js';
import { mtlsFetch } from '../src/common/mtls-fetch.js';
import { sendMllp } from '../src/hl7/mllp.js';
import { parseMessage } from '../src/hl7/message.js';
import { DmpServer } from '../src/simulators/dmp/server.js';
import { imagingReportCda, oruR01 } from '../src/simulators/ris/reports.js';
import { siu } from '../src/simulators/ris/schedule.js';

const N = Number(process.env.BENCH_APPOINTMENTS ?? 200);
const WAN = { latencyMs: 20, mbps: Number(process.env.BENCH_LINK_MBPS ?? 100) };
const CAP_MBPS = Number(process.env.BENCH_CAP_MBPS ?? 80);
/** Busy and total jiffies of all CPUs (/proc/stat), to tell whether the machine rather than the links set the pace. */
const cpuTimes = () => {
  const [, ...f] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
  const idle = f[3]! + f[4]!;
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
};
// Imports at once per site: enough to keep a link busy while other steps of each import (PACS, C-STORE) run.
const PER_SITE = Number(process.env.BENCH_PER_SITE ?? 8);
const work = mkdtempSync(path.join(tmpdir(), 'bench-prefetch-'));
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const stops: Array<() => Promise<unknown>> = [];
const ins = (k: number) => {
  const body = 2800175000000n + BigInt(k);
  return `${body}${String(97n - (body % 97n)).padStart(2, '0')}`;
};

try {
  const pki = makeTestPki();
  stops.push(async () => rmSync(pki.dir, { recursive: true, force: true }));
  const boxes = ['a1', 'a2', 'b'].map((n) => issueBoxCertificate(pki, `drimbox.${n}.test`, n.toUpperCase()));
  const authority = await generateKeyPair('ES256', { extractable: true });
  writeFileSync(path.join(work, 'authority.pem'), await exportSPKI(authority.publicKey));
  const trust = { issuer: 'ANS (test)', issuedAt: new Date().toISOString(), version: 1, entries: boxes.map((b, i) => ({ domain: `drimbox.${['a1', 'a2', 'b'][i]}.test`, subjectDn: b.subjectDn })) };
  writeFileSync(path.join(work, 'trust.jws'), await new CompactSign(new TextEncoder().encode(JSON.stringify(trust))).setProtectedHeader({ alg: 'ES256' }).sign(authority.privateKey));
  const trustList = { file: path.join(work, 'trust.jws'), authority: path.join(work, 'authority.pem') };
  const dmp = await new DmpServer({ host: '127.0.0.1', port: 0, dataDir: path.join(work, 'dmp'), log: createLogger('silent') }).start();
  stops.push(() => dmp.close());
  const dmpUrls = { registryUrl: `${dmp.url}/registry`, repositoryUrl: `${dmp.url}/repository` };

  // Two source boxes, each in its own process (as on its own machine) and behind its own WAN link.
  const sources: Array<{ hl7Port: number; orthanc: Orthanc; wan: Wan; origin: string }> = [];
  for (const [i, name] of ['a1', 'a2'].entries()) {
    const orthanc = await startOrthanc({ name: `pacs-${name}`, aet: `PACS${i + 1}` });
    stops.push(() => orthanc.stop());
    const [exchangePort, httpPort, dicomPort, dicomTlsPort, hl7Port] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const wan = await startWanProcess({ host: '127.0.0.1', port: exchangePort }, WAN);
    stops.push(() => wan.close());
    const origin = `https://127.0.0.1:${wan.port}`;
    const dataDir = path.join(work, `node-${name}`);
    const config = { aeTitle: `DRIMBOX${i + 1}`, bind: '127.0.0.1', httpPort, dicomPort, dicomTlsPort, dataDir, logLevel: 'warn', storage: { fsync: false }, hl7: { port: hl7Port }, tls: { cert: boxes[i]!.cert, key: boxes[i]!.key, ca: pki.ca }, exchange: { port: exchangePort, publicUrl: origin, domain: `drimbox.${name}.test`, trustList }, peers: [{ aeTitle: `PACS${i + 1}`, host: '127.0.0.1', port: orthanc.dicomPort }], source: { pacs: `PACS${i + 1}`, dmp: dmpUrls, organisation: { finess: `75071218${i}`, name: `CHU ${name.toUpperCase()}` } } };
    writeFileSync(path.join(work, `${name}.json`), JSON.stringify(config));
    const child = spawn(process.execPath, [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []), '--import', 'tsx', path.join(root, 'src/cli.ts'), 'start', '--config', path.join(work, `${name}.json`)], { cwd: root, env: { ...process.env }, stdio: ['ignore', 'ignore', 'inherit'] });
    stops.push(async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    });
    const https = mtlsFetch({ cert: readFileSync(boxes[i]!.cert), key: readFileSync(boxes[i]!.key), ca: readFileSync(pki.ca) });
    for (let t = 0; ; t++) {
      if (await https(`https://127.0.0.1:${httpPort}/health`).then((r) => r.ok, () => false)) break;
      if (t > 300) throw new Error(`source box ${name} did not start`);
      await new Promise((r) => setTimeout(r, 100));
    }
    sources.push({ hl7Port, orthanc, wan, origin });
  }

  // One prior per patient, on A1 or A2 alternately; published to the DMP by each source's RIS.
  console.log(`generating and publishing ${N} priors…`);
  let priorBytes = 0;
  for (let k = 0; k < N; k++) {
    const src = sources[k % 2]!;
    const study = generateStudy({ out: path.join(work, `s${k}`), modality: 'CT', series: 1, slices: 10, rows: 256, cols: 256, patientId: ins(k), patientName: `PATIENT${k}^TEST`, accession: `ACC-${k}`, studyDate: '20250310' });
    priorBytes += study.bytes;
    for (const f of study.files) await src.orthanc.api('POST', '/instances', readFileSync(f));
    rmSync(path.join(work, `s${k}`), { recursive: true, force: true });
    const spec = { ins: ins(k), ipp: `IPP-A-${k}`, family: `PATIENT${k}`, given: 'TEST', birthDate: '19800615', sex: 'F' as const, studyUid: study.studyUid, accessionNumber: `ACC-${k}`, setId: `B1C2D3E4-0000-4000-8000-${String(k).padStart(12, '0')}`, version: 1, effectiveTime: '20250310113000+0100', examCode: { code: 'ZBQK002', display: 'Scanographie du thorax' } };
    const ack = parseMessage(await sendMllp('127.0.0.1', src.hl7Port, oruR01(spec, imagingReportCda(spec))));
    if (ack.segment('MSA')!.get(1) !== 'AA') throw new Error(`publication ${k} refused: ${ack.segment('ERR')?.get(8)}`);
  }

  const pacsB = await startOrthanc({ name: 'pacs-b', aet: 'PACSB' });
  stops.push(() => pacsB.stop());
  const b = await startTestNode({
    aeTitle: 'DRIMBOXB',
    publicUrl: 'https://127.0.0.1:1',
    dicomTlsPort: 0,
    'storage.fsync': false,
    tls: { cert: boxes[2]!.cert, key: boxes[2]!.key, ca: pki.ca },
    exchange: { port: 0, domain: 'drimbox.b.test', trustList },
    peers: [{ aeTitle: 'PACSB', host: '127.0.0.1', port: pacsB.dicomPort }],
    consumer: {
      psc: { issuer: 'https://127.0.0.1:9/unused', clientId: 'unused', clientSecret: 'unused' },
      dmp: dmpUrls,
      sources: sources.map((s) => ({ origin: s.origin, maxMbps: CAP_MBPS, maxConcurrent: PER_SITE })),
      import: { pacs: 'PACSB', issuer: 'CABINET-B', parallel: PER_SITE * 2 },
    },
    prefetch: { onBehalfOf: { id: '8899700218896' }, pollSeconds: 1, rules: [{ name: 'CT', match: { modality: 'CT' }, priors: { modalities: ['same'], lookbackDays: 3650, maxStudies: 3 }, leadHours: 12 }] },
  });
  stops.push(() => b.cleanup());

  console.log(`booking ${N} appointments…`);
  const t0 = Date.now();
  const cpu0 = cpuTimes();
  for (let k = 0; k < N; k++) {
    const start = new Date(t0 + 3600_000 + (k / N) * 11 * 3600_000);
    const r = parseMessage(await sendMllp('127.0.0.1', b.hl7Port!, siu('S12', { appointmentId: `RDV-${k}`, ins: ins(k), ipp: `IPP-B-${k}`, family: `PATIENT${k}`, given: 'TEST', birthDate: '19800615', sex: 'F', start, modality: 'CT', procedure: { code: 'ZBQK002', text: 'Scanographie du thorax' } })));
    if (r.segment('MSA')!.get(1) !== 'AA') throw new Error(`SIU ${k} refused: ${r.segment('ERR')?.get(8)}`);
  }
  const horizon = { from: new Date(t0), to: new Date(t0 + 13 * 3600_000) };
  const timeline: string[] = [];
  let lastDown = 0;
  let lastAt = Date.now();
  for (;;) {
    const list = await b.prefetcher!.list(horizon);
    const open = list.filter((a) => !['ready', 'nothing', 'failed'].includes(a.state)).length;
    // The timeline reads every job each second on the consumer box's event loop: only when asked for.
    if (process.env.BENCH_TIMELINE) {
      const downNow = sources.reduce((n, s) => n + s.wan.bytes.down, 0);
      const jobsNow = await b.imports!.list(10_000);
      const byStatus = jobsNow.reduce<Record<string, number>>((m, j) => ((m[j.status] = (m[j.status] ?? 0) + 1), m), {});
      const states = list.reduce<Record<string, number>>((m, a) => ((m[a.state] = (m[a.state] ?? 0) + 1), m), {});
      timeline.push(`${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s  ${(((downNow - lastDown) * 8) / 1e6 / ((Date.now() - lastAt) / 1000)).toFixed(0).padStart(4)} Mbit/s  appointments ${JSON.stringify(states)}  imports ${JSON.stringify(byStatus)}`);
      lastDown = downNow;
      lastAt = Date.now();
    }
    process.stdout.write(`\r${list.length - open}/${list.length} appointments settled, ${(Date.now() - t0) / 1000 | 0} s   `);
    if (!open && list.length === N) break;
    if (Date.now() - t0 > 60 * 60_000) throw new Error('not settled after an hour');
    await new Promise((r) => setTimeout(r, 1000));
  }
  const wall = (Date.now() - t0) / 1000;
  const cpu1 = cpuTimes();
  const cpuBusy = (cpu1.busy - cpu0.busy) / (cpu1.total - cpu0.total);
  const list = await b.prefetcher!.list(horizon);
  const jobs = await b.imports!.list(10_000);
  const firstStart = Math.min(...jobs.map((j) => Date.parse(j.createdAt)));
  const lastDone = Math.max(...jobs.map((j) => Date.parse(j.updatedAt)));
  const transferSeconds = (lastDone - firstStart) / 1000;
  const down = sources.reduce((n, s) => n + s.wan.bytes.down, 0);
  const ready = await b.prefetcher!.readyBeforeStart(horizon.from, horizon.to);
  const mbps = (down * 8) / 1e6 / transferSeconds;
  const cap = CAP_MBPS * sources.length;
  console.log('\n');
  if (process.env.BENCH_TIMELINE) console.log(timeline.join('\n'));
  console.log('| measure | value |');
  console.log('| --- | --- |');
  console.log(`| appointments (CT, priors on 2 source boxes) | ${N} |`);
  console.log(`| ready before their time (lead 12 h) | ${ready.ready}/${ready.appointments} (${(ready.share * 100).toFixed(1)} %) |`);
  console.log(`| states | ${Object.entries(list.reduce<Record<string, number>>((m, a) => ((m[a.state] = (m[a.state] ?? 0) + 1), m), {})).map(([k, v]) => `${k} ${v}`).join(', ')} |`);
  console.log(`| priors at the sources | ${(priorBytes / 1e6).toFixed(0)} MB |`);
  console.log(`| bytes over the WAN links (to B) | ${(down / 1e6).toFixed(0)} MB |`);
  console.log(`| wall time from the first SIU to all settled | ${wall.toFixed(1)} s |`);
  console.log(`| transfer time (first import queued to last done) | ${transferSeconds.toFixed(1)} s |`);
  console.log(`| CPU busy on this ${availableParallelism()}-core machine (all boxes, PACS and links), first SIU to settled | ${(cpuBusy * 100).toFixed(0)} % |`);
  console.log(`| throughput over both links | ${mbps.toFixed(1)} Mbit/s = ${((mbps / cap) * 100).toFixed(0)} % of the configured caps (${sources.length} × ${CAP_MBPS} Mbit/s; links ${WAN.mbps} Mbit/s, ${WAN.latencyMs} ms) |`);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
