import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
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
      .values({ id_hash: hash(token), kind, data: JSON.stringify(data), csrf: randomBytes(24).toString('base64url'), created_at: now.toISOString(), last_seen: now.toISOString(), expires_at: new Date(now.getTime() + Math.min(ttlMs, this.limits.absoluteMs)).toISOString() })
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
    return { kind: row.kind, data: JSON.parse(row.data) as T, csrf: row.csrf, createdAt: new Date(created), expiresAt: new Date(expires) };
  }

  async update<T>(token: string, data: T): Promise<void> {
    await this.db.updateTable('web_sessions').set({ data: JSON.stringify(data) }).where('id_hash', '=', hash(token)).execute();
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
