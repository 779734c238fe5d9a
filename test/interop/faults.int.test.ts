/**
 * Faults the node must survive without crashing, storing a broken object or losing an acknowledged one:
 * PostgreSQL connections killed during an ingest (DCMTK's storescu as the modality), and damaged objects (cut
 * files, lengths running past the data, Pixel Data shorter than the image) mixed with whole ones, by C-STORE and
 * STOW-RS.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { generateStudy } from '../harness/gen-study.js';
import { createPostgresDatabase, type TestDatabase } from '../harness/databases.js';
import { freePort, haveCommand, startOrthanc, type Orthanc } from '../harness/peers.js';
import { startTestNode } from '../harness/node.js';
import { associateRq, cStoreCommand, pdata, RawAssociation } from '../harness/raw-dicom.js';
import { le32 } from '../harness/raw-dataset.js';
import { pixelDataOffset } from '../../src/dicom/element-walk.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';

/** Every file under a directory (the node's storage), recursively. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

/** storescu's verdict per file, from its verbose log: which instances the node acknowledged. */
async function storescu(port: number, files: string[]): Promise<{ acknowledged: string[]; refused: number; code: number | null; log: string; ms: number }> {
  const t0 = Date.now();
  const child = spawn('storescu', ['-v', '-nh', '-aec', 'OPENDRIM', '-aet', 'STORESCU', '127.0.0.1', String(port), ...files], { env: { ...process.env, TCP_NODELAY: '1' } });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  const code = await new Promise<number | null>((r) => child.on('close', r));
  const acknowledged: string[] = [];
  let refused = 0;
  let current: string | undefined;
  for (const line of log.split('\n')) {
    const sending = /Sending file: (.+)$/.exec(line);
    if (sending) current = sending[1]!.trim();
    else if (/Received Store Response \(Success\)/.test(line) && current) acknowledged.push(current);
    else if (/Received Store Response/.test(line)) refused++;
  }
  return { acknowledged, refused, code, log, ms: Date.now() - t0 };
}

