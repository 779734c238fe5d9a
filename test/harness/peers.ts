/**
 * Real peers for interoperability tests: Orthanc (Debian package, DICOMweb plugin) and DCMTK command-line
 * tools. Every process started here is stopped by PID in `stop()`.
 */
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

// Orthanc and port helpers are shared with the demo network (src/demo/orthanc.ts).
export { freePort, haveCommand, startOrthanc, type Orthanc } from '../../src/demo/orthanc.js';
import { freePort } from '../../src/demo/orthanc.js';

/** Runs a DCMTK tool with TCP_NODELAY=1 (DCMTK leaves Nagle on otherwise). Never throws: returns code and output. */
export async function dcmtk(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { env: { ...process.env, TCP_NODELAY: '1' }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 1, out: (err.stdout ?? '') + (err.stderr ?? '') };
  }
}

/** A DCMTK storescp receiving into a folder (a C-MOVE destination). */
export async function startStorescp(aet: string, extraArgs: string[] = []): Promise<{ port: number; dir: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'storescp-'));
  const child = spawn('storescp', [...extraArgs, '-od', dir, '-aet', aet, String(port)], { env: { ...process.env, TCP_NODELAY: '1' }, stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if ((await dcmtk('echoscu', ['-aec', aet, '127.0.0.1', String(port)], 5000)).code === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    dir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
