import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { DB } from '../store/db.js';

export interface SessionLimits {
  /** A session unused this long ends. */
  idleMs: number;
  /** A session ends this long after login whatever its use. */
  absoluteMs: number;
}

export interface Session<T> {
  kind: string;
  data: T;
  csrf: string;
  createdAt: Date;
  expiresAt: Date;
}

const hash = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * Session data (the practitioner's PSC tokens among it) is encrypted with a key derived from the session token,
 * which only the browser holds: a copy of the table, or of the database, reveals no token and opens nothing.
 */
const dataKey = (token: string) => Buffer.from(hkdfSync('sha256', token, 'opendrim-session', 'session data', 32));
function seal(token: string, data: unknown): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', dataKey(token), iv);
  const body = Buffer.concat([c.update(JSON.stringify(data), 'utf8'), c.final()]);
  return `v1:${Buffer.concat([iv, c.getAuthTag(), body]).toString('base64')}`;
}
function open<T>(token: string, stored: string): T {
  // Sessions written before data was sealed are read as they are.
  if (!stored.startsWith('v1:')) return JSON.parse(stored) as T;
  const raw = Buffer.from(stored.slice(3), 'base64');
  const d = createDecipheriv('aes-256-gcm', dataKey(token), raw.subarray(0, 12));
  d.setAuthTag(raw.subarray(12, 28));
  return JSON.parse(Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8')) as T;
}

/**
 * Server-side sessions shared by every node of a deployment (they live in the database). The browser holds a
 * random 256-bit token; the database holds its hash only, so a copy of the table opens no session. Each
 * session has its own CSRF token for forms.
 */
export class SessionStore {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly limits: SessionLimits,
  ) {}

  /** A new session; returns the token for the cookie. Never reuses a token (no fixation). */
  async create<T>(kind: string, data: T, ttlMs = this.limits.idleMs): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    const now = new Date();
    await this.db
      .insertInto('web_sessions')
      .values({ id_hash: hash(token), kind, data: seal(token, data), csrf: randomBytes(24).toString('base64url'), created_at: now.toISOString(), last_seen: now.toISOString(), expires_at: new Date(now.getTime() + Math.min(ttlMs, this.limits.absoluteMs)).toISOString() })
      .execute();
    return token;
  }

  /** The session of a token, if it exists, is of `kind` and has not expired; its idle time restarts. */
  async get<T>(token: string | undefined, kind: string): Promise<Session<T> | undefined> {
    if (!token || token.length > 100) return undefined;
    const row = await this.db.selectFrom('web_sessions').selectAll().where('id_hash', '=', hash(token)).executeTakeFirst();
    if (!row || row.kind !== kind) return undefined;
    const now = Date.now();
    const created = new Date(row.created_at).getTime();
    if (new Date(row.expires_at).getTime() <= now || now - created > this.limits.absoluteMs) {
      await this.destroy(token);
      return undefined;
    }
    // Sliding idle expiry, written at most once a minute.
    const expires = Math.min(now + this.limits.idleMs, created + this.limits.absoluteMs);
    if (now - new Date(row.last_seen).getTime() > 60_000) {
      await this.db.updateTable('web_sessions').set({ last_seen: new Date(now).toISOString(), expires_at: new Date(expires).toISOString() }).where('id_hash', '=', row.id_hash).execute();
    }
    return { kind: row.kind, data: open<T>(token, row.data), csrf: row.csrf, createdAt: new Date(created), expiresAt: new Date(expires) };
  }

  async update<T>(token: string, data: T): Promise<void> {
    await this.db.updateTable('web_sessions').set({ data: seal(token, data) }).where('id_hash', '=', hash(token)).execute();
  }

  async destroy(token: string): Promise<void> {
    await this.db.deleteFrom('web_sessions').where('id_hash', '=', hash(token)).execute();
  }

  /** Removes expired sessions; returns how many. */
  async sweep(now = new Date()): Promise<number> {
    const r = await this.db.deleteFrom('web_sessions').where('expires_at', '<=', now.toISOString()).executeTakeFirst();
    return Number(r.numDeletedRows ?? 0);
  }
}

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfMatches(expected: string, submitted: unknown): boolean {
  if (typeof submitted !== 'string' || submitted.length !== expected.length) return false;
  return timingSafeEqual(Buffer.from(expected), Buffer.from(submitted));
}
