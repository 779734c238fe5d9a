import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { remembered } from '../common/remembered.js';

/**
 * The professional's identity carried on every DRIMbox-to-DRIMbox image request.
 *
 * The consumer box issues it after the practitioner's Pro Santé Connect login and signs it with the private key
 * of its own TLS certificate; the source box verifies it with the public key of the certificate that the same
 * box presented in mutual TLS. A token is therefore worthless outside the connection of the box that issued it
 * (a stolen token cannot be replayed from another box), and no key needs distributing beyond the certificates
 * the trust list already names.
 */
export interface Professional {
  /** National identifier of the practitioner (PSC SubjectNameID: "8" + RPPS number). */
  id: string;
  familyName?: string;
  givenName?: string;
  /** Profession code (TRE_G15, e.g. "10" physician) and specialty (TRE_R38, e.g. "SM44" radiology). */
  profession?: string;
  specialty?: string;
  /** Authentication level obtained at PSC (e.g. "eidas1"). */
  acr?: string;
}

export class TokenError extends Error {
  override name = 'TokenError';
}

/** The signature algorithm a key calls for: ES256/384 for P-256/P-384 keys, PS256 for RSA. */
function algorithmFor(key: KeyObject): string {
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
    throw new TokenError(`EC curve ${curve} is not supported for professional tokens (use P-256 or P-384)`);
  }
  if (key.asymmetricKeyType === 'rsa') return 'PS256';
  throw new TokenError(`key type ${key.asymmetricKeyType} is not supported for professional tokens`);
}

export interface IssueOptions {
  /** This (consumer) box's domain, as the trust list names it. */
  issuer: string;
  /** The origin of the source box called (scheme://host[:port]). */
  audience: string;
  /** PEM private key of this box's TLS certificate. */
  privateKeyPem: string | Buffer;
  lifetimeSeconds?: number;
  /** The patient the professional is acting for, when known (INS), recorded in the source's audit trail. */
  patient?: string;
}

/** Parsed keys by PEM: parsing costs about a millisecond and a box signs with the same key for every transfer. */
const parsedKeys = new Map<string, KeyObject>();
function privateKeyOf(pem: string | Buffer): KeyObject {
  return remembered(parsedKeys, typeof pem === 'string' ? pem : pem.toString('latin1'), 16, () => createPrivateKey(pem));
}

export async function issueProfessionalToken(pro: Professional, opts: IssueOptions): Promise<string> {
  if (!/^[0-9A-Za-z]{1,32}$/.test(pro.id)) throw new TokenError(`"${pro.id}" is not a practitioner national identifier`);
  const key = privateKeyOf(opts.privateKeyPem);
  const alg = algorithmFor(key);
  return new SignJWT({
    ...(pro.familyName ? { family_name: pro.familyName } : {}),
    ...(pro.givenName ? { given_name: pro.givenName } : {}),
    ...(pro.profession ? { profession: pro.profession } : {}),
    ...(pro.specialty ? { specialty: pro.specialty } : {}),
    ...(pro.acr ? { acr: pro.acr } : {}),
    ...(opts.patient ? { patient: opts.patient } : {}),
  })
    .setProtectedHeader({ alg, typ: 'opendrim-pro+jwt' })
    .setSubject(pro.id)
    .setIssuer(opts.issuer)
    .setAudience(opts.audience)
    .setIssuedAt()
    .setExpirationTime(`${opts.lifetimeSeconds ?? 300}s`)
    .setJti(randomUUID())
    .sign(key);
}

export interface VerifyOptions {
  /** Public key of the client certificate presented on this connection. */
  publicKey: KeyObject;
  /** The caller's domain from the trust list: the token must have been issued by it. */
  issuer: string;
  /** Origins under which this box is reached; the token must be addressed to one of them. */
  audience: string[];
  /** Longest lifetime accepted (exp - iat), whatever the issuer chose. */
  maxLifetimeSeconds: number;
  clockToleranceSeconds?: number;
  now?: Date;
}

export interface VerifiedToken {
  professional: Professional;
  patient?: string;
  jti: string;
  expiresAt: Date;
}

/** Verifies a token; throws TokenError naming what is wrong (fit for the 401 answer, reveals no secret). */
export async function verifyProfessionalToken(token: string, opts: VerifyOptions): Promise<VerifiedToken> {
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new TokenError('the professional token is not a signed JWT');
  let payload: Record<string, unknown>;
  try {
    const r = await jwtVerify(token, opts.publicKey, {
      algorithms: [algorithmFor(opts.publicKey)],
      typ: 'opendrim-pro+jwt',
      issuer: opts.issuer,
      audience: opts.audience,
      requiredClaims: ['sub', 'iat', 'exp', 'jti'],
      clockTolerance: opts.clockToleranceSeconds ?? 60,
      currentDate: opts.now,
    });
    payload = r.payload as Record<string, unknown>;
  } catch (e) {
    if (e instanceof joseErrors.JWTExpired) throw new TokenError('the professional token has expired');
    if (e instanceof joseErrors.JWSSignatureVerificationFailed) throw new TokenError('the professional token signature does not match the client certificate of this connection');
    if (e instanceof joseErrors.JWTClaimValidationFailed) throw new TokenError(`the professional token claim "${e.claim}" is not acceptable: ${e.message}`);
    throw new TokenError(`the professional token is invalid: ${(e as Error).message}`);
  }
  const iat = Number(payload.iat);
  const exp = Number(payload.exp);
  if (exp - iat > opts.maxLifetimeSeconds) throw new TokenError(`the professional token lives ${exp - iat} s, longer than the ${opts.maxLifetimeSeconds} s accepted`);
  const now = (opts.now ?? new Date()).getTime() / 1000;
  if (iat > now + (opts.clockToleranceSeconds ?? 60)) throw new TokenError('the professional token is issued in the future');
  const s = (k: string) => (typeof payload[k] === 'string' ? (payload[k] as string) : undefined);
  return {
    professional: { id: s('sub')!, familyName: s('family_name'), givenName: s('given_name'), profession: s('profession'), specialty: s('specialty'), acr: s('acr') },
    patient: s('patient'),
    jti: s('jti')!,
    expiresAt: new Date(exp * 1000),
  };
}
