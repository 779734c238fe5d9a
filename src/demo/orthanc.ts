/**
 * Orthanc (Debian packages `orthanc`, `orthanc-dicomweb`) as the PACS of a demo or test box, bound to
 * 127.0.0.1 in its own storage directory; stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

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
export async function startOrthanc(opts: { name: string; aet: string; modalities?: Record<string, [string, string, number]>; dicomwebServers?: Record<string, unknown>; /** Serve a Modality Worklist from the .wl files of this folder (Orthanc's worklist plugin plays the RIS). */ worklists?: string; /** Further Orthanc settings (e.g. SyncStorageArea). */ settings?: Record<string, unknown> }): Promise<Orthanc> {
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
    ...(opts.settings ?? {}),
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

