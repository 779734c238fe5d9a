import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { CompactSign, exportSPKI, generateKeyPair } from 'jose';
import { createLogger } from '../common/log.js';
import { normaliseDn, TrustList, TrustListError, verifyTrustList } from './trust-list.js';

const dir = mkdtempSync(path.join(tmpdir(), 'trust-list-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const authority = await generateKeyPair('ES256', { extractable: true });
const other = await generateKeyPair('ES256', { extractable: true });
const authorityPem = await exportSPKI(authority.publicKey);

const list = (version: number, entries = [{ domain: 'drimbox.chu-a.fr', subjectDn: 'CN=drimbox.chu-a.fr, O=CHU A, C=FR' }], extra: Record<string, unknown> = {}) => ({ issuer: 'ANS (test)', issuedAt: '2026-11-01T00:00:00Z', version, entries, ...extra });
const sign = (payload: unknown, key = authority.privateKey) => new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'ES256' }).sign(key);

test('a list signed by the authority is read; peers are found by their certificate DN in any usual notation', async () => {
  const c = await verifyTrustList(await sign(list(1)), authorityPem);
  assert.equal(c.entries[0]!.domain, 'drimbox.chu-a.fr');
  assert.equal(normaliseDn('CN=drimbox.chu-a.fr, O=CHU A, C=FR'), normaliseDn('/C=FR/O=CHU A/CN=drimbox.chu-a.fr'));
  assert.equal(normaliseDn('c=FR\nO=CHU A\ncn=drimbox.chu-a.fr'), normaliseDn('CN=drimbox.chu-a.fr,O=CHU A,C=FR'));
});

test('unsigned, tampered, wrongly signed, expired or malformed lists are refused with the reason', async () => {
  await assert.rejects(verifyTrustList(JSON.stringify(list(1)), authorityPem), (e: unknown) => e instanceof TrustListError && /unsigned/.test(e.message));
  const good = await sign(list(1));
  const [h, , s] = good.split('.');
  const forged = Buffer.from(JSON.stringify(list(1, [{ domain: 'evil.example', subjectDn: 'CN=evil' }]))).toString('base64url');
  await assert.rejects(verifyTrustList(`${h}.${forged}.${s}`, authorityPem), /altered/);
  await assert.rejects(verifyTrustList(await sign(list(1), other.privateKey), authorityPem), /does not verify/);
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify(list(1))).toString('base64url')}.AAAA`;
  await assert.rejects(verifyTrustList(none, authorityPem), /does not verify/);
  await assert.rejects(verifyTrustList(await sign(list(1, undefined, { expiresAt: '2020-01-01T00:00:00Z' })), authorityPem), /expired/);
  await assert.rejects(verifyTrustList(await sign({ entries: 'all' }), authorityPem), /invalid content/);
});

test('a refused reload leaves the previous valid list in force; an older version is refused', async () => {
  const file = path.join(dir, 'trust-list.jws');
  const tl = new TrustList(file, authorityPem, createLogger('silent'));
  const missing = await tl.reload();
  assert.equal(missing.ok, false);
  assert.match((missing as { error: string }).error, /cannot read the trust list/);
  assert.equal(tl.lookup('CN=drimbox.chu-a.fr, O=CHU A, C=FR'), undefined, 'nothing trusted before a valid list');
  writeFileSync(file, await sign(list(2)));
  assert.deepEqual(await tl.reload(), { ok: true, entries: 1, version: 2 });
  assert.equal(tl.lookup('/C=FR/O=CHU A/CN=drimbox.chu-a.fr')!.domain, 'drimbox.chu-a.fr');
  writeFileSync(file, (await sign(list(3))).slice(0, -4) + 'AAAA');
  const tampered = await tl.reload();
  assert.equal(tampered.ok, false);
  assert.equal(tl.content!.version, 2);
  assert.ok(tl.lookup('CN=drimbox.chu-a.fr,O=CHU A,C=FR'));
  writeFileSync(file, await sign(list(1, [])));
  const older = await tl.reload();
  assert.equal(older.ok, false);
  assert.match((older as { error: string }).error, /older/);
  assert.equal(tl.content!.entries.length, 1);
  assert.equal(tl.lookup('CN=someone.else'), undefined);
});

test('signTrustList makes a list that verifies with the authority public key; invalid content is not signed', async () => {
  const { generateKeyPairSync } = await import('node:crypto');
  const { signTrustList } = await import('./trust-list.js');
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jws = await signTrustList(list(3), pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  const content = await verifyTrustList(jws, pair.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  assert.equal(content.version, 3);
  await assert.rejects(signTrustList({ issuer: 'x' }, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string));
});
