/** A throw-away certificate authority (openssl) with server, client and DRIMbox certificates: the demo network and the TLS tests. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface TestPki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** Signed by another authority: must be refused. */
  strangerCert: string;
  strangerKey: string;
}

function run(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

function authority(dir: string, name: string): void {
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.pem`], dir);
}

function leaf(dir: string, ca: string, name: string, san: string, subject = `/CN=${name}`): void {
  writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', subject, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
  run(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(path.join(tmpdir(), 'pki-'));
  authority(dir, 'ca');
  authority(dir, 'otherca');
  leaf(dir, 'ca', 'server', 'IP:127.0.0.1,DNS:localhost');
  leaf(dir, 'ca', 'client', 'DNS:client.drimbox.test');
  leaf(dir, 'otherca', 'stranger', 'DNS:stranger.test');
  const p = (f: string) => path.join(dir, f);
  return { dir, ca: p('ca.pem'), serverCert: p('server.pem'), serverKey: p('server.key'), clientCert: p('client.pem'), clientKey: p('client.key'), strangerCert: p('stranger.pem'), strangerKey: p('stranger.key') };
}

/**
 * A DRIMbox certificate (server and client use) from the test authority, with an organisation in its subject
 * as the IGC-Santé ones have; `otherAuthority` issues it from the authority nobody trusts.
 */
export function issueBoxCertificate(pki: TestPki, name: string, organisation: string, otherAuthority = false): { cert: string; key: string; subjectDn: string } {
  leaf(pki.dir, otherAuthority ? 'otherca' : 'ca', name, 'IP:127.0.0.1,DNS:localhost', `/C=FR/O=${organisation}/CN=${name}`);
  return { cert: path.join(pki.dir, `${name}.pem`), key: path.join(pki.dir, `${name}.key`), subjectDn: `CN=${name},O=${organisation},C=FR` };
}
