import type { DicomJson } from './dicom/part10.js';
import { parseArgs } from 'node:util';
import { readdir, stat } from 'node:fs/promises';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { auditCheckpointFiles, loadConfig, ConfigError, type Config } from './config/config.js';
import { remoteFor } from './node/peers.js';
import { OpenDrimNode, VERSION } from './node/node.js';
import { createLogger } from './common/log.js';
import { echo, find, move, storeInstances, type Remote } from './dicom/scu.js';
import { IngestError } from './store/ingest.js';
import { openStore } from './store/open-store.js';
import { AuditTrail } from './audit/audit-trail.js';
import { verifyCheckpoints } from './audit/checkpoints.js';
import { createPublicKey } from 'node:crypto';
import { sendMedia } from './media/send-media.js';

const HELP = `opendrim ${VERSION} — an open-source DRIMbox (DICOM, DICOMweb, HL7, IHE XDS-I.b gateway)

Usage: opendrim <command> [options]

Commands:
  start                         start the node (DICOM + HTTP); the default command
  echo PEER                     C-ECHO a configured peer (by AE title) or AE@host:port
  find PEER [KEY=VALUE...]      C-FIND studies on a peer (e.g. PatientID=P1 StudyDate=20240101-); a table,
                                DICOM JSON with --json
  move PEER STUDY_UID [DEST]    ask PEER to C-MOVE a study to DEST (default: this node); --json for scripts
  send STUDY_UID PEER           C-STORE a study held by this node to a peer
  import DIR                    import every DICOM file under DIR into this node's store
  media import PATH [--url URL] a patient's CD/DVD/USB folder (DICOMDIR or plain) or a zip/XDM archive, sent to
                                the running node (default http(s)://127.0.0.1:httpPort), which reconciles each
                                exam with a local patient and stores it into the PACS; prints the report
  audit verify                  check the audit trail's hash chain (exit 1 if a record was altered or removed)
  config                        print the effective configuration (after file and environment)
  dmp [--port N] [--data-dir D] run the DMP stand-in (IHE XDS.b registry + repository, for tests and demos;
                                not the national DMP): /registry and /repository on 127.0.0.1
  psc [--port N] --client ID:SECRET --redirect URI
                                run the Pro Santé Connect stand-in (OpenID provider with test e-CPS accounts,
                                PIN 1234) on 127.0.0.1, for tests and demos
  generate --out DIR [--modality CT|MR|CR] [--series N] [--slices N] [--patient-id ID] [--patient-name FAMILY^GIVEN]
           [--ins INS] [--description TEXT]
                                write a synthetic study (Part 10 files, test material) to DIR, e.g. for storescu
  trust-list sign --key KEY --in LIST.json --out LIST.jws
                                sign a trust list of DRIMboxes with the list authority's private key (PEM)

Options:
  -c, --config FILE             configuration file (YAML or JSON); environment variables override it
  -h, --help                    this help
  -v, --version                 print the version

Environment: OPENDRIM_HTTP_PORT, OPENDRIM_DICOM_PORT, OPENDRIM_HL7_PORT, OPENDRIM_AE_TITLE, OPENDRIM_DATA_DIR, OPENDRIM_BIND,
OPENDRIM_PEERS (AE@host:port,...), OPENDRIM_LOG_LEVEL, DATABASE_URL (postgres://... for PostgreSQL).
See docs/configuration.md.`;

