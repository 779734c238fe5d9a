import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { generateStudy } from '../test/harness/gen-study.js';
import { haveCommand, startStorescp } from '../test/harness/peers.js';
import { startTestNode } from '../test/harness/node.js';

const execFileP = promisify(execFile);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli.ts'), ...args], { cwd: root, env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('opendrim CLI', () => {
  test('--help and --version', async () => {
    const h = await cli(['--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /Usage: opendrim <command>/);
    assert.match((await cli(['--version'])).stdout, /^\d+\.\d+\.\d+/);
  });

  test('config shows the effective configuration; a bad value names its key and exits 2', async () => {
    const ok = await cli(['config'], { OPENDRIM_HTTP_PORT: '9999', OPENDRIM_PEERS: 'PACS@127.0.0.1:4242' });
    assert.equal(ok.code, 0);
    const cfg = JSON.parse(ok.stdout);
    assert.equal(cfg.httpPort, 9999);
    assert.equal(cfg.peers[0].aeTitle, 'PACS');
    // The database password in DATABASE_URL is not printed.
    const secret = await cli(['config'], { DATABASE_URL: 'postgres://opendrim:S3cretPw@db.example:5432/opendrim' });
    assert.equal(secret.code, 0);
    assert.ok(!secret.stdout.includes('S3cretPw'), 'password masked');
    assert.match(JSON.parse(secret.stdout).databaseUrl, /^postgres:\/\/opendrim:\*+@db\.example:5432\/opendrim$/);
    const dir = mkdtempSync(path.join(tmpdir(), 'cli-'));
    writeFileSync(path.join(dir, 'bad.yaml'), 'dicom:\n  maxPduLength: lots\n');
    const bad = await cli(['--config', path.join(dir, 'bad.yaml'), 'config']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /dicom\.maxPduLength/);
    const unknown = await cli(['frobnicate']);
    assert.equal(unknown.code, 2);
    // A negative port is told by the port's rule, naming the key.
    const negative = await cli(['config'], { OPENDRIM_DICOM_PORT: '-1' });
    assert.equal(negative.code, 2);
    assert.match(negative.stderr, /dicomPort: .*>=0/);
  });

  test('a database that cannot be reached is named as such, not as a failed migration', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cli-db-'));
    const r = await cli(['start'], { DATABASE_URL: 'postgres://opendrim@127.0.0.1:9/opendrim', OPENDRIM_DATA_DIR: dir, OPENDRIM_LOG_LEVEL: 'fatal' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the database could not be reached \(nothing listens there.*check DATABASE_URL/);
    rmSync(dir, { recursive: true, force: true });
  });

  test('generate writes a study whose patient, INS and description are the ones asked for', async () => {
    const out = mkdtempSync(path.join(tmpdir(), 'cli-gen-'));
    const r = await cli(['generate', '--out', out, '--slices', '2', '--patient-id', 'P0001', '--patient-name', 'DUPONT^MARIE', '--ins', '279035121518989', '--description', 'TDM THORAX']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^2 instances .* written to /);
    const file = readFileSync(path.join(out, readdirSync(out).sort()[0]!));
    for (const v of ['P0001', 'DUPONT^MARIE', '279035121518989', 'TDM THORAX']) assert.ok(file.includes(Buffer.from(v)), `${v} in the files`);
    assert.equal((await cli(['generate', '--out', out, '--modality', 'XX'])).code, 2);
    rmSync(out, { recursive: true, force: true });
  });

  test('start with a YAML file: serves health, then stops cleanly on SIGTERM', async () => {
    const { spawn } = await import('node:child_process');
    const { freePort } = await import('../test/harness/peers.js');
    const dir = mkdtempSync(path.join(tmpdir(), 'cli-start-'));
    const http = await freePort();
    const dicom = await freePort();
    writeFileSync(path.join(dir, 'opendrim.yaml'), `httpPort: ${http}\ndicomPort: ${dicom}\nhl7:\n  port: 0\nbind: 127.0.0.1\ndataDir: ${dir}/data\nlogLevel: warn\n`);
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli.ts'), 'start', '--config', path.join(dir, 'opendrim.yaml')], { cwd: root, stdio: 'ignore' });
    try {
      let health: Response | undefined;
      for (let i = 0; i < 200 && !health; i++) {
        health = await fetch(`http://127.0.0.1:${http}/health`).catch(() => undefined);
        if (!health) await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(health?.status, 200);
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  describe('against a running node', { skip: haveCommand('storescp') ? false : 'DCMTK not installed' }, () => {
    let node: Awaited<ReturnType<typeof startTestNode>>;
    let sink: Awaited<ReturnType<typeof startStorescp>>;
    let dataDir: string;
    before(async () => {
      sink = await startStorescp('SINK');
      node = await startTestNode({ dicom: { acceptUnknownCallingAe: true, checkCalledAe: true, maxPduLength: 262144, maxAssociations: 8, idleTimeoutMs: 30000, maxFindResults: 100 } });
      dataDir = mkdtempSync(path.join(tmpdir(), 'cli-data-'));
    });
    after(async () => {
      await node?.cleanup();
      await sink?.stop();
    });

    test('echo, import, send and find', async () => {
      const peer = `OPENDRIM@127.0.0.1:${node.dicomPort}`;
      const e = await cli(['echo', peer]);
      assert.equal(e.code, 0, e.stderr);
      assert.match(e.stdout, /success/);
      const study = generateStudy({ out: mkdtempSync(path.join(tmpdir(), 'cli-study-')), slices: 3, rows: 32 });
      writeFileSync(path.join(path.dirname(study.files[0]!), 'README.txt'), 'not dicom');
      const imp = await cli(['import', path.dirname(study.files[0]!)], { OPENDRIM_DATA_DIR: dataDir });
      assert.equal(imp.code, 0, imp.stderr);
      assert.match(imp.stdout, /3 new, 0 replaced, 0 already present, 1 refused/);
      const send = await cli(['send', study.studyUid, `SINK@127.0.0.1:${sink.port}`], { OPENDRIM_DATA_DIR: dataDir });
      assert.equal(send.code, 0, send.stderr);
      assert.equal(readdirSync(sink.dir).length, 3);
      const sendToNode = await cli(['send', study.studyUid, peer], { OPENDRIM_DATA_DIR: dataDir });
      assert.equal(sendToNode.code, 0, sendToNode.stderr);
      const f = await cli(['find', peer, `StudyInstanceUID=${study.studyUid}`, '--json']);
      assert.equal(f.code, 0, f.stderr);
      assert.equal(JSON.parse(f.stdout).length, 1);
      // For people: a table with a header line and one line per study.
      const table = await cli(['find', peer, `StudyInstanceUID=${study.studyUid}`]);
      assert.equal(table.code, 0, table.stderr);
      const lines = table.stdout.trim().split('\n');
      assert.match(lines[0]!, /^Date\s+Patient ID\s+Patient\s+Modalities\s+Description\s+Accession\s+Study Instance UID$/);
      assert.equal(lines.length, 2);
      assert.ok(lines[1]!.includes(study.studyUid));
      assert.match(table.stderr, /^1 study/);
      // A C-MOVE to a destination the peer does not know is told in words, with its status.
      const mv = await cli(['move', peer, study.studyUid, 'NOWHERE']);
      assert.equal(mv.code, 1);
      assert.match(mv.stdout, /C-MOVE of study .* to NOWHERE: 0 sent, 0 failed, 0 with warnings — refused: the peer does not know the destination AE title \(status 0xA801\)/);
      const down = await cli(['echo', 'NOBODY@127.0.0.1:1']);
      assert.equal(down.code, 1);
      assert.match(down.stderr, /NOBODY/);
      assert.match(down.stderr, /this command calls as OPENDRIM/, 'says which AE title the CLI calls as');
    });
  });
});
