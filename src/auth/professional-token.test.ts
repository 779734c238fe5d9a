import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { issueProfessionalToken, verifyProfessionalToken, TokenError } from './professional-token.js';

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const pem = (k: typeof ec) => k.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;

const pro = { id: '810002909371', familyName: 'RADIO', givenName: 'Jeanne', profession: '10', specialty: 'SM44', acr: 'eidas1' };
const issue = { issuer: 'drimbox.cabinet-b.fr', audience: 'https://drimbox.chu-a.fr:8443' };
import type { VerifyOptions } from './professional-token.js';
const verify = (key: typeof ec): VerifyOptions => ({ publicKey: key.publicKey, issuer: issue.issuer, audience: [issue.audience], maxLifetimeSeconds: 600 });

test('a token signed with the box key verifies with its certificate key and carries the professional (EC and RSA)', async () => {
  for (const key of [ec, rsa]) {
    const token = await issueProfessionalToken(pro, { ...issue, privateKeyPem: pem(key), patient: '279035121518989' });
    const v = await verifyProfessionalToken(token, verify(key));
    assert.deepEqual(v.professional, pro);
    assert.equal(v.patient, '279035121518989');
    assert.ok(v.expiresAt.getTime() > Date.now() + 200_000);
    assert.match(v.jti, /^[0-9a-f-]{36}$/);
  }
});

test('a token is refused when another key signed it, when altered, expired, misaddressed or from another box', async () => {
  const good = await issueProfessionalToken(pro, { ...issue, privateKeyPem: pem(ec) });
  const reject = async (token: string, opts: VerifyOptions, why: RegExp) => {
    await assert.rejects(verifyProfessionalToken(token, opts), (e: Error) => e instanceof TokenError && why.test(e.message));
  };
  // Stolen by another box: its connection presents another certificate.
  await reject(good, verify(other), /signature does not match the client certificate/);
  // A payload edited to claim another practitioner.
  const [h, p, s] = good.split('.');
  const forged = JSON.parse(Buffer.from(p!, 'base64url').toString());
  forged.sub = '810000000001';
  await reject(`${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${s}`, verify(ec), /signature/);
  await reject(good, { ...verify(ec), issuer: 'drimbox.other.fr' }, /claim "iss"/);
  await reject(good, { ...verify(ec), audience: ['https://drimbox.elsewhere.fr'] }, /claim "aud"/);
  await reject(good, { ...verify(ec), now: new Date(Date.now() + 3600_000) }, /expired/);
  await reject(good, { ...verify(ec), maxLifetimeSeconds: 60 }, /longer than the 60 s accepted/);
  await reject(good, { ...verify(ec), now: new Date(Date.now() - 3600_000) }, /future|claim "iat"/);
  await reject('not-a-token', verify(ec), /not a signed JWT/);
  // alg "none" and HMAC tricks: the algorithm follows the certificate key, never the token header.
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'opendrim-pro+jwt' })).toString('base64url')}.${p}.`;
  await reject(none, verify(ec), /not a signed JWT|invalid/);
});

test('issuing refuses an identifier that is not a national practitioner id and unsupported keys', async () => {
  await assert.rejects(issueProfessionalToken({ id: 'x y' }, { ...issue, privateKeyPem: pem(ec) }), TokenError);
  const ed = generateKeyPairSync('ed25519');
  await assert.rejects(issueProfessionalToken(pro, { ...issue, privateKeyPem: ed.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }), /not supported/);
});
