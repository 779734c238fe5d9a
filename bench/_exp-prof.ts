import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dcmtk, freePort } from '../test/harness/peers.js';
const files = readdirSync('/tmp/exp/ct', { recursive: true, withFileTypes: true }).filter((d) => d.isFile() && d.name.endsWith('.dcm')).map((d) => path.join(d.parentPath, d.name));
const http = await freePort(); const dicom = await freePort();
const dir = mkdtempSync(path.join(tmpdir(), 'exp-'));
const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir=/tmp/exp/prof', '--import', 'tsx', 'src/cli.ts', 'start',], { env: { ...process.env, OPENDRIM_DATA_DIR: dir, OPENDRIM_HTTP_PORT: String(http), OPENDRIM_DICOM_PORT: String(dicom), OPENDRIM_HL7_PORT: '0', OPENDRIM_BIND: '127.0.0.1', OPENDRIM_ACCEPT_UNKNOWN_AE: 'true', OPENDRIM_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'inherit', 'inherit'] });
for (;;) { try { if ((await fetch(`http://127.0.0.1:${http}/health`)).ok) break; } catch {} await new Promise((r) => setTimeout(r, 50)); }
await new Promise((r) => setTimeout(r, 1000));
console.log('mark', Date.now());
for (let i = 0; i < Number(process.env.RUNS ?? 4); i++) { const t = Date.now(); const r = await dcmtk('storescu', ['-aec', 'OPENDRIM', '127.0.0.1', String(dicom), ...files], 600000); if (r.code) throw new Error(r.out); console.log('run', (Date.now() - t) / 1000); }
const exited = new Promise((r) => child.once('exit', r)); child.kill('SIGTERM'); await exited; rmSync(dir, { recursive: true, force: true });
