import * as oidc from 'openid-client';
import type { Logger } from '../common/log.js';
import { mtlsFetch, type ClientTls } from '../common/mtls-fetch.js';
import type { Professional } from './professional-token.js';

export interface PscSettings {
  issuer: string;
  clientId: string;
  /**
   * How this box authenticates to PSC: a client secret, or mutual TLS with its certificate (RFC 8705
   * tls_client_auth), which PSC requires of server-side clients.
   */
  clientAuth: { method: 'client_secret_basic'; secret: string } | { method: 'tls_client_auth'; tls: ClientTls };
  /** Where PSC sends the browser back (…/auth/callback), registered with PSC. */
  redirectUri: string;
  postLogoutRedirectUri?: string;
  scope: string;
  /** Authentication level required (PSC: eidas1). */
  acr: string;
}

/** What the login keeps between the redirect to PSC and the way back. */
export interface PendingLogin {
  state: string;
  nonce: string;
  verifier: string;
  /** Where to go after login (a path of ours). */
  returnTo: string;
}

export interface PscIdentity {
  professional: Professional;
  /** The PSC account (sub), for logout and audit. */
  sub: string;
  tokens: { accessToken: string; refreshToken?: string; idToken?: string; expiresAt: number };
}

export class LoginError extends Error {
  override name = 'LoginError';
}

/**
 * Relying party of Pro Santé Connect (OpenID Connect, authorization code + PKCE S256, acr_values for the e-CPS
 * level), built on openid-client. The userinfo answer is mapped to the professional carried in every
 * DRIMbox-to-DRIMbox request.
 */
export class PscLogin {
  private config: oidc.Configuration | undefined;

  constructor(
    private readonly settings: PscSettings,
    private readonly log: Logger,
  ) {}

  get issuerUrl(): string {
    return this.settings.issuer;
  }

  get redirectUri(): string {
    return this.settings.redirectUri;
  }

  private async configuration(): Promise<oidc.Configuration> {
    if (this.config) return this.config;
    const issuer = new URL(this.settings.issuer);
    // Plain HTTP is accepted for a provider on this machine only (the stand-in in tests and demos).
    const loopback = issuer.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(issuer.hostname);
    const auth = this.settings.clientAuth;
    try {
      this.config =
        auth.method === 'tls_client_auth'
          ? await oidc.discovery(issuer, this.settings.clientId, undefined, oidc.TlsClientAuth(), { [oidc.customFetch]: mtlsFetch(auth.tls, { timeoutMs: 30_000 }) as any, ...(loopback ? { execute: [oidc.allowInsecureRequests] } : {}) })
          : await oidc.discovery(issuer, this.settings.clientId, auth.secret, oidc.ClientSecretBasic(auth.secret), loopback ? { execute: [oidc.allowInsecureRequests] } : undefined);
    } catch (e) {
      throw new LoginError(`Pro Santé Connect cannot be reached at ${this.settings.issuer}: ${(e as Error).message}`);
    }
    return this.config;
  }

  /** The URL to send the browser to, and what to keep until it comes back. */
  async begin(returnTo: string): Promise<{ url: string; pending: PendingLogin }> {
    const config = await this.configuration();
    const verifier = oidc.randomPKCECodeVerifier();
    const pending: PendingLogin = { state: oidc.randomState(), nonce: oidc.randomNonce(), verifier, returnTo };
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: this.settings.redirectUri,
      scope: this.settings.scope,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: pending.state,
      nonce: pending.nonce,
      acr_values: this.settings.acr,
    });
    return { url: url.href, pending };
  }

  /** Completes the login from the callback URL; throws LoginError with a reason fit for the error page. */
  async complete(callbackUrl: URL, pending: PendingLogin): Promise<PscIdentity> {
    const config = await this.configuration();
    let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;
    try {
      tokens = await oidc.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: pending.verifier, expectedState: pending.state, expectedNonce: pending.nonce, idTokenExpected: true });
    } catch (e) {
      const err = e as Error & { error?: string; error_description?: string };
      throw new LoginError(err.error_description ?? err.error ?? err.message);
    }
    const claims = tokens.claims()!;
    if (claims.acr !== this.settings.acr) throw new LoginError(`authentication level ${claims.acr ?? 'none'} is below the required ${this.settings.acr}`);
    const info = (await oidc.fetchUserInfo(config, tokens.access_token, claims.sub)) as Record<string, any>;
    const exercise = info.SubjectRefPro?.exercices?.[0] ?? {};
    const id = String(info.SubjectNameID ?? '');
    if (!id) throw new LoginError('this Pro Santé Connect account carries no practitioner identifier (SubjectNameID): access is for health professionals');
    this.log.info({ sub: claims.sub, id }, 'practitioner logged in with Pro Santé Connect');
    return {
      sub: claims.sub,
      professional: { id, familyName: info.family_name, givenName: info.given_name, profession: exercise.codeProfession, specialty: exercise.codeSavoirFaire, acr: String(claims.acr) },
      tokens: { accessToken: tokens.access_token, refreshToken: tokens.refresh_token, idToken: tokens.id_token, expiresAt: Date.now() + (tokens.expiresIn() ?? 300) * 1000 },
    };
  }

  /** New tokens from the refresh token; throws LoginError when PSC refuses (the session must then end). */
  async refresh(refreshToken: string): Promise<PscIdentity['tokens']> {
    const config = await this.configuration();
    try {
      const t = await oidc.refreshTokenGrant(config, refreshToken);
      return { accessToken: t.access_token, refreshToken: t.refresh_token ?? refreshToken, idToken: t.id_token, expiresAt: Date.now() + (t.expiresIn() ?? 300) * 1000 };
    } catch (e) {
      throw new LoginError(`Pro Santé Connect refused to renew the session: ${(e as Error).message}`);
    }
  }

  /** Where to send the browser to end the PSC session too. */
  async logoutUrl(idToken: string | undefined): Promise<string | undefined> {
    const config = await this.configuration();
    if (!config.serverMetadata().end_session_endpoint) return undefined;
    return oidc.buildEndSessionUrl(config, { ...(idToken ? { id_token_hint: idToken } : {}), ...(this.settings.postLogoutRedirectUri ? { post_logout_redirect_uri: this.settings.postLogoutRedirectUri } : {}) }).href;
  }
}
