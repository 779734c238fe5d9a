import { readFile } from 'node:fs/promises';
import { CompactSign, compactVerify, importPKCS8, importSPKI, importX509, type CryptoKey, type KeyObject } from 'jose';
import { z } from 'zod';
import type { Logger } from '../common/log.js';

/**
 * The list of DRIMboxes this box trusts, in the spirit of the ANS national white list: each entry names a box by
 * domain and by the subject DN of the certificate it presents in mutual TLS. The list is a JWS (compact
 * serialisation) signed by the list authority; only a list whose signature verifies with the configured authority
 * key is used. A list that is unsigned, tampered with, expired or signed by another key is refused and the
 * previous valid list stays in force.
 */

const EntrySchema = z
  .object({
    domain: z.string().min(1),
    /** Subject DN of the box's TLS certificate, in RFC 2253 or OpenSSL one-line form (compared normalised). */
    subjectDn: z.string().min(1),
    name: z.string().optional(),
    contact: z.string().optional(),
    since: z.string().optional(),
  })
  .strict();

const ListSchema = z
  .object({
    issuer: z.string().min(1),
    /** ISO 8601 times. */
    issuedAt: z.string().min(1),
    expiresAt: z.string().optional(),
    version: z.number().int().nonnegative(),
    entries: z.array(EntrySchema),
  })
  .strict();

export type TrustListEntry = z.infer<typeof EntrySchema>;
export type TrustListContent = z.infer<typeof ListSchema>;

export class TrustListError extends Error {
  override name = 'TrustListError';
}

/** Normalises a DN ("CN=a, O=b" / "/O=b/CN=a" / "O=b\nCN=a") to sorted "key=value" pairs, case-insensitive keys. */
export function normaliseDn(dn: string): string {
  const parts = dn.includes('\n') ? dn.split('\n') : dn.startsWith('/') ? dn.slice(1).split('/') : dn.split(/,(?=\s*[A-Za-z][\w.]*\s*=)/);
  return parts
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const i = p.indexOf('=');
      return `${p.slice(0, i).trim().toUpperCase()}=${p.slice(i + 1).trim()}`;
    })
    .sort()
    .join(',');
}

async function authorityKey(pem: string): Promise<CryptoKey | KeyObject> {
  if (pem.includes('BEGIN CERTIFICATE')) return importX509(pem, 'ES256').catch(() => importX509(pem, 'RS256'));
  return importSPKI(pem, 'ES256').catch(() => importSPKI(pem, 'RS256'));
}

/** Verifies and reads a signed trust list. Throws TrustListError with the reason. */
export async function verifyTrustList(jws: string, authorityPem: string, now = new Date()): Promise<TrustListContent> {
  const text = jws.trim();
  if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(text)) throw new TrustListError('the trust list is not a signed JWS (compact serialisation): an unsigned list is refused');
  let payload: Uint8Array;
  let alg: string | undefined;
  try {
    const key = await authorityKey(authorityPem);
    const r = await compactVerify(text, key, { algorithms: ['ES256', 'ES384', 'RS256', 'PS256'] });
    payload = r.payload;
    alg = r.protectedHeader.alg;
  } catch (e) {
    throw new TrustListError(`the trust list signature does not verify with the authority key (${(e as Error).message}): the list may have been altered or signed by someone else`);
  }
  let content: TrustListContent;
  try {
    content = ListSchema.parse(JSON.parse(new TextDecoder().decode(payload)));
  } catch (e) {
    throw new TrustListError(`the trust list (signed with ${alg}) has invalid content: ${(e as Error).message}`);
  }
  if (content.expiresAt && new Date(content.expiresAt).getTime() < now.getTime()) throw new TrustListError(`the trust list expired on ${content.expiresAt}`);
  return content;
}

/** Holds the list in force; reloading keeps it when the new file is not a valid signed list. */
export class TrustList {
  private current: TrustListContent | undefined;
  private byDn = new Map<string, TrustListEntry>();

  constructor(
    private readonly file: string,
    private readonly authorityPem: string,
    private readonly log: Logger,
  ) {}

  get content(): TrustListContent | undefined {
    return this.current;
  }

  /** Loads the file; on failure the previous list (if any) stays in force and the error is returned. */
  async reload(): Promise<{ ok: true; entries: number; version: number } | { ok: false; error: string }> {
    try {
      const content = await verifyTrustList(await readFile(this.file, 'utf8'), this.authorityPem);
      if (this.current && content.version < this.current.version) throw new TrustListError(`the trust list version ${content.version} is older than the one in force (${this.current.version}): refused`);
      this.current = content;
      this.byDn = new Map(content.entries.map((e) => [normaliseDn(e.subjectDn), e]));
      this.log.info({ file: this.file, version: content.version, entries: content.entries.length, issuer: content.issuer }, 'trust list loaded');
      return { ok: true, entries: content.entries.length, version: content.version };
    } catch (e) {
      const error = e instanceof TrustListError ? e.message : `cannot read the trust list ${this.file}: ${(e as Error).message}`;
      this.log.error({ file: this.file, error, inForce: this.current?.version ?? null }, 'trust list refused; the previous list stays in force');
      return { ok: false, error };
    }
  }

  /** The entry for a peer certificate's subject DN, if trusted. */
  lookup(subjectDn: string): TrustListEntry | undefined {
    return this.byDn.get(normaliseDn(subjectDn));
  }
}

/** Signs a trust list (for the list authority: ES256 with a P-256 key, RS256 with an RSA key). The content is validated first. */
export async function signTrustList(content: unknown, privateKeyPem: string): Promise<string> {
  const list = ListSchema.parse(content);
  const { createPrivateKey } = await import('node:crypto');
  const alg = createPrivateKey(privateKeyPem).asymmetricKeyType === 'ec' ? 'ES256' : 'RS256';
  const key = await importPKCS8(privateKeyPem, alg);
  return new CompactSign(new TextEncoder().encode(JSON.stringify(list))).setProtectedHeader({ alg, typ: 'opendrim-trust-list+jws' }).sign(key);
}
