import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../common/log.js';
import { clientAddress } from '../common/access.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import { csrfMatches, type SessionStore } from '../auth/sessions.js';
import { allowed, rolesOf, type Permission, type Role, type RolesConfig } from '../auth/roles.js';
import { LoginError, type PendingLogin, type PscIdentity, type PscLogin } from '../auth/psc-login.js';
import type { Professional } from '../auth/professional-token.js';
import type { DmpExams } from '../consumer/dmp-exams.js';
import type { RemoteExamCache } from '../consumer/remote-exam-cache.js';
import type { PacsImports } from '../consumer/pacs-import.js';
import { importRoutes } from './import-routes.js';
import type { IncomingStudies } from '../routing/incoming-studies.js';
import type { ReconciliationQueue } from '../identity/reconciliation-queue.js';
import { reconciliationRoutes } from './reconciliation-routes.js';
import { mediaRoutes } from './media-routes.js';
import { routingRoutes } from './routing-routes.js';
import { auditPageRoutes } from './audit-routes.js';
import { publicationRoutes } from './publication-routes.js';
import type { PublicationQueue } from '../source/publication-queue.js';
import type { RouteOutbox } from '../routing/outbox.js';
import type { MediaImport } from '../media/media-import.js';
import { prefetchRoutes } from './prefetch-routes.js';
import type { Prefetcher } from '../prefetch/prefetcher.js';
import type { StudyIndex } from '../store/study-index.js';
import type { BlobStore } from '../store/blobs.js';
import { MESSAGES, pickLang, type Lang, type Messages } from './i18n.js';
import { esc, page, type PageContext } from './html.js';
import { patientRoutes, type PatientContext } from './patient-routes.js';
import { IMPORT_MAP_HASH, viewerRoutes, type OpenExam } from './viewer-routes.js';
import { HttpError } from '../dicomweb/wado.js';
import { clientMessage } from '../common/errors.js';

export const SESSION_COOKIE = 'opendrim_session';
const LOGIN_COOKIE = 'opendrim_login';

/** What a practitioner's web session holds. */
export interface UserSession {
  sub: string;
  professional: Professional;
  tokens: PscIdentity['tokens'];
  patient?: PatientContext;
  /** Exams opened in this session (from their KOS), by Study Instance UID. */
  exams: Record<string, OpenExam>;
}

export interface WebDeps {
  sessions: SessionStore;
  psc: PscLogin;
  exams: DmpExams;
  remote: RemoteExamCache;
  imports?: PacsImports;
  prefetcher?: Prefetcher;
  /** Studies from other institutions and the manual reconciliation queue, when `incoming` is configured. */
  incoming?: IncomingStudies;
  reconciliation?: ReconciliationQueue;
  /** The routing outbox, when routing has rules. */
  outbox?: RouteOutbox;
  /** The source function's publication queue, when this box publishes to the DMP. */
  publications?: PublicationQueue;
  /** Import of patients' media (CD, DVD, USB, zip/XDM), when `incoming` is configured. */
  media?: MediaImport;
  mediaLimits?: { maxBytes: number; maxFiles: number };
  mediaWorkDir?: string;
  index: StudyIndex;
  blobs: BlobStore;
  audit: AuditTrail;
  log: Logger;
  secureCookies: boolean;
  loginPerMinute: number;
  roles: RolesConfig;
  redundancyWindowDays: number;
  sessionIdleMs: number;
}

export type WebRequest = FastifyRequest & {
  /** The logged-in practitioner's roles here (from PSC profession and know-how, and the configuration). */
  roles?: Role[];
  lang: Lang;
  t: Messages;
  session?: { token: string; data: UserSession; csrf: string };
};

export function pageContext(req: WebRequest): PageContext {
  const s = req.session;
  return { lang: req.lang, t: req.t, csrf: s?.csrf, user: s ? { id: s.data.professional.id, name: [s.data.professional.givenName, s.data.professional.familyName].filter(Boolean).join(' ') || s.data.professional.id } : undefined };
}

/** Only our own paths may be a return target after login (no open redirect). */
function safeReturn(v: unknown): string {
  return typeof v === 'string' && /^\/app(\/|\?|$)/.test(v) && !v.startsWith('//') ? v : '/app';
}

