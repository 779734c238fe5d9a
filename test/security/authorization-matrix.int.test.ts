/**
 * The authorisation matrix of docs/security.md, cell by cell, on a running box ("Cabinet B" with every
 * function on): each screen and action of the practitioners' application, for each role (radiologist,
 * requesting physician, administrator, a practitioner with no role here, no session). A refusal must be the
 * authorisation's own (403 naming the permission), audited; an allowed request must get past it.
 * Other cells are checked where the mechanism lives: peer boxes (test/interop/exchange.int.test.ts, routing),
 * share links (test/interop/share.int.test.ts), DICOM peers (src/node/*.test.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { haveCommand } from '../harness/peers.js';
import { launchChromium, pscLogin, startDrimNetwork, type DrimNetwork } from '../harness/drim-network.js';
import { mtlsFetch } from '../../src/common/mtls-fetch.js';
import { PERMISSIONS, type Permission, type Role } from '../../src/auth/roles.js';
import { SESSION_COOKIE, type UserSession } from '../../src/web/plugin.js';

const skip = haveCommand('Orthanc') ? false : 'Orthanc is not installed';
const ADMIN_ID = '3100000000042';
type Who = Role | 'no-role' | 'anonymous';

/** Each endpoint and the permission it needs (undefined: any logged-in practitioner). */
const ENDPOINTS: Array<{ method: 'GET' | 'POST'; path: string; permission?: Permission; body?: string }> = [
  { method: 'GET', path: '/app' },
  { method: 'GET', path: '/app/patient?ins=280067512345690&oid=1.2.250.1.213.1.4.10', permission: 'exams.view' },
  { method: 'GET', path: '/app/launch?ins=280067512345690&oid=1.2.250.1.213.1.4.10', permission: 'exams.view' },
  { method: 'GET', path: '/app/reports/1.2.3/1.2.3.4', permission: 'exams.view' },
  { method: 'GET', path: '/app/exams/1.2.3/1.2.3.4', permission: 'exams.view' },
  { method: 'GET', path: '/app/dicom-web/studies/1.2.3/series/1.2.3.4/arrivals/0', permission: 'exams.view' },
  { method: 'GET', path: '/app/imports', permission: 'exams.import' },
  { method: 'GET', path: '/app/imports.json', permission: 'exams.import' },
  { method: 'POST', path: '/app/exams/1.2.3/1.2.3.4/import', permission: 'exams.import', body: '' },
  { method: 'POST', path: '/app/imports/999/retry', permission: 'exams.import', body: '' },
  { method: 'GET', path: '/app/prefetch', permission: 'prefetch.view' },
  { method: 'GET', path: '/app/prefetch.json', permission: 'prefetch.view' },
  { method: 'GET', path: '/app/reconciliation', permission: 'identity.reconcile' },
  { method: 'GET', path: '/app/reconciliation.json', permission: 'identity.reconcile' },
  { method: 'POST', path: '/app/reconciliation/999/decide', permission: 'identity.reconcile', body: 'localId=X1' },
  { method: 'GET', path: '/app/media', permission: 'media.import' },
  { method: 'POST', path: '/app/media/upload', permission: 'media.import', body: '' },
  { method: 'GET', path: '/app/routing', permission: 'routing.operate' },
  { method: 'POST', path: '/app/routing/999/retry', permission: 'routing.operate', body: '' },
  { method: 'GET', path: '/app/publications', permission: 'publications.operate' },
  { method: 'POST', path: '/app/publications/999/retry', permission: 'publications.operate', body: '' },
  { method: 'GET', path: '/app/audit?patient=280067512345690', permission: 'audit.view' },
  { method: 'GET', path: '/app/audit/kpi.csv', permission: 'audit.view' },
];