describe('faults', { skip: haveCommand('storescu') ? false : 'DCMTK is not installed' }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(path.join(tmpdir(), 'faults-'));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('PostgreSQL connections killed again and again during a 900-instance storescu send: the node stays up, every acknowledged instance is served, no orphan file', { skip: process.env.TEST_DATABASE_URL ? false : 'TEST_DATABASE_URL is not set', timeout: 300_000 }, async () => {
    let db: TestDatabase | undefined;
    let node: Awaited<ReturnType<typeof startTestNode>> | undefined;
    const admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    try {
      db = await createPostgresDatabase(process.env.TEST_DATABASE_URL!);
      node = await startTestNode({ peers: [{ aeTitle: 'STORESCU', host: '127.0.0.1', port: 104 }] }, db.url);
      const study = generateStudy({ out: path.join(work, 'pg'), modality: 'CT', series: 3, slices: 300, rows: 16, cols: 16 });
      await admin.connect();
      const dbName = new URL(db.url!).pathname.slice(1);
      let kills = 0;
      let stop = false;
      const killer = (async () => {
        while (!stop) {
          await new Promise((r) => setTimeout(r, 150));
          const r = await admin.query('select pg_terminate_backend(pid) as killed from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [dbName]);
          kills += r.rows.filter((x) => x.killed).length;
        }
      })();
      const sent = await storescu(node.dicomPort, study.files);
      stop = true;
      await killer;
      assert.ok(kills >= 5, `backends were killed during the send (${kills})`);
      const health = await fetch(`http://127.0.0.1:${node.httpPort}/health`);
      assert.equal(health.status, 200, 'the node is up and its database reachable again');
      assert.ok(sent.acknowledged.length > 0, 'some instances were stored');
      assert.equal(sent.acknowledged.length + sent.refused, study.files.length, 'every instance got an answer');
      // Every acknowledged instance is indexed and its bytes are served.
      const stored = new Set<string>();
      for (let offset = 0; ; offset += 1000) {
        const page = (await (await fetch(`http://127.0.0.1:${node.httpPort}/dicom-web/studies/${study.studyUid}/instances?limit=1000&offset=${offset}`)).json().catch(() => [])) as Array<Record<string, { Value?: string[] }>>;
        for (const i of page) stored.add(i['00080018']!.Value![0]!);
        if (page.length < 1000) break;
      }
      const sopOf = new Map(study.files.map((f, i) => [f, study.sopUids[i]!]));
      for (const f of sent.acknowledged) assert.ok(stored.has(sopOf.get(f)!), `acknowledged ${path.basename(f)} is indexed`);
      const sample = sent.acknowledged.filter((_, i) => i % 50 === 0);
      for (const f of sample) {
        const series = study.seriesUids.find((s) => readFileSync(f).includes(Buffer.from(s)))!;
        const r: Response = await fetch(`http://127.0.0.1:${node.httpPort}/dicom-web/studies/${study.studyUid}/series/${series}/instances/${sopOf.get(f)}`, { headers: { accept: 'multipart/related; type="application/dicom"' } });
        assert.equal(r.status, 200);
        assert.ok((await r.arrayBuffer()).byteLength > statSync(f).size - 1024, 'the bytes are served whole');
      }
      // No file in storage without its index row.
      const files = filesUnder(path.join(node.config.dataDir, 'storage')).filter((f) => f.endsWith('.dcm'));
      assert.equal(files.length, stored.size, `${files.length} files for ${stored.size} indexed instances`);
    } finally {
      await admin.end().catch(() => undefined);
      await node?.cleanup();
      await db?.drop();
    }
  });

  test('damaged objects among whole ones, by C-STORE and STOW-RS: every damaged one refused and not kept, every whole one stored', { timeout: 300_000 }, async () => {
    const node = await startTestNode({ peers: [{ aeTitle: 'RAW', host: '127.0.0.1', port: 104 }] });
    try {
      const good = generateStudy({ out: path.join(work, 'good'), modality: 'CT', series: 1, slices: 400, rows: 16, cols: 16 });
      const bad = generateStudy({ out: path.join(work, 'bad'), modality: 'CT', series: 1, slices: 600, rows: 16, cols: 16 });
      let seed = 42;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      /** 400 cut anywhere past the File Meta Information, 100 with a header length past the data, 100 with short Pixel Data. */
      const damaged = bad.files.map((f, i) => {
        const b = readFileSync(f);
        const px = pixelDataOffset(b)!;
        if (i < 400) return b.subarray(0, 200 + Math.floor(random() * (b.length - 201)));
        if (i < 500) {
          const m = Buffer.from(b);
          // (0010,0010) Patient's Name: a 2-byte length beyond what follows.
          const at = m.indexOf(Buffer.from([0x10, 0x00, 0x10, 0x00, 0x50, 0x4e]), 132);
          m.writeUInt16LE(Math.min(0xffff, m.length - at + 2 + Math.floor(random() * 1000)), at + 6);
          return m;
        }
        return Buffer.concat([b.subarray(0, px + 8), le32(64), b.subarray(px + 12, px + 12 + 64)]);
      });
      const datasetOf = (b: Buffer) => b.subarray(b.readUInt32LE(140) + 144);
      const mixed = [...good.files.map((f, i) => ({ bytes: readFileSync(f), sop: good.sopUids[i]!, whole: true })), ...damaged.map((b, i) => ({ bytes: b, sop: bad.sopUids[i]!, whole: false }))].sort(() => random() - 0.5);
      const cstore = mixed.slice(0, 500);
      const stow = mixed.slice(500);

      // C-STORE over one association, the data set bytes exactly as they are.
      const a = await RawAssociation.connect(node.dicomPort);
      a.send(associateRq('OPENDRIM', 'RAW', [{ id: 1, abstract: CT, syntaxes: [EXPLICIT] }], 65536));
      assert.ok(await a.waitFor((b) => b[0] === 0x02));
      const statuses: number[] = [];
      for (const [i, x] of cstore.entries()) {
        const before = a.data.length;
        a.send(pdata(1, true, true, cStoreCommand(CT, x.sop, i + 1)));
        const ds = datasetOf(x.bytes);
        for (let off = 0; off < ds.length; off += 16000) a.send(pdata(1, false, off + 16000 >= ds.length, ds.subarray(off, off + 16000)));
        if (!ds.length) a.send(pdata(1, false, true, Buffer.alloc(0)));
        const marker = Buffer.from([0x00, 0x00, 0x00, 0x09, 0x02, 0x00, 0x00, 0x00]);
        assert.ok(await a.waitFor((b) => b.indexOf(marker, before) >= 0, 10_000), `a response to instance ${i}`);
        statuses.push(a.data.readUInt16LE(a.data.indexOf(marker, before) + 8));
      }
      a.destroy();
      const wrong = cstore.map((x, i) => ({ x, s: statuses[i]! })).filter(({ x, s }) => (x.whole ? s !== 0 : s === 0));
      assert.deepEqual(wrong.map(({ x, s }) => `${x.whole ? 'whole' : 'damaged'} ${x.sop}: 0x${s.toString(16)}`), []);
      assert.ok(statuses.every((s, i) => cstore[i]!.whole || s === 0xc000), 'damaged objects get 0xC000');

      // STOW-RS, fifty parts per request.
      for (let i = 0; i < stow.length; i += 50) {
        const parts = stow.slice(i, i + 50);
        const boundary = `b${i}`;
        const body = Buffer.concat([...parts.flatMap((p) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), p.bytes, Buffer.from('\r\n')]), Buffer.from(`--${boundary}--\r\n`)]);
        const r = await fetch(`http://127.0.0.1:${node.httpPort}/dicom-web/studies`, { method: 'POST', headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: 'application/dicom+json' }, body });
        const answer = (await r.json()) as Record<string, { Value?: Array<Record<string, { Value?: unknown[] }>> }>;
        const failed = (answer['00081198']?.Value ?? []).length;
        const referenced = (answer['00081199']?.Value ?? []).map((x) => x['00081155']?.Value?.[0]);
        assert.equal(failed, parts.filter((p) => !p.whole).length, 'every damaged part listed as failed');
        assert.deepEqual(referenced.sort(), parts.filter((p) => p.whole).map((p) => p.sop).sort(), 'every whole part stored');
      }

      // What the index holds: exactly the whole objects.
      const indexed = new Set<string>();
      for (const studyUid of [good.studyUid, bad.studyUid]) {
        const list = (await (await fetch(`http://127.0.0.1:${node.httpPort}/dicom-web/studies/${studyUid}/instances?limit=2000`)).json().catch(() => [])) as Array<Record<string, { Value?: string[] }>>;
        for (const i of list) indexed.add(i['00080018']!.Value![0]!);
      }
      assert.equal(indexed.size, 400);
      assert.ok(good.sopUids.every((s) => indexed.has(s)));
      const kept = filesUnder(path.join(node.config.dataDir, 'storage')).filter((f) => f.endsWith('.dcm'));
      assert.equal(kept.length, 400, 'no damaged file kept in storage');
    } finally {
      await node.cleanup();
    }
  });

  test('a full disk: the sender is answered at once, nothing half stored, receiving refused until space returns, no audit record lost', { timeout: 300_000 }, async (t) => {
    const mnt = path.join(work, 'small-disk');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mnt], { stdio: 'ignore' });
    } catch {
      t.skip('mounting a tmpfs is not allowed here');
      return;
    }
    let node: Awaited<ReturnType<typeof startTestNode>> | undefined;
    try {
      const dataDir = path.join(mnt, 'data');
      node = await startTestNode({ dataDir, 'storage.minFreeMegabytes': 4, peers: [{ aeTitle: 'STORESCU', host: '127.0.0.1', port: 104 }] });
      const study = generateStudy({ out: path.join(work, 'big'), modality: 'CT', series: 1, slices: 40, rows: 512, cols: 512 });
      // Leave about 12 MB: room for some of the 40 half-megabyte instances, not for all.
      const freeNow = () => Number(execFileSync('df', ['--output=avail', '-B1', mnt], { encoding: 'utf8' }).split('\n')[1]);
      writeFileSync(path.join(mnt, 'ballast'), Buffer.alloc(freeNow() - 12 * 1048576));
      const sent = await storescu(node.dicomPort, study.files);
      assert.ok(sent.acknowledged.length > 5 && sent.acknowledged.length < 40, `some stored, the rest refused (${sent.acknowledged.length} stored)`);
      assert.equal(sent.acknowledged.length + sent.refused, 40, 'every instance answered on the association');
      assert.ok(sent.ms < 30_000, `answered at once, not at the idle timeout (${sent.ms} ms)`);
      assert.match(sent.log, /Refused: OutOfResources/);
      // Nothing half stored: every file in storage is indexed and whole; no temporary file is left.
      const listed = (await (await fetch(`http://127.0.0.1:${node.httpPort}/dicom-web/studies/${study.studyUid}/instances`)).json().catch(() => [])) as unknown[];
      const kept = filesUnder(path.join(dataDir, 'storage')).filter((f) => f.endsWith('.dcm'));
      assert.equal(kept.length, listed.length);
      assert.ok(kept.every((f) => statSync(f).size > 500_000), 'every kept file is whole');
      // Low space: /health says so, new associations and STOW requests are refused.
      const health = await fetch(`http://127.0.0.1:${node.httpPort}/health`);
      assert.equal(health.status, 503);
      assert.match(JSON.stringify(await health.json()), /below the 4 MB threshold/);
      const refused = await storescu(node.dicomPort, study.files.slice(0, 1));
      assert.match(refused.log, /Association Rejected|rejected/i);
      const stow = await fetch(`http://127.0.0.1:${node.httpPort}/dicom-web/studies`, { method: 'POST', headers: { 'content-type': 'multipart/related; type="application/dicom"; boundary=x' }, body: '--x--' });
      assert.equal(stow.status, 503);
      // Space freed: receiving resumes and the audit records of the refused association reach the trail.
      rmSync(path.join(mnt, 'ballast'));
      await node.space!.refresh();
      assert.equal((await fetch(`http://127.0.0.1:${node.httpPort}/health`)).status, 200);
      const again = await storescu(node.dicomPort, study.files.filter((f) => !sent.acknowledged.includes(f)));
      assert.equal(again.refused, 0);
      // A STOW-RS request that runs into the full disk halfway: answered at once, listing what was stored and what not.
      const more = generateStudy({ out: path.join(work, 'big-stow'), modality: 'CT', series: 1, slices: 24, rows: 512, cols: 512 });
      writeFileSync(path.join(mnt, 'ballast'), Buffer.alloc(freeNow() - 6 * 1048576));
      await node.space!.refresh();
      const boundary = 'stowfull';
      const body = Buffer.concat([...more.files.flatMap((f) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), readFileSync(f), Buffer.from('\r\n')]), Buffer.from(`--${boundary}--\r\n`)]);
      const t0 = Date.now();
      const partial = await fetch(`http://127.0.0.1:${node.httpPort}/dicom-web/studies`, { method: 'POST', headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: 'application/dicom+json' }, body });
      const answer = (await partial.json()) as Record<string, { Value?: Array<Record<string, { Value?: unknown[] }>> }>;
      assert.ok(Date.now() - t0 < 20_000, 'answered at once');
      assert.equal(partial.status, 202, 'partly stored');
      const storedParts = answer['00081199']?.Value?.length ?? 0;
      const failedParts = answer['00081198']?.Value ?? [];
      assert.ok(storedParts > 0 && failedParts.length > 0 && storedParts + failedParts.length === 24, `${storedParts} stored and ${failedParts.length} failed, all listed`);
      assert.ok(failedParts.every((f) => f['00081197']?.Value?.[0] === 0xa700), 'failed for lack of resources (A700)');
      rmSync(path.join(mnt, 'ballast'));
      await node.space!.refresh();
      for (let i = 0; i < 100 && node.audit.backlogSize > 0; i++) await new Promise((r) => setTimeout(r, 100));
      await node.audit.flush();
      assert.equal(node.audit.backlogSize, 0, 'every waiting audit record written');
      const stores = await node.audit.search({ action: 'dicom.store', limit: 100 });
      assert.ok(stores.some((r) => r.outcome !== 'success' || JSON.stringify(r.detail).includes('refused')), 'the refusals of the full disk are in the trail');
      assert.ok((await node.audit.verify()).ok, 'the trail is intact');
    } finally {
      await node?.cleanup();
      execFileSync('umount', [mnt]);
    }
  });

  /** A node in a process of its own (to be killed with SIGKILL), on the given ports and data directory. */
  async function nodeProcess(configFile: string, httpPort: number): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(process.cwd(), 'src/cli.ts'), 'start', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, OPENDRIM_LOG_LEVEL: 'warn' } });
    for (let i = 0; i < 300; i++) {
      if (child.exitCode !== null) throw new Error(`the node exited with ${child.exitCode}`);
      try {
        if ((await fetch(`http://127.0.0.1:${httpPort}/health`)).ok) return child;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGKILL');
    throw new Error('the node did not start');
  }

  for (const backend of ['sqlite', 'postgres'] as const) {
    test(`kill -9 in the middle of a routed transfer and restart at once (${backend}): it completes within a minute, every instance at the destination once`, { skip: backend === 'postgres' && !process.env.TEST_DATABASE_URL ? 'TEST_DATABASE_URL is not set' : !haveCommand('Orthanc') ? 'Orthanc is not installed' : false, timeout: 240_000 }, async () => {
      let a: Orthanc | undefined;
      let b: Orthanc | undefined;
      let child: ChildProcess | undefined;
      let db: TestDatabase | undefined;
      try {
        a = await startOrthanc({ name: `kill-a-${backend}`, aet: 'PACSA' });
        b = await startOrthanc({ name: `kill-b-${backend}`, aet: 'PACSB' });
        const study = generateStudy({ out: path.join(work, `kill-${backend}`), modality: 'CT', series: 2, slices: 300, rows: 64, cols: 64, studyDate: new Date().toISOString().slice(0, 10).replace(/-/g, '') });
        for (const f of study.files) await a.api('POST', '/instances', readFileSync(f));
        if (backend === 'postgres') db = await createPostgresDatabase(process.env.TEST_DATABASE_URL!);
        const [httpPort, dicomPort] = [await freePort(), await freePort()];
        const dataDir = path.join(work, `kill-node-${backend}`);
        const configFile = path.join(work, `kill-${backend}.json`);
        writeFileSync(configFile, JSON.stringify({
          aeTitle: 'OPENDRIM', bind: '127.0.0.1', httpPort, dicomPort, dataDir, ...(db ? { databaseUrl: db.url } : {}),
          hl7: { enabled: false },
          peers: [{ aeTitle: 'PACSA', host: '127.0.0.1', port: a.dicomPort }, { aeTitle: 'PACSB', host: '127.0.0.1', port: b.dicomPort }],
          routing: { pacs: 'PACSA', stableSeconds: 1, watch: { everySeconds: 1, lookbackDays: 1 }, destinations: [{ name: 'b', type: 'dicom', peer: 'PACSB' }], rules: [{ name: 'all', trigger: 'stable', destinations: ['b'] }] },
        }));
        child = await nodeProcess(configFile, httpPort);
        const transfers = async () => ((await (await fetch(`http://127.0.0.1:${httpPort}/api/routing/transfers`)).json()) as { transfers: Array<{ id: number; status: string; sent: number; total: number; updatedAt: string }> }).transfers;
        // Wait until the transfer is under way (bringing the study in, or sending it), then kill the node outright.
        let during: { status: string; sent: number } | undefined;
        for (let i = 0; i < 1200 && !during; i++) {
          const t = (await transfers().catch(() => []))[0];
          if (t?.status === 'sending') during = t;
          else await new Promise((r) => setTimeout(r, 25));
        }
        assert.ok(during, 'the transfer started');
        const arrivedBefore = Number((await b.api('GET', '/statistics')).CountInstances);
        child.kill('SIGKILL');
        await new Promise((r) => child!.once('exit', r));
        assert.ok(arrivedBefore < study.files.length, `killed mid-transfer (${arrivedBefore} of ${study.files.length} at the destination)`);
        const restartedAt = Date.now();
        child = await nodeProcess(configFile, httpPort);
        let done: { status: string } | undefined;
        while (!done && Date.now() - restartedAt < 60_000) {
          const list = await transfers().catch(() => []);
          done = list.find((t) => t.status === 'done');
          if (!done) await new Promise((r) => setTimeout(r, 200));
        }
        assert.ok(done, `the transfer completed within a minute of the restart (${JSON.stringify(await transfers())})`);
        const arrived = (await b.api('POST', '/tools/find', { Level: 'Instance', Query: { StudyInstanceUID: study.studyUid }, Expand: true })) as Array<{ MainDicomTags: { SOPInstanceUID: string } }>;
        const sops = arrived.map((x) => x.MainDicomTags.SOPInstanceUID);
        assert.equal(new Set(sops).size, sops.length, 'no instance twice');
        assert.deepEqual([...sops].sort(), [...study.sopUids].sort(), 'every instance at the destination');
      } finally {
        if (child && child.exitCode === null) {
          child.kill('SIGTERM');
          await new Promise((r) => child!.once('exit', r));
        }
        await a?.stop();
        await b?.stop();
        await db?.drop();
      }
    });
  }
});