/**
 * The practitioners' web application: Pro Santé Connect login, server-side sessions, the patient's exams from
 * the DMP, reports and the viewer. Served by the node itself, French first, no third-party origin.
 */
export async function webRoutes(app: FastifyInstance, deps: WebDeps): Promise<void> {
  const { sessions, psc, audit, log } = deps;
  await app.register(cookie);
  await app.register(formbody, { bodyLimit: 16 * 1024 });
  // Login is where guessing and flooding start: limited per client address (the PSC does its own limiting too).
  await app.register(rateLimit, { global: false, keyGenerator: (req) => clientAddress(req) });
  const loginLimit = { rateLimit: { max: deps.loginPerMinute, timeWindow: 60_000 } };
  const cookieOpts = { path: '/', httpOnly: true, secure: deps.secureCookies, sameSite: 'lax' as const };

  app.decorateRequest('lang', 'fr');
  app.decorateRequest('t', null);
  app.addHook('onRequest', async (req, reply) => {
    const r = req as WebRequest;
    const q = (req.query as Record<string, unknown> | undefined)?.lang;
    r.lang = pickLang(q, req.cookies.lang);
    r.t = MESSAGES[r.lang];
    if (q === 'en' || q === 'fr') reply.setCookie('lang', r.lang, { path: '/', sameSite: 'lax', secure: deps.secureCookies, maxAge: 365 * 86400 });
    const token = req.cookies[SESSION_COOKIE];
    const s = await sessions.get<UserSession>(token, 'user');
    if (s && token) {
      r.session = { token, data: s.data, csrf: s.csrf };
      r.roles = rolesOf(s.data.professional, deps.roles);
      // Renew PSC tokens shortly before they expire; a refusal ends the session.
      if (s.data.tokens.expiresAt < Date.now() + 60_000 && s.data.tokens.refreshToken) {
        try {
          s.data.tokens = await psc.refresh(s.data.tokens.refreshToken);
          await sessions.update(token, s.data);
        } catch (e) {
          log.info({ err: (e as Error).message }, 'PSC session could not be renewed; logging out');
          await sessions.destroy(token);
          r.session = undefined;
        }
      }
    }
  });
  app.addHook('onSend', async (req, reply) => {
    // A response that sandboxed itself (a report body) keeps its stricter policy.
    if (!String(reply.getHeader('Content-Security-Policy') ?? '').includes('sandbox')) reply.header('Content-Security-Policy', "default-src 'self'; img-src 'self' data: blob:; script-src 'self' " + IMPORT_MAP_HASH + "; style-src 'self'; style-src-attr 'unsafe-inline'; worker-src 'self' blob:; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self' " + new URL(deps.psc.issuerUrl).origin + "; frame-ancestors 'self'");
    if (!reply.hasHeader('X-Frame-Options') || reply.getHeader('X-Frame-Options') === 'DENY') reply.header('X-Frame-Options', req.url.includes('/body') ? 'SAMEORIGIN' : 'DENY');
    if (deps.secureCookies) reply.header('Strict-Transport-Security', 'max-age=31536000');
  });

  /** Routes under /app need a practitioner; pages redirect to login, data answers 401. */
  const requireUser = async (req: FastifyRequest, reply: FastifyReply) => {
    const r = req as WebRequest;
    if (r.session) return;
    if ((req.headers.accept ?? '').includes('text/html')) return reply.redirect(`/auth/login?returnTo=${encodeURIComponent(req.url)}`);
    return reply.code(401).type('application/json').send({ error: 'log in with Pro Santé Connect first' });
  };
  /** Every form post carries the session's CSRF token. */
  const requireCsrf = async (req: FastifyRequest, reply: FastifyReply) => {
    const r = req as WebRequest;
    if (req.method !== 'POST') return;
    const submitted = (req.body as Record<string, unknown> | undefined)?.csrf ?? req.headers['x-csrf-token'];
    if (!r.session || !csrfMatches(r.session.csrf, submitted)) {
      log.warn({ url: req.url, remote: clientAddress(req) }, 'form refused: missing or wrong CSRF token');
      return reply.code(403).type('text/html').send(page(pageContext(r), r.t.forbidden, `<h1>${esc(r.t.forbidden)}</h1><p>${esc(r.t.csrf)}</p>`));
    }
  };

  app.get('/', async (_req, reply) => reply.redirect('/app'));

  /**
   * IHE IID (RAD-106 Invoke Image Display): a RIS or a record system opens the patient's images with
   * `requestType=PATIENT&patientID=<INS>^^^&<OID>&ISO` (or STUDY with a patientID). Mapped onto the contextual
   * launch, which logs the practitioner in first and checks the INS.
   */
  app.get('/IHEInvokeImageDisplay', async (req, reply) => {
    const q = req.query as Record<string, string | undefined>;
    const type = (q.requestType ?? '').toUpperCase();
    if (type !== 'PATIENT' && type !== 'STUDY') return reply.code(400).type('text/plain').send('requestType must be PATIENT or STUDY (IHE IID)');
    const m = /^([^^]+)\^\^\^(?:[^&^]*)&([0-9.]+)&ISO$/.exec(q.patientID ?? '');
    if (!m) return reply.code(400).type('text/plain').send('patientID must be an INS as ID^^^&OID&ISO (IHE IID, CX data type)');
    return reply.redirect(`/app/launch?ins=${encodeURIComponent(m[1]!)}&oid=${encodeURIComponent(m[2]!)}`);
  });

  app.get('/auth/login', { config: loginLimit }, async (req, reply) => {
    const r = req as WebRequest;
    const returnTo = safeReturn((req.query as Record<string, unknown>).returnTo);
    if ((req.query as Record<string, unknown>).go === undefined) {
      return reply.type('text/html').send(
        page(pageContext(r), r.t.loginTitle, `<section class="card login"><h1>${esc(r.t.loginTitle)}</h1><p>${esc(r.t.loginIntro)}</p>
<a class="button primary" id="psc-login" href="/auth/login?go=1&amp;returnTo=${esc(encodeURIComponent(returnTo))}">${esc(r.t.login)}</a></section>`),
      );
    }
    let begun;
    try {
      begun = await psc.begin(returnTo);
    } catch (e) {
      return loginError(r, reply, (e as Error).message);
    }
    const token = await sessions.create<PendingLogin>('login', begun.pending, 10 * 60_000);
    reply.setCookie(LOGIN_COOKIE, token, { ...cookieOpts, maxAge: 600 });
    return reply.redirect(begun.url);
  });

  function loginError(r: WebRequest, reply: FastifyReply, reason: string) {
    return reply
      .code(401)
      .type('text/html')
      .send(page(pageContext(r), r.t.loginFailed, `<section class="card"><h1>${esc(r.t.loginFailed)}</h1><p class="error" id="login-error">${esc(reason)}</p><a class="button" href="/auth/login">${esc(r.t.retry)}</a></section>`));
  }

  app.get('/auth/callback', { config: loginLimit }, async (req, reply) => {
    const r = req as WebRequest;
    const loginToken = req.cookies[LOGIN_COOKIE];
    const pending = await sessions.get<PendingLogin>(loginToken, 'login');
    reply.clearCookie(LOGIN_COOKIE, { path: '/' });
    if (loginToken) await sessions.destroy(loginToken);
    if (!pending) return loginError(r, reply, 'login attempt unknown or expired: start again');
    const q = req.query as Record<string, string>;
    if (q.error) {
      await audit.record({ actorType: 'practitioner', actorId: 'unknown', actorAddress: clientAddress(req), action: 'auth.login', outcome: 'refused', detail: { error: q.error, description: q.error_description } });
      return loginError(r, reply, q.error_description ?? q.error);
    }
    let identity: PscIdentity;
    try {
      identity = await psc.complete(new URL(req.url, psc.redirectUri), pending.data);
    } catch (e) {
      await audit.record({ actorType: 'practitioner', actorId: 'unknown', actorAddress: clientAddress(req), action: 'auth.login', outcome: 'failure', detail: { error: (e as Error).message } });
      if (e instanceof LoginError) return loginError(r, reply, e.message);
      throw e;
    }
    // A fresh session token at login: whatever cookie the browser had before is not reused (no fixation).
    const old = req.cookies[SESSION_COOKIE];
    if (old) await sessions.destroy(old);
    const token = await sessions.create<UserSession>('user', { sub: identity.sub, professional: identity.professional, tokens: identity.tokens, exams: {} });
    reply.setCookie(SESSION_COOKIE, token, cookieOpts);
    await audit.record({ actorType: 'practitioner', actorId: identity.professional.id, actorAddress: clientAddress(req), action: 'auth.login', outcome: 'success', detail: { profession: identity.professional.profession, specialty: identity.professional.specialty, acr: identity.professional.acr } });
    return reply.redirect(pending.data.returnTo);
  });

  app.post('/auth/logout', { preHandler: [requireCsrf] }, async (req, reply) => {
    const r = req as WebRequest;
    const s = r.session!;
    await sessions.destroy(s.token);
    reply.clearCookie(SESSION_COOKIE, { path: '/' });
    await audit.record({ actorType: 'practitioner', actorId: s.data.professional.id, actorAddress: clientAddress(req), action: 'auth.logout', outcome: 'success' });
    const url = await psc.logoutUrl(s.data.tokens.idToken).catch(() => undefined);
    return reply.redirect(url ?? '/auth/login');
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const r = req as WebRequest;
    const status = err instanceof HttpError ? err.status : (err.statusCode ?? 500);
    if (status >= 500) log.error({ err, url: req.url, reqId: req.id }, 'web request failed');
    const message = clientMessage(status, err, req.id);
    if ((req.headers.accept ?? '').includes('text/html')) return reply.code(status).type('text/html').send(page(pageContext(r), String(status), `<section class="card"><h1>${esc(status === 404 ? r.t.notFound : status === 403 ? r.t.forbidden : String(status))}</h1><p class="error">${esc(message)}</p></section>`));
    return reply.code(status).type('application/json').send({ error: message });
  });

  /** Each screen needs a permission (src/auth/roles.ts); a refusal is explained and audited. */
  const requirePermission = (permission: Permission) => async (req: FastifyRequest, reply: FastifyReply) => {
    const r = req as WebRequest;
    if (allowed(r.roles ?? [], permission)) return;
    // The home page is every practitioner's landing place; what it offers depends on the roles.
    if (req.method === 'GET' && req.routeOptions.url === '/app') return;
    await audit.record({ actorType: 'practitioner', actorId: r.session!.data.professional.id, actorAddress: clientAddress(req), action: 'authz.denied', outcome: 'refused', detail: { permission, roles: r.roles, url: req.url.slice(0, 200) } });
    return reply.code(403).type((req.headers.accept ?? '').includes('text/html') ? 'text/html' : 'application/json').send(
      (req.headers.accept ?? '').includes('text/html')
        ? page(pageContext(r), r.t.forbidden, `<section class="card"><h1>${esc(r.t.forbidden)}</h1><p class="error" id="forbidden">${esc(r.t.notAllowed)}</p></section>`)
        : { error: `your roles here (${(r.roles ?? []).join(', ') || 'none'}) do not allow ${permission}` },
    );
  };
  const guarded = (permission: Permission, plugin: (app: FastifyInstance, o: { deps: WebDeps }) => Promise<void>) => async (s: FastifyInstance) => {
    s.addHook('preHandler', requirePermission(permission));
    await s.register(plugin, { deps });
  };
  await app.register(async (scoped) => {
    scoped.addHook('preHandler', requireUser);
    scoped.addHook('preHandler', requireCsrf);
    await scoped.register(guarded('exams.view', patientRoutes));
    await scoped.register(guarded('exams.view', viewerRoutes));
    await scoped.register(guarded('exams.import', importRoutes));
    if (deps.prefetcher) await scoped.register(guarded('prefetch.view', prefetchRoutes));
    if (deps.incoming && deps.reconciliation) await scoped.register(guarded('identity.reconcile', reconciliationRoutes));
    if (deps.media) await scoped.register(guarded('media.import', mediaRoutes));
    if (deps.outbox) await scoped.register(guarded('routing.operate', routingRoutes));
    if (deps.publications) await scoped.register(guarded('publications.operate', publicationRoutes));
    await scoped.register(guarded('audit.view', auditPageRoutes));
  });
}
