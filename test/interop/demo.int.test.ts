/**
 * `npm run demo -- --check` as CI runs it: the whole DRIM-M network on this machine, driven headless end to
 * end (login, contextual launch, DMP search, viewer, import, prefetch, routing with reconciliation, share link).
 * Exit code 0 only if every step passed; nothing may be left running.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { haveCommand } from '../harness/peers.js';
import { CHROMIUM } from '../harness/drim-network.js';

const skip = haveCommand('Orthanc') && existsSync(CHROMIUM) ? false : 'Orthanc or Chromium is not installed';

test('npm run demo -- --check: every step passes and the network stops cleanly', { skip, timeout: 15 * 60_000 }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/demo/main.ts', '--check'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OPENDRIM_DEMO_LOG: 'error' } });
  let out = '';
  child.stdout.on('data', (d) => (out += d.toString()));
  child.stderr.on('data', (d) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  console.log(out.split('\n').filter((l) => /^(PASS|FAIL)|steps passed/.test(l)).map((l) => `# ${l}`).join('\n'));
  assert.equal(code, 0, out.slice(-3000));
  const steps = out.split('\n').filter((l) => /^(PASS|FAIL)/.test(l));
  assert.equal(steps.length, 8, out.slice(-3000));
  assert.ok(steps.every((l) => l.startsWith('PASS')));
  assert.match(out, /8\/8 steps passed/);
});