describe('authorisation matrix of the practitioners’ application', { skip }, () => {
  let net: DrimNetwork;
  let call: ReturnType<typeof mtlsFetch>;
  const sessions = new Map<Who, { cookie: string; csrf: string }>();

  before(async () => {
    net = await startDrimNetwork({
      loadIntoPacsA: [],
      bConfig: ({ dmpUrls }) => ({
        roles: { administrators: [ADMIN_ID] },
        prefetch: { onBehalfOf: { id: '8899700218896' }, rules: [{ name: 'all', match: {}, priors: { modalities: [] } }] },
        incoming: { pacs: 'PACSB', issuer: 'CABINET-B' },
        routing: { destinations: [{ name: 'pacs', type: 'dicom', peer: 'PACSB' }], rules: [{ name: 'r', trigger: 'hl7', destinations: ['pacs'] }] },
        source: { pacs: 'PACSB', dmp: dmpUrls, organisation: { finess: '750803447', name: 'Cabinet B' } },
      }),
    });
    call = mtlsFetch({ cert: readFileSync(net.pki.serverCert), key: readFileSync(net.pki.serverKey), ca: readFileSync(net.pki.ca) });
    const people: Array<[Who, UserSession['professional']]> = [
      ['radiologist', { id: '8899700218896', familyName: 'RADIO', profession: '10', specialty: 'SM26', acr: 'eidas1' }],
      ['requesting-physician', { id: '8899700367917', familyName: 'GENERALISTE', profession: '10', specialty: 'SM54', acr: 'eidas1' }],
      ['administrator', { id: ADMIN_ID, familyName: 'ADMIN', acr: 'eidas1' }],
      ['no-role', { id: '8899700555555', familyName: 'INFIRMIER', profession: '60', acr: 'eidas1' }],
    ];
    for (const [who, professional] of people) {
      const token = await net.b.sessions!.create<UserSession>('user', { sub: who, professional, tokens: { accessToken: 'x', idToken: 'x', expiresAt: Date.now() + 3600_000 } as UserSession['tokens'], exams: {} });
      const s = await net.b.sessions!.get<UserSession>(token, 'user');
      sessions.set(who, { cookie: `${SESSION_COOKIE}=${token}`, csrf: s!.csrf });
    }
  });
  after(async () => net?.stop());

  const request = async (who: Who, e: (typeof ENDPOINTS)[number]) => {
    const s = sessions.get(who);
    const headers: Record<string, string> = { accept: 'application/json', ...(s ? { cookie: s.cookie, 'x-csrf-token': s.csrf } : {}) };
    if (e.method === 'POST') headers['content-type'] = e.path.endsWith('/upload') ? 'multipart/form-data; boundary=x' : 'application/x-www-form-urlencoded';
    const res = await call(`${net.bUrl}${e.path}`, { method: e.method, headers, body: e.method === 'POST' ? (e.body ?? '') : undefined });
    return { status: res.status, text: await res.text(), location: res.headers.get('location') ?? '' };
  };

  for (const who of ['radiologist', 'requesting-physician', 'administrator', 'no-role', 'anonymous'] as Who[]) {
    test(`${who}: every endpoint allows or refuses as the matrix says`, async () => {
      const cells: string[] = [];
      for (const e of ENDPOINTS) {
        const r = await request(who, e);
        const expected = who === 'anonymous' ? 'login' : !e.permission || (who !== 'no-role' && PERMISSIONS[e.permission].includes(who)) ? 'allowed' : 'refused';
        const refusedByRole = r.status === 403 && /do not allow/.test(r.text);
        const sentToLogin = (r.status === 302 || r.status === 303) && /\/auth\/login/.test(r.location) || r.status === 401;
        const got = sentToLogin ? 'login' : refusedByRole ? 'refused' : 'allowed';
        cells.push(`${e.method} ${e.path}: ${got} (${r.status})`);
        assert.equal(got, expected, `${who} ${e.method} ${e.path}: expected ${expected}, got HTTP ${r.status} ${r.text.slice(0, 160)}`);
      }
      assert.equal(cells.length, ENDPOINTS.length);
      if (process.env.MATRIX_LOG) console.log(`${who}\n  ${cells.join("\n  ")}`);
    });
  }

  test('session fixation: a session cookie planted before login is replaced at login and opens nothing', async () => {
    // A planted value that is a real session of the attacker's own (the worst case), set in the victim's browser.
    const attacker = await net.b.sessions!.create<UserSession>('user', { sub: 'x', professional: { id: '8899700367917', profession: '10', specialty: 'SM54' }, tokens: { accessToken: 'x', idToken: 'x', expiresAt: Date.now() + 3600_000 } as UserSession['tokens'], exams: {} });
    const browser = await launchChromium();
    try {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      await context.addCookies([{ name: SESSION_COOKIE, value: attacker, url: net.bUrl }]);
      const pg = await context.newPage();
      await pg.goto(`${net.bUrl}/auth/login?returnTo=/app/reconciliation`);
      await pg.click('#psc-login');
      await pscLogin(pg);
      const after = (await context.cookies(net.bUrl)).find((c) => c.name === SESSION_COOKIE)!;
      assert.notEqual(after.value, attacker, 'a new session token is issued at login');
      assert.equal(await net.b.sessions!.get(attacker, 'user'), undefined, 'the planted session is destroyed');
      const res = await call(`${net.bUrl}/app`, { headers: { cookie: `${SESSION_COOKIE}=${attacker}`, accept: 'text/html' } });
      assert.ok(res.status === 302 || res.status === 303, `planted cookie sent to login (got ${res.status})`);
    } finally {
      await browser.close();
    }
  });

  test('IHE IID: Invoke Image Display opens the contextual launch for the INS; bad requests are refused', async () => {
    const ok = await call(`${net.bUrl}/IHEInvokeImageDisplay?requestType=PATIENT&patientID=${encodeURIComponent('280067512345690^^^&1.2.250.1.213.1.4.10&ISO')}`);
    assert.equal(ok.status, 302);
    assert.equal(ok.headers.get('location'), '/app/launch?ins=280067512345690&oid=1.2.250.1.213.1.4.10');
    assert.equal((await call(`${net.bUrl}/IHEInvokeImageDisplay?requestType=PATIENT&patientID=${encodeURIComponent('<script>')}`)).status, 400);
    assert.equal((await call(`${net.bUrl}/IHEInvokeImageDisplay?requestType=EVERYTHING`)).status, 400);
  });

  test('login is rate-limited per client address', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await call(`${net.bUrl}/auth/login`, { headers: { accept: 'text/html' } })).status);
    assert.ok(statuses.includes(429), `statuses: ${[...new Set(statuses)].join(',')}`);
    assert.ok(statuses.filter((s) => s === 429).length <= 40 - 25, 'the first attempts of the minute pass');
  });

  test('refusals are audited with the permission and the roles', async () => {
    await net.b.audit.flush();
    const denied = await net.b.audit.search({ action: 'authz.denied' });
    assert.ok(denied.some((r) => r.actorId === ADMIN_ID && (r.detail as { permission?: string }).permission === 'exams.view'));
    assert.ok(denied.some((r) => r.actorId === '8899700367917' && (r.detail as { permission?: string }).permission === 'exams.import'));
  });
});
