import { createHash, createHmac, randomBytes, randomInt, scryptSync, timingSafeEqual } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { DB, ShareLinkTable } from '../store/db.js';

export type ShareLink = Selectable<ShareLinkTable>;

export class ShareError extends Error {
  override name = 'ShareError';
  constructor(
    message: string,
    readonly status: 400 | 403 | 404 | 410 | 429,
  ) {
    super(message);
  }
}

const sha256 = (v: string) => createHash('sha256').update(v).digest('hex');

/** The code is kept as a salted scrypt hash: six digits are few, the hash must not be cheap to try them all. */
function hashCode(code: string, salt = randomBytes(16).toString('hex')): string {
  return `${salt}:${scryptSync(code, salt, 32).toString('hex')}`;
}
function codeMatches(code: string, stored: string): boolean {
  const [salt, hash] = stored.split(':');
  const candidate = scryptSync(code, salt!, 32);
  return timingSafeEqual(candidate, Buffer.from(hash!, 'hex'));
}

/**
 * Links that replace the CD: 256 random bits in the URL (only their hash is stored, so the database alone does
 * not open anything), an expiry, an optional six-digit access code given to the patient separately (salted,
 * slow hash; the link locks after a few wrong codes), revocable at any time. One link opens one exam.
 */
export class ShareLinks {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly opts: { maxHours: number; codeAttempts: number },
  ) {}

  async create(p: { studyUid: string; patientId: string; createdBy: string; hours: number; withCode: boolean }): Promise<{ id: number; token: string; code?: string; expiresAt: string }> {
    if (!(p.hours > 0) || p.hours > this.opts.maxHours) throw new ShareError(`a link lasts between a few minutes and ${this.opts.maxHours} hours`, 400);
    const token = randomBytes(32).toString('base64url');
    const code = p.withCode ? String(randomInt(0, 1_000_000)).padStart(6, '0') : undefined;
    const expiresAt = new Date(Date.now() + p.hours * 3600_000).toISOString();
    const r = await this.db
      .insertInto('share_links')
      .values({ token_hash: sha256(token), study_uid: p.studyUid, patient_id: p.patientId, created_by: p.createdBy, code_hash: code ? hashCode(code) : null, expires_at: expiresAt, revoked_at: null, created_at: new Date().toISOString() })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { id: Number(r.id), token, code, expiresAt };
  }

  /** The link a token designates, if it may be opened now; the reason otherwise. */
  async resolve(token: string): Promise<ShareLink> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) throw new ShareError('this link is not valid', 404);
    const link = await this.db.selectFrom('share_links').selectAll().where('token_hash', '=', sha256(token)).executeTakeFirst();
    if (!link) throw new ShareError('this link is not valid', 404);
    if (link.revoked_at) throw new ShareError('this link has been revoked', 410);
    if (Date.parse(link.expires_at) <= Date.now()) throw new ShareError('this link has expired', 410);
    if (link.code_hash && Number(link.failed_codes) >= this.opts.codeAttempts) throw new ShareError('this link is locked after too many wrong access codes: ask for a new one', 403);
    return link;
  }

  /** Checks an access code; a wrong one counts towards locking the link. */
  async checkCode(link: ShareLink, code: string): Promise<boolean> {
    if (!link.code_hash) return true;
    if (/^\d{6}$/.test(code.trim()) && codeMatches(code.trim(), link.code_hash)) return true;
    await this.db.updateTable('share_links').set((eb) => ({ failed_codes: eb('failed_codes', '+', 1) })).where('id', '=', link.id).execute();
    return false;
  }

  /**
   * The proof, kept in a cookie, that the code was given for this link: bound to the link and its code hash, so
   * it is worthless for another link and dies with the link.
   */
  proof(link: ShareLink, token: string): string {
    return createHmac('sha256', link.code_hash ?? 'no-code').update(`${link.id}:${token}`).digest('base64url');
  }

  proofMatches(link: ShareLink, token: string, presented: string | undefined): boolean {
    if (!link.code_hash) return true;
    if (!presented) return false;
    const a = Buffer.from(this.proof(link, token));
    const b = Buffer.from(presented);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  async opened(link: ShareLink): Promise<void> {
    await this.db.updateTable('share_links').set((eb) => ({ opened: eb('opened', '+', 1) })).where('id', '=', link.id).execute();
  }

  async revoke(id: number): Promise<boolean> {
    const r = await this.db.updateTable('share_links').set({ revoked_at: new Date().toISOString() }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async list(filter: { studyUid?: string } = {}): Promise<ShareLink[]> {
    let q = this.db.selectFrom('share_links').selectAll().orderBy('id', 'desc').limit(500);
    if (filter.studyUid) q = q.where('study_uid', '=', filter.studyUid);
    return q.execute();
  }
}
