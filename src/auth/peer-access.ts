import { X509Certificate, type KeyObject } from 'node:crypto';
import type { TLSSocket, PeerCertificate } from 'node:tls';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../common/log.js';
import type { TrustList, TrustListEntry } from './trust-list.js';
import { TokenError, verifyProfessionalToken, type VerifiedToken } from './professional-token.js';

/** Who is calling on the DRIMbox-to-DRIMbox port, once mutual TLS, the trust list and the token have all passed. */
export interface PeerCaller {
  box: TrustListEntry;
  certificateDn: string;
  token: VerifiedToken;
}

export type PeerRequest = FastifyRequest & {
  peerCaller?: PeerCaller;
  /** The box itself, when the request is one a box makes on its own behalf (a routed study pushed here). */
  peerBox?: { box: TrustListEntry; certificateDn: string };
  peerRefusal?: { box?: string; certificateDn?: string; reason: string };
};

/** A peer certificate's subject as a DN string (multi-valued attributes repeated). */
export function subjectDn(cert: PeerCertificate): string {
  return Object.entries(cert.subject ?? {})
    .flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => `${k}=${x}`) : [`${k}=${v}`]))
    .join(',');
}

export interface PeerAccessOptions {
  trustList: TrustList;
  /** Origins under which this box is reached (token audience). */
  audience: () => string[];
  maxTokenLifetimeSeconds: number;
  log: Logger;
  /**
   * Requests a box makes for itself, with no practitioner behind them (automatic routing pushes studies): the
   * certificate and the trust list identify the box, and `boxAllowed` must accept it. Undefined: none.
   */
  boxRequest?: { matches: (req: FastifyRequest) => boolean; boxAllowed: (domain: string) => boolean; what: string };
}

/**
 * fastify onRequest hook guarding the images this box serves to other DRIMboxes. Three checks, each with its
 * own answer so the calling box's operator knows what to fix:
 * - a client certificate issued by a CA this box trusts (403 otherwise; the TLS layer asks for it but does not
 *   drop the connection, so the refusal can be explained and audited);
 * - its subject DN in the signed trust list in force (403 otherwise);
 * - a professional token signed with that certificate's key, addressed to this box, issued by the box's
 *   domain, not expired (401 otherwise, with a WWW-Authenticate challenge).
 */
export function peerAccessGuard(opts: PeerAccessOptions) {
  const keys = new WeakMap<object, KeyObject>();
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const req = request as PeerRequest;
    const socket = req.socket as TLSSocket;
    const refuse = (status: 401 | 403, reason: string, info: { box?: string; certificateDn?: string } = {}) => {
      req.peerRefusal = { ...info, reason };
      opts.log.warn({ remote: socket.remoteAddress, url: req.url, status, ...info, reason }, 'DRIMbox request refused');
      // RFC 6750 3: error_description is restricted to printable ASCII without quotes or backslashes.
      if (status === 401) reply.header('WWW-Authenticate', `Bearer realm="opendrim", error="invalid_token", error_description="${reason.replace(/[^\x20-\x7e]|["\\]/g, '').slice(0, 200)}"`);
      return reply.code(status).type('application/json').send({ error: reason });
    };
    const cert = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate() : undefined;
    if (!cert || !cert.raw) return refuse(403, 'a client certificate is required: DRIMboxes authenticate each other with mutual TLS');
    const dn = subjectDn(cert);
    if (!socket.authorized) return refuse(403, `the client certificate is not accepted (${socket.authorizationError ?? 'unknown issuer'})`, { certificateDn: dn });
    const box = opts.trustList.lookup(dn);
    if (!box) {
      const v = opts.trustList.content?.version;
      return refuse(403, `the box with certificate "${dn}" is not in the trust list${v === undefined ? ' (no valid trust list is loaded)' : ` in force (version ${v})`}`, { certificateDn: dn });
    }
    if (opts.boxRequest?.matches(req)) {
      if (!opts.boxRequest.boxAllowed(box.domain)) return refuse(403, `the box ${box.domain} is not allowed to ${opts.boxRequest.what} here`, { box: box.domain, certificateDn: dn });
      req.peerBox = { box, certificateDn: dn };
      return;
    }
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (!m) return refuse(401, 'a professional token is required (Authorization: Bearer …) identifying the practitioner who asks for these images', { box: box.domain, certificateDn: dn });
    let publicKey = keys.get(cert.raw);
    if (!publicKey) {
      publicKey = new X509Certificate(cert.raw).publicKey;
      keys.set(cert.raw, publicKey);
    }
    try {
      const token = await verifyProfessionalToken(m[1]!, { publicKey, issuer: box.domain, audience: opts.audience(), maxLifetimeSeconds: opts.maxTokenLifetimeSeconds });
      req.peerCaller = { box, certificateDn: dn, token };
    } catch (e) {
      if (e instanceof TokenError) return refuse(401, e.message, { box: box.domain, certificateDn: dn });
      throw e;
    }
  };
}
