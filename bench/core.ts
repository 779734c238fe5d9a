/**
 * npm run bench — OpenDRIM beside Orthanc, same machine, same run, same generated 300-slice 512x512 CT:
 *   ingest   storescu -> node (TCP_NODELAY=1 for DCMTK and Orthanc), median of BENCH_RUNS (3) runs, fresh storage each run;
 *            with a sync to disk per instance (OpenDRIM's default, and Orthanc 1.10's SyncStorageArea default) and
 *            without (storage.fsync=false against Orthanc with SyncStorageArea=false). Each server first receives
 *            another, 100-slice study (timed too: the first study after start), so the CT measures a server in
 *            its steady state: OpenDRIM's JavaScript is compiled as it runs, and a hospital's node runs for months.
 *   retrieve WADO-RS whole study (multipart/related application/dicom) read to the end, median of the runs
 *   memory   OpenDRIM's peak RSS (VmHWM) while ingesting a ~1 GB study
 * Prints figures and ratios; asserts nothing (performance is not a test).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateStudy } from '../test/harness/gen-study.js';
import { dcmtk, freePort, startOrthanc } from '../test/harness/peers.js';

const execFileP = promisify(execFile);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (s: number) => `${s.toFixed(3)} s`;

interface RunningNode {
  child: ChildProcess;
  http: number;
  dicom: number;
  dir: string;
  stop(): Promise<void>;
  peakRssMb(): number;
}

async function startOpenDrim(extraEnv: Record<string, string> = {}): Promise<RunningNode> {
  const http = await freePort();
  const dicom = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-opendrim-'));
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli.ts'), 'start'], {
    cwd: root,
    env: { ...process.env, OPENDRIM_DATA_DIR: dir, OPENDRIM_HTTP_PORT: String(http), OPENDRIM_DICOM_PORT: String(dicom), OPENDRIM_HL7_PORT: '0', OPENDRIM_BIND: '127.0.0.1', OPENDRIM_ACCEPT_UNKNOWN_AE: 'true', OPENDRIM_LOG_LEVEL: 'warn', ...extraEnv },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${http}/health`)).ok) break;
    } catch {
      /* not up yet */
    }
    if (i > 200) throw new Error('OpenDRIM did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    http,
    dicom,
    dir,
    peakRssMb: () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function timeStorescu(aec: string, port: number, files: string[]): Promise<number> {
  const t = process.hrtime.bigint();
  const r = await dcmtk('storescu', ['-aec', aec, '127.0.0.1', String(port), ...files], 600_000);
  if (r.code !== 0) throw new Error(`storescu failed: ${r.out.slice(0, 500)}`);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** curl, as the lab's reference figures use: a Node fetch client would measure itself more than the servers. */
async function timeWado(url: string): Promise<{ s: number; bytes: number }> {
  const { stdout } = await execFileP('curl', ['-s', '-f', '-o', '/dev/null', '-w', '%{time_total} %{size_download}', '-H', 'Accept: multipart/related; type="application/dicom"', url]);
  const [s, bytes] = stdout.trim().split(' ').map(Number);
  return { s: s!, bytes: bytes! };
}

const work = mkdtempSync(path.join(tmpdir(), 'bench-'));
try {
  console.log('generating a 300-slice 512x512 16-bit CT ...');
  const ct = generateStudy({ out: path.join(work, 'ct'), modality: 'CT', series: 1, slices: 300, rows: 512 });
  console.log(`  ${ct.files.length} files, ${(ct.bytes / 1e6).toFixed(0)} MB`);

  const first = generateStudy({ out: path.join(work, 'first'), modality: 'CT', series: 1, slices: 100, rows: 512 });
  const ingest = { opendrim: [] as number[], nosync: [] as number[], orthanc: [] as number[], orthancNosync: [] as number[] };
  const firstStudy = { opendrim: [] as number[], orthanc: [] as number[] };
  const wado = { opendrim: [] as number[], orthanc: [] as number[] };
  // Dirty pages left by one measurement (a run without sync, a deleted data folder) are written back before the
  // next starts, so no measurement pays for another's writeback.
  const settle = () => execFileP('sync');
  const runs = Number(process.env.BENCH_RUNS ?? 3);
  // Background work a server starts after a study (index checkpoints, writeback) is left to finish before the CT.
  const pause = () => new Promise((r) => setTimeout(r, 1000));
  /** The first study, a pause, then the CT timed: for the servers started for one measurement only. */
  const ctAfterFirst = async (aet: string, port: number) => {
    await timeStorescu(aet, port, first.files);
    await pause();
    await settle();
    return timeStorescu(aet, port, ct.files);
  };
  for (let run = 0; run < runs; run++) {
    const node = await startOpenDrim();
    const orthanc = await startOrthanc({ name: `bench${run}`, aet: 'ORTHANC' });
    try {
      await settle();
      firstStudy.opendrim.push(await timeStorescu('OPENDRIM', node.dicom, first.files));
      await settle();
      firstStudy.orthanc.push(await timeStorescu('ORTHANC', orthanc.dicomPort, first.files));
      await pause();
      await settle();
      ingest.opendrim.push(await timeStorescu('OPENDRIM', node.dicom, ct.files));
      await settle();
      ingest.orthanc.push(await timeStorescu('ORTHANC', orthanc.dicomPort, ct.files));
      await settle();
      wado.opendrim.push((await timeWado(`http://127.0.0.1:${node.http}/dicom-web/studies/${ct.studyUid}`)).s);
      wado.orthanc.push((await timeWado(`${orthanc.url}/dicom-web/studies/${ct.studyUid}`)).s);
    } finally {
      await node.stop();
      await orthanc.stop();
    }
    const fast = await startOpenDrim({ OPENDRIM_FSYNC: 'false' });
    try {
      ingest.nosync.push(await ctAfterFirst('OPENDRIM', fast.dicom));
    } finally {
      await fast.stop();
    }
    const orthancFast = await startOrthanc({ name: `bench-nosync${run}`, aet: 'ORTHANC', settings: { SyncStorageArea: false } });
    try {
      ingest.orthancNosync.push(await ctAfterFirst('ORTHANC', orthancFast.dicomPort));
    } finally {
      await orthancFast.stop();
    }
  }

  console.log('generating a ~1 GB study (4 x 512 slices) for the memory measurement ...');
  const big = generateStudy({ out: path.join(work, 'big'), modality: 'CT', series: 4, slices: 512, rows: 512 });
  rmSync(path.join(work, 'ct'), { recursive: true, force: true });
  const node = await startOpenDrim();
  let bigSeconds = 0;
  let rss = 0;
  try {
    bigSeconds = await timeStorescu('OPENDRIM', node.dicom, big.files);
    rss = node.peakRssMb();
  } finally {
    await node.stop();
  }

  const o = median(ingest.opendrim);
  const r = median(ingest.orthanc);
  const wo = median(wado.opendrim);
  const wr = median(wado.orthanc);
  console.log('');
  console.log(`| measure (300-slice CT, ${(ct.bytes / 1e6).toFixed(0)} MB, median of ${runs}) | OpenDRIM | Orthanc ${'1.10'} | Orthanc / OpenDRIM |`);
  console.log('| --- | --- | --- | --- |');
  const n = median(ingest.nosync);
  const rn = median(ingest.orthancNosync);
  console.log(`| storescu ingest, sync to disk per instance (both defaults) | ${fmt(o)} | ${fmt(r)} | ${(r / o).toFixed(2)}x |`);
  console.log(`| storescu ingest, no sync (storage.fsync=false; Orthanc SyncStorageArea=false) | ${fmt(n)} | ${fmt(rn)} | ${(rn / n).toFixed(2)}x |`);
  console.log(`| WADO-RS whole-study retrieve | ${fmt(wo)} | ${fmt(wr)} | ${(wr / wo).toFixed(2)}x |`);
  const fo = median(firstStudy.opendrim);
  const fr = median(firstStudy.orthanc);
  console.log(`| first study after start (100 slices, sync per instance) | ${fmt(fo)} | ${fmt(fr)} | ${(fr / fo).toFixed(2)}x |`);
  console.log('');
  console.log(`ingest runs (s): OpenDRIM ${ingest.opendrim.map((x) => x.toFixed(3)).join(', ')}; OpenDRIM without fsync ${ingest.nosync.map((x) => x.toFixed(3)).join(', ')}; Orthanc ${ingest.orthanc.map((x) => x.toFixed(3)).join(', ')}; Orthanc without sync ${ingest.orthancNosync.map((x) => x.toFixed(3)).join(', ')}`);
  console.log(`first-study runs (s): OpenDRIM ${firstStudy.opendrim.map((x) => x.toFixed(3)).join(', ')}; Orthanc ${firstStudy.orthanc.map((x) => x.toFixed(3)).join(', ')}`);
  console.log(`retrieve runs (s): OpenDRIM ${wado.opendrim.map((x) => x.toFixed(3)).join(', ')}; Orthanc ${wado.orthanc.map((x) => x.toFixed(3)).join(', ')}`);
  console.log(`OpenDRIM peak RSS while ingesting ${(big.bytes / 1e9).toFixed(2)} GB (${big.files.length} instances, ${bigSeconds.toFixed(1)} s): ${rss.toFixed(0)} MB`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