/** C-FIND study matches as a table people read. */
function studyTable(rows: DicomJson[]): string {
  const cols: Array<[string, string]> = [['00080020', 'Date'], ['00100020', 'Patient ID'], ['00100010', 'Patient'], ['00080061', 'Modalities'], ['00081030', 'Description'], ['00080050', 'Accession'], ['0020000D', 'Study Instance UID']];
  const cell = (r: DicomJson, tag: string) => {
    const v = r[tag]?.Value ?? [];
    return v.map((x) => (typeof x === 'object' && x && 'Alphabetic' in x ? String((x as { Alphabetic?: string }).Alphabetic ?? '') : String(x))).join('\\').replace(/^(\d{4})(\d{2})(\d{2})$/, '$3/$2/$1');
  };
  const table = [cols.map(([, h]) => h), ...rows.map((r) => cols.map(([t]) => cell(r, t)))];
  const widths = cols.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

/** A DIMSE status as people read it. */
function statusText(status: number): string {
  const names: Record<number, string> = { 0x0000: 'success', 0xb000: 'warning: some sub-operations failed', 0xa801: 'refused: the peer does not know the destination AE title', 0xa701: 'refused: the peer is out of resources', 0xa702: 'failed: the sub-operations failed', 0xa900: 'refused: the identifier does not match', 0xc000: 'failed: the peer could not process the request', 0xfe00: 'cancelled' };
  return `${names[status] ?? 'failed'} (status 0x${status.toString(16).padStart(4, '0').toUpperCase()})`;
}

function resolvePeer(config: Config, spec: string): Remote {
  const known = config.peers.find((p) => p.aeTitle === spec);
  if (known) return remoteFor(config, known);
  const m = /^([^@]{1,16})@([^:]+):(\d+)$/.exec(spec);
  if (m) return { aeTitle: m[1]!, host: m[2]!, port: Number(m[3]) };
  throw new ConfigError(`unknown peer "${spec}": give a configured AE title or AE@host:port`);
}

async function* walk(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(p);
    else if (entry.isFile()) yield p;
  }
}

