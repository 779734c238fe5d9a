/**
 * npm run demo            — a DRIM-M network on this machine (127.0.0.1 only); Ctrl-C stops everything.
 * npm run demo -- --check — the same network driven headless end to end; exit code 0 only if every step passes.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../common/log.js';
import { TEST_ACCOUNTS, TEST_PIN } from '../simulators/psc/accounts.js';
import { haveCommand } from './orthanc.js';
import { runCheck } from './check.js';
import { INS_OID_TEST, PATIENTS, startDemoNetwork } from './network.js';

const check = process.argv.includes('--check');
if (!haveCommand('Orthanc') || !existsSync('/usr/share/orthanc/plugins/libOrthancDicomWeb.so')) {
  console.error('The demo uses Orthanc as the PACS of each box. Install it (Debian/Ubuntu), then run again:\n\n  sudo apt-get install -y orthanc orthanc-dicomweb dcmtk chromium\n');
  process.exit(1);
}
const work = mkdtempSync(path.join(tmpdir(), 'opendrim-demo-'));
const log = createLogger(process.env.OPENDRIM_DEMO_LOG ?? 'warn');
const t0 = Date.now();
console.log('Starting the demo network (DMP and Pro Santé Connect stand-ins, two Orthanc, two OpenDRIM)…');
let net: Awaited<ReturnType<typeof startDemoNetwork>>;
try {
  net = await startDemoNetwork({ work, log });
} catch (e) {
  console.error(`The demo could not start: ${(e as Error).message}`);
  rmSync(work, { recursive: true, force: true });
  process.exit(1);
}
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await net.stop();
  rmSync(work, { recursive: true, force: true });
  process.exit(code);
};
process.once('SIGINT', () => void stop(0));
process.once('SIGTERM', () => void stop(0));
console.log(`Ready in ${((Date.now() - t0) / 1000).toFixed(1)} s.\n`);

if (check) {
  const results = await runCheck(net);
  const failed = results.filter((r) => !r.ok).length;
  console.log(`\n${results.length - failed}/${results.length} steps passed`);
  await stop(failed ? 1 : 0);
} else {
  const c = PATIENTS.camille;
  const doctor = TEST_ACCOUNTS.find((a) => a.kind === 'practitioner')!;
  console.log(`Cabinet B (consumer, prefetch, reconciliation, CD import) — ${net.bUrl}/app
  Log in with "${doctor.label}" on the Pro Santé Connect stand-in page, PIN ${TEST_PIN}
  (the browser will warn about the demo's own certificate authority: accept it).
  Contextual launch as the RIS would do it:
    ${net.bUrl}/app/launch?ins=${c.ins}&oid=${INS_OID_TEST}&birthName=${c.family}&firstGiven=${c.given}&birthDate=1980-06-15&sex=F
  Tomorrow's appointments and their priors: ${net.bUrl}/app/prefetch?day=${new Date(net.appointment.start).toISOString().slice(0, 10)}
  Identity reconciliation: ${net.bUrl}/app/reconciliation     CD import: ${net.bUrl}/app/media

CHU A (source, routing, share links) — ${net.aUrl}
  A patient's link instead of a CD: ${net.share?.url ?? '(not created)'}
  access code (given separately): ${net.share?.code ?? '-'}
  Routing: the chest X-ray asked by Dr MOREAU (Cabinet B) is sent to B automatically: ${net.aUrl}/api/routing/transfers

PACS: CHU A ${net.pacsA.url}/app/explorer.html   Cabinet B ${net.pacsB.url}/app/explorer.html
DMP stand-in: ${net.dmp.url}   Pro Santé Connect stand-in: ${net.psc.issuer}

Ctrl-C stops everything.`);
}
