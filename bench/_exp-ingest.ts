import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateStudy } from '../test/harness/gen-study.js';
import { dcmtk, freePort } from '../test/harness/peers.js';
const root = process.cwd();
const ctDir = '/tmp/exp/ct';
const ct = existsSync(ctDir + '/done') ? null : generateStudy({ out: ctDir, modality: 'CT', series: 1, slices: 300, rows: 512 });
if (ct) (await import('node:fs')).writeFileSync(ctDir + '/done', '');
const files = (await import('node:fs')).readdirSync(ctDir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile() && d.name.endsWith('.dcm')).map((d) => path.join(d.parentPath ?? (d as any).path, d.name));
const extra = process.argv.slice(2);
const env: Record<string, string> = {};
for (const e of extra.filter((x) => x.includes('='))) { const [k, v] = e.split('='); env[k!] = v!; }
const nodeArgs = extra.filter((x) => x.startsWith('--'));
const times: number[] = [];
for (let i = 0; i < Number(process.env.RUNS ?? 4); i++) {
const http = await freePort(); const dicom = await freePort();
const dir = mkdtempSync(path.join(tmpdir(), 'exp-'));
const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'src/cli.ts', 'start'], { cwd: root, env: { ...process.env, OPENDRIM_DATA_DIR: dir, OPENDRIM_HTTP_PORT: String(http), OPENDRIM_DICOM_PORT: String(dicom), OPENDRIM_HL7_PORT: '0', OPENDRIM_BIND: '127.0.0.1', OPENDRIM_ACCEPT_UNKNOWN_AE: 'true', OPENDRIM_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'inherit', 'inherit'] });
for (;;) { try { if ((await fetch(`http://127.0.0.1:${http}/health`)).ok) break; } catch {} await new Promise((r) => setTimeout(r, 50)); }
  const snap = () => { const m = new Map<string, number[]>(); for (const tid of (require('node:fs') as typeof import('node:fs')).readdirSync(`/proc/${child.pid}/task`)) { const f = (require('node:fs') as typeof import('node:fs')).readFileSync(`/proc/${child.pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' '); m.set(tid, [Number(f[11]), Number(f[12])]); } return m; };
  const s0 = snap();
  const cpu0 = (await import('node:fs')).readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const t = process.hrtime.bigint();
  const r = await dcmtk('storescu', ['-aec', 'OPENDRIM', '127.0.0.1', String(dicom), ...files], 600000);
  if (r.code !== 0) throw new Error(r.out);
  times.push(Number(process.hrtime.bigint() - t) / 1e9);
  const cpu1 = (await import('node:fs')).readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  { const s1 = snap(); for (const [tid, v] of s1) { const a = s0.get(tid) ?? [0, 0]; const u = v[0]! - a[0]!, y = v[1]! - a[1]!; if (u + y > 1) console.log('  thread', tid, 'user', u / 100, 'sys', y / 100); } }
  console.log('node cpu user', (Number(cpu1[11]) - Number(cpu0[11])) / 100, 'sys', (Number(cpu1[12]) - Number(cpu0[12])) / 100);
const exited = new Promise((r) => child.once('exit', r)); child.kill('SIGTERM'); await exited; rmSync(dir, { recursive: true, force: true });
}
console.log(files.length, 'files; runs', times.map((x) => x.toFixed(3)).join(' '));