/** Runs until Ctrl-C or SIGTERM, then closes what was started. */
function untilSignal(close: () => Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => void close().then(() => resolve(), () => resolve());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' }, port: { type: 'string' }, 'data-dir': { type: 'string' }, bind: { type: 'string' }, client: { type: 'string' }, redirect: { type: 'string', multiple: true }, key: { type: 'string' }, in: { type: 'string' }, out: { type: 'string' }, url: { type: 'string' }, json: { type: 'boolean' }, modality: { type: 'string' }, series: { type: 'string' }, slices: { type: 'string' }, 'patient-id': { type: 'string' }, 'patient-name': { type: 'string' }, ins: { type: 'string' }, description: { type: 'string' } },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.version) {
    console.log(VERSION);
    return 0;
  }
  const [command = 'start', ...args] = positionals;
  if (command === 'dmp') {
    // The stand-in is a simulator, loaded only when asked for: product code never imports it.
    const { DmpServer } = await import('./simulators/dmp/server.js');
    const port = Number(values.port ?? 8090);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port: "${values.port}" is not a port number`);
    const dmp = await new DmpServer({ host: values.bind ?? '127.0.0.1', port, dataDir: path.resolve(values['data-dir'] ?? './data-dmp'), databaseUrl: process.env.DMP_DATABASE_URL, log: createLogger(process.env.OPENDRIM_LOG_LEVEL ?? 'info', 'dmp-standin') }).start();
    console.log(`DMP stand-in listening: registry ${dmp.url}/registry, repository ${dmp.url}/repository`);
    await untilSignal(() => dmp.close());
    return 0;
  }
  if (command === 'psc') {
    const { PscServer } = await import('./simulators/psc/server.js');
    const port = Number(values.port ?? 8091);
    const m = /^([^:]+):(.+)$/.exec(values.client ?? '');
    if (!m || !values.redirect?.length) throw new ConfigError('usage: opendrim psc [--port N] --client ID:SECRET --redirect https://drimbox/auth/callback [--redirect ...]');
    const psc = await new PscServer({ host: values.bind ?? '127.0.0.1', port, clients: [{ clientId: m[1]!, clientSecret: m[2]!, redirectUris: values.redirect, postLogoutRedirectUris: values.redirect.map((u) => u.replace(/\/auth\/callback$/, '/auth/login')) }], log: createLogger(process.env.OPENDRIM_LOG_LEVEL ?? 'info', 'psc-standin') }).start();
    console.log(`Pro Santé Connect stand-in: issuer ${psc.issuer} (test accounts, PIN 1234)`);
    await untilSignal(() => psc.close());
    return 0;
  }
  if (command === 'generate') {
    if (!values.out) throw new ConfigError('usage: opendrim generate --out DIR [--modality CT|MR|CR] [--series N] [--slices N] [--patient-id ID] [--patient-name FAMILY^GIVEN] [--ins INS] [--description TEXT]');
    const modality = (values.modality ?? 'CT').toUpperCase();
    if (!['CT', 'MR', 'CR'].includes(modality)) throw new ConfigError(`--modality: "${values.modality}" is not CT, MR or CR`);
    const count = (name: 'series' | 'slices', dflt: number) => {
      const v = Number(values[name] ?? dflt);
      if (!Number.isInteger(v) || v < 1 || v > 10_000) throw new ConfigError(`--${name}: "${values[name]}" is not a number from 1 to 10000`);
      return v;
    };
    // Test material, loaded only when asked for.
    const { generateStudy } = await import('./simulators/modality/study.js');
    const g = generateStudy({ out: path.resolve(values.out), modality: modality as 'CT' | 'MR' | 'CR', series: count('series', 1), slices: count('slices', 20), patientId: values['patient-id'], patientName: values['patient-name'], ins: values.ins, description: values.description });
    console.log(`${g.files.length} instances (${Math.round(g.bytes / 1048576)} MB) of study ${g.studyUid} written to ${path.resolve(values.out)}`);
    return 0;
  }
  if (command === 'trust-list') {
    if (args[0] !== 'sign' || !values.key || !values.in || !values.out) throw new ConfigError('usage: opendrim trust-list sign --key AUTHORITY.key --in LIST.json --out LIST.jws');
    const { signTrustList } = await import('./auth/trust-list.js');
    const { readFile, writeFile } = await import('node:fs/promises');
    await writeFile(values.out, await signTrustList(JSON.parse(await readFile(values.in, 'utf8')), await readFile(values.key, 'utf8')));
    console.log(`signed trust list written to ${values.out}`);
    return 0;
  }
  const config = loadConfig({ file: values.config });
  switch (command) {
    case 'start': {
      const node = await new OpenDrimNode(config).start();
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        node.log.info({ signal }, 'shutting down: finishing associations in flight');
        node.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
      return await new Promise<number>(() => undefined);
    }
    case 'config':
      // Secrets are never printed.
      console.log(
        JSON.stringify(
          config,
          (k, v) => (/secret|password/i.test(k) && typeof v === 'string' && !/File$/.test(k) ? '********' : typeof v === 'string' ? v.replace(/(\/\/[^/:@\s]+:)[^@/\s]+@/, '$1********@') : v),
          2,
        ),
      );
      return 0;
    case 'audit': {
      if (args[0] !== 'verify') throw new ConfigError('usage: opendrim audit verify');
      const store = await openStore(config, createLogger('warn'));
      try {
        const r = await new AuditTrail(store.database.db, store.database.dialect, createLogger('warn')).verify();
        if (!r.ok) {
          console.error(`AUDIT TRAIL BROKEN at record ${r.brokenAt}: ${r.reason} (${r.records - 1} records before it are intact)`);
          return 1;
        }
        // The chain can be recomputed by whoever writes to the database: the signed checkpoints outside it say
        // whether it still holds what it held.
        const { file, keyFile } = auditCheckpointFiles(config);
        const publicKey = existsSync(`${keyFile}.pub`) ? createPublicKey(readFileSync(`${keyFile}.pub`)) : undefined;
        const c = publicKey ? await verifyCheckpoints(store.database.db, file, publicKey) : ({ ok: true, checkpoints: 0 } as const);
        if (!c.ok) {
          console.error(`AUDIT TRAIL BROKEN${c.record ? ` at record ${c.record}` : ''}: ${c.reason} (checkpoint ${c.line} of ${file})`);
          return 1;
        }
        console.log(`audit trail intact: ${r.records} records in sequence, last hash ${r.lastHash}; ${c.checkpoints} signed checkpoint(s) match`);
        return 0;
      } finally {
        await store.close();
      }
    }
    case 'echo': {
      if (!args[0]) throw new ConfigError('usage: opendrim echo PEER');
      const peer = resolvePeer(config, args[0]);
      const t = Date.now();
      try {
        await echo(peer, config.aeTitle);
      } catch (e) {
        // The usual cause: the peer does not know the AE title this command calls as.
        throw new Error(`C-ECHO ${peer.aeTitle}@${peer.host}:${peer.port} failed: ${(e as Error).message} (this command calls as ${config.aeTitle}, set by aeTitle / OPENDRIM_AE_TITLE: the peer must accept that AE title from this host)`);
      }
      console.log(`C-ECHO ${peer.aeTitle}@${peer.host}:${peer.port}: success (${Date.now() - t} ms)`);
      return 0;
    }
    case 'find': {
      if (!args[0]) throw new ConfigError('usage: opendrim find PEER [KEY=VALUE...]');
      const peer = resolvePeer(config, args[0]);
      const keys: Record<string, string> = { StudyInstanceUID: '', PatientID: '', PatientName: '', StudyDate: '', StudyDescription: '', ModalitiesInStudy: '', AccessionNumber: '' };
      for (const kv of args.slice(1)) {
        const i = kv.indexOf('=');
        if (i < 1) throw new ConfigError(`"${kv}" is not KEY=VALUE`);
        keys[kv.slice(0, i)] = kv.slice(i + 1);
      }
      const results = await find(peer, config.aeTitle, 'STUDY', keys);
      if (values.json) console.log(JSON.stringify(results, null, 2));
      else console.log(studyTable(results));
      console.error(`${results.length} ${results.length === 1 ? 'study' : 'studies'}`);
      return 0;
    }
    case 'move': {
      if (!args[0] || !args[1]) throw new ConfigError('usage: opendrim move PEER STUDY_UID [DEST]');
      const peer = resolvePeer(config, args[0]);
      const destination = args[2] ?? config.aeTitle;
      const r = await move(peer, config.aeTitle, destination, 'STUDY', { StudyInstanceUID: args[1] });
      if (values.json) console.log(JSON.stringify(r));
      else console.log(`C-MOVE of study ${args[1]} from ${peer.aeTitle} to ${destination}: ${r.completed} sent, ${r.failed} failed, ${r.warning} with warnings — ${statusText(r.status)}`);
      return r.status === 0 ? 0 : 1;
    }
    case 'send': {
      if (!args[0] || !args[1]) throw new ConfigError('usage: opendrim send STUDY_UID PEER');
      const peer = resolvePeer(config, args[1]);
      const store = await openStore(config, createLogger('warn'));
      const { index, blobs } = store;
      try {
        const list = await index.listInstances({ studyUid: args[0] });
        if (!list.length) throw new ConfigError(`study ${args[0]} is not in this node's store`);
        const r = await storeInstances(peer, config.aeTitle, list.map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopUid, transferSyntaxUid: i.transferSyntaxUid, path: blobs.localPath(i.blobKey) })));
        console.log(`sent ${r.completed}/${list.length} instances to ${peer.aeTitle}${r.failed ? `, ${r.failed} failed: ${r.error ?? ''}` : ''}`);
        return r.failed ? 1 : 0;
      } finally {
        await store.close();
      }
    }
    case 'media': {
      if (args[0] !== 'import' || !args[1]) throw new ConfigError('usage: opendrim media import PATH [--url URL]');
      const report = await sendMedia(config, args[1], values.url);
      console.log(JSON.stringify(report, null, 2));
      const failed = report.studies.filter((s) => s.outcome.state === 'failed').length;
      const waiting = report.studies.filter((s) => s.outcome.state === 'waiting-identity').length;
      console.error(`${report.instances} instance(s) in ${report.studies.length} exam(s): ${report.studies.length - failed - waiting} stored into the PACS, ${waiting} waiting for identity reconciliation, ${failed} failed; ${report.problems.length} file(s) not imported`);
      return failed ? 1 : 0;
    }
    case 'import': {
      if (!args[0]) throw new ConfigError('usage: opendrim import DIR');
      const store = await openStore(config, createLogger('warn'));
      const { ingestor } = store;
      const counts = { stored: 0, replaced: 0, duplicate: 0, refused: 0 };
      try {
        if (!(await stat(args[0]).catch(() => undefined))?.isDirectory()) throw new ConfigError(`${args[0]} is not a directory`);
        for await (const file of walk(args[0])) {
          if (path.basename(file).toUpperCase() === 'DICOMDIR') continue;
          const w = ingestor.begin();
          try {
            await pipeline(createReadStream(file), w);
            counts[(await ingestor.commit(w)).outcome]++;
          } catch (e) {
            counts.refused++;
            console.error(`skipped ${file}: ${e instanceof IngestError ? e.message : (e as Error).message}`);
            await w.discard();
          }
        }
        console.log(`imported: ${counts.stored} new, ${counts.replaced} replaced, ${counts.duplicate} already present, ${counts.refused} refused`);
        return 0;
      } finally {
        await store.close();
      }
    }
    default:
      console.error(`unknown command "${command}"\n\n${HELP}`);
      return 2;
  }
}

const invokedDirectly = process.argv[1] && /cli\.(ts|js)$/.test(process.argv[1]);
if (invokedDirectly || process.env.OPENDRIM_CLI === '1') {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => {
      console.error(e instanceof ConfigError ? e.message : `opendrim: ${e.message}`);
      process.exit(e instanceof ConfigError ? 2 : 1);
    },
  );
}
