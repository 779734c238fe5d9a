import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import Provider, { type Configuration } from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';
import type { Logger } from '../../common/log.js';
import { TEST_ACCOUNTS, TEST_PIN, userInfoClaims, type TestAccount } from './accounts.js';

export interface PscClient {
  clientId: string;
  /** Client secret (client_secret_basic), or the subject DN of the client's certificate (tls_client_auth, RFC 8705). */
  clientSecret?: string;
  tlsSubjectDn?: string;
  redirectUris: string[];
  postLogoutRedirectUris?: string[];
}

export interface PscServerOptions {
  host: string;
  port: number;
  clients: PscClient[];
  log: Logger;
  accounts?: TestAccount[];
  /** Access token lifetime (default 600 s); short values make relying parties renew often (tests). */
  accessTokenTtlSeconds?: number;
  /** Serve HTTPS (as PSC does), asking clients for a certificate (mutual TLS client authentication, RFC 8705). */
  tls?: { cert: Buffer; key: Buffer; ca: Buffer };
}

/** The subject of a presented certificate as "CN=a,O=b,C=FR", attribute order as in the certificate. */
function subjectOf(socket: TLSSocket): string | undefined {
  const c = socket.getPeerCertificate?.();
  if (!c?.subject) return undefined;
  return Object.entries(c.subject)
    .flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => `${k}=${x}`) : [`${k}=${v}`]))
    .join(',');
}
const dnKey = (dn: string) => dn.split(/,(?=\s*[A-Za-z]+=)/).map((p) => p.trim()).sort().join(',');

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * A stand-in for Pro Santé Connect, the national OpenID provider of health professionals: authorization code
 * flow with PKCE (S256 required), acr `eidas1`, PSC-shaped UserInfo (SubjectNameID, SubjectRefPro), refresh
 * tokens, RP-initiated logout. Its login page plays the e-CPS app: pick a test account, type the PIN. Built on
 * oidc-provider; never imported by product code, which talks to it only through OpenID Connect.
 */
export class PscServer {
  private server!: http.Server | https.Server;
  provider!: Provider;

  constructor(private readonly opts: PscServerOptions) {}

  get issuer(): string {
    const a = this.server.address();
    const port = typeof a === 'object' && a ? a.port : this.opts.port;
    return `${this.opts.tls ? 'https' : 'http'}://${this.opts.host}:${port}`;
  }

  private accounts(): TestAccount[] {
    return this.opts.accounts ?? TEST_ACCOUNTS;
  }

  async start(): Promise<this> {
    // Listen first: the issuer URL carries the port.
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    this.server = this.opts.tls ? https.createServer({ ...this.opts.tls, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, handler) : http.createServer(handler);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: `psc-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };
    const accounts = this.accounts();
    const config: Configuration = {
      clients: this.opts.clients.map((c) => ({
        client_id: c.clientId,
        ...(c.tlsSubjectDn ? { token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: c.tlsSubjectDn } : { client_secret: c.clientSecret, token_endpoint_auth_method: 'client_secret_basic' }),
        redirect_uris: c.redirectUris,
        post_logout_redirect_uris: c.postLogoutRedirectUris ?? [],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      })),
      jwks: { keys: [jwk as any] },
      cookies: { keys: [randomBytes(32).toString('hex')] },
      pkce: { methods: ['S256'], required: () => true },
      clientAuthMethods: ['client_secret_basic', 'tls_client_auth'],
      acrValues: ['eidas1'],
      scopes: ['openid', 'scope_all', 'offline_access'],
      claims: {
        openid: ['sub'],
        scope_all: ['SubjectNameID', 'preferred_username', 'family_name', 'given_name', 'SubjectRefPro', 'SubjectOrganization', 'birthdate', 'gender', 'ins', 'ins_oid'],
      },
      findAccount: async (_ctx, sub) => {
        const a = accounts.find((x) => x.sub === sub);
        if (!a) return undefined;
        return { accountId: sub, claims: async () => userInfoClaims(a) as { sub: string } };
      },
      features: {
        mTLS: {
          enabled: Boolean(this.opts.tls),
          tlsClientAuth: true,
          getCertificate: (ctx: any) => {
            const raw = (ctx.socket as TLSSocket).getPeerCertificate?.()?.raw;
            return raw ? `-----BEGIN CERTIFICATE-----\n${raw.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n` : undefined;
          },
          certificateAuthorized: (ctx: any) => (ctx.socket as TLSSocket).authorized === true,
          certificateSubjectMatches: (ctx: any, property: string, expected: string) => property === 'tls_client_auth_subject_dn' && dnKey(subjectOf(ctx.socket as TLSSocket) ?? '') === dnKey(expected),
        },
        devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true, logoutSource: async (ctx, form) => {
        // Logout needs no confirmation page here: submit the provider's form at once.
        ctx.body = `<!doctype html><html><body>${form}<script>document.forms[0].submit()</script></body></html>`;
      } } },
      interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      ttl: { AccessToken: this.opts.accessTokenTtlSeconds ?? 600, IdToken: 600, AuthorizationCode: 60, RefreshToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
      renderError: async (ctx, out) => {
        ctx.type = 'html';
        ctx.body = `<!doctype html><title>Pro Santé Connect (simulateur)</title><h1>Erreur</h1><pre>${esc(JSON.stringify(out, null, 2))}</pre>`;
      },
    };
    this.provider = new Provider(this.issuer, config);
    this.provider.on('server_error', (_ctx, err) => this.opts.log.error({ err }, 'PSC stand-in error'));
    return this;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const m = /^\/interaction\/([\w-]+)(\/login)?$/.exec((req.url ?? '').split('?')[0]!);
      if (m) return await this.interaction(req, res, m[2] !== undefined);
      await (this.provider.callback() as (req: IncomingMessage, res: ServerResponse) => Promise<void>)(req, res);
    } catch (e) {
      this.opts.log.error({ err: e }, 'PSC stand-in request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('PSC stand-in error');
    }
  }

  /** The e-CPS step: choose a test account and type its PIN; the provider then grants the requested scopes. */
  private async interaction(req: IncomingMessage, res: ServerResponse, submit: boolean): Promise<void> {
    const details = await this.provider.interactionDetails(req, res);
    const accounts = this.accounts();
    if (!submit) {
      const options = accounts.map((a) => `<option value="${esc(a.sub)}">${esc(a.label)}</option>`).join('');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Pro Santé Connect (simulateur)</title></head>
<body><h1>Pro Santé Connect <small>(simulateur de test)</small></h1>
<form method="post" action="/interaction/${esc(details.uid)}/login">
<label>Carte e-CPS <select name="account" id="account">${options}</select></label>
<label>Code PIN <input name="pin" id="pin" type="password" autocomplete="off"></label>
<button type="submit" id="connect">Se connecter</button></form></body></html>`);
      return;
    }
    const body = new URLSearchParams(await readBody(req));
    const account = accounts.find((a) => a.sub === body.get('account'));
    if (!account || body.get('pin') !== TEST_PIN) {
      await this.provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'e-CPS authentication failed (unknown account or wrong PIN)' }, { mergeWithLastSubmission: false });
      return;
    }
    const grant = new this.provider.Grant({ accountId: account.sub, clientId: details.params.client_id as string });
    grant.addOIDCScope(String(details.params.scope ?? 'openid'));
    const grantId = await grant.save();
    await this.provider.interactionFinished(req, res, { login: { accountId: account.sub, acr: 'eidas1', amr: ['pin', 'mca'] }, consent: { grantId } }, { mergeWithLastSubmission: false });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function readBody(req: IncomingMessage, limit = 16 * 1024): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw new Error('form too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}
