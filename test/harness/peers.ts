/**
 * Real peers for interoperability tests: Orthanc (Debian package, DICOMweb plugin) and DCMTK command-line
 * tools. Every process started here is stopped by PID in `stop()`.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function haveCommand(cmd: string): boolean {
  return ['/usr/bin', '/usr/sbin', '/usr/local/bin'].some((d) => existsSync(path.join(d, cmd)));
}

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

export interface Orthanc {
  name: string;
  aet: string;
  httpPort: number;
  dicomPort: number;
  url: string;
  dir: string;
  api<T = any>(method: string, p: string, body?: unknown): Promise<T>;
  /** The tail of Orthanc's own log, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts Orthanc bound to 127.0.0.1, with its DICOMweb plugin, in a fresh storage directory. */
export async function startOrthanc(opts: { name: string; aet: string; modalities?: Record<string, [string, string, number]>; dicomwebServers?: Record<string, unknown>; /** Serve a Modality Worklist from the .wl files of this folder (Orthanc's worklist plugin plays the RIS). */ worklists?: string }): Promise<Orthanc> {
  const httpPort = await freePort();
  const dicomPort = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), `orthanc-${opts.name}-`));
  mkdirSync(path.join(dir, 'storage'), { recursive: true });
  const plugins = '/usr/share/orthanc/plugins';
  const config = {
    Name: opts.name,
    StorageDirectory: path.join(dir, 'storage'),
    IndexDirectory: path.join(dir, 'storage'),
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomAet: opts.aet,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: false,
    HttpBindAddress: '127.0.0.1',
    DicomCheckCalledAet: false,
    DicomAlwaysAllowStore: true,
    DicomAlwaysAllowFind: true,
    DicomAlwaysAllowFindWorklist: true,
    DicomAlwaysAllowMove: true,
    DicomAlwaysAllowGet: true,
    DicomAlwaysAllowEcho: true,
    DicomModalities: opts.modalities ?? {},
    Plugins: [path.join(plugins, 'libOrthancDicomWeb.so'), ...(opts.worklists ? [path.join(plugins, 'libModalityWorklists.so')] : [])],
    ...(opts.worklists ? { Worklists: { Enable: true, Database: opts.worklists } } : {}),
    DicomWeb: { Enable: true, Root: '/dicom-web/', EnableWado: true, Servers: opts.dicomwebServers ?? {} },
    HttpTimeout: 60,
  };
  writeFileSync(path.join(dir, 'orthanc.json'), JSON.stringify(config));
  const child: ChildProcess = spawn('Orthanc', [...(process.env.ORTHANC_VERBOSE ? ['--verbose'] : []), path.join(dir, 'orthanc.json')], { env: { ...process.env, TCP_NODELAY: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr?.on('data', (d) => (log = (log + d.toString()).slice(-20_000)));
  const url = `http://127.0.0.1:${httpPort}`;
  const api = async (method: string, p: string, body?: unknown) => {
    const raw = Buffer.isBuffer(body);
    const payload = body === undefined ? undefined : raw || typeof body === 'string' ? (body as string) : JSON.stringify(body);
    const r = await fetch(url + p, { method, body: payload, headers: body === undefined ? {} : { 'content-type': raw ? 'application/dicom' : 'application/json' } });
    const text = await r.text();
    if (!r.ok) throw new Error(`Orthanc ${method} ${p}: ${r.status} ${text.slice(0, 500)}`);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Orthanc exited: ${log}`);
    try {
      await api('GET', '/system');
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`Orthanc did not start: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    name: opts.name,
    aet: opts.aet,
    httpPort,
    dicomPort,
    url,
    dir,
    api,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
