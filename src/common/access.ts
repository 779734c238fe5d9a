import { BlockList, isIP } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { addCidr } from '../config/config.js';
import type { Logger } from './log.js';

/**
 * Until user authentication exists, patient data is served only to the networks allowed anonymous access
 * (loopback by default). Returns a fastify onRequest hook.
 */
export function anonymousNetworkGuard(networks: string[], log: Logger, what: string) {
  const allowed = new BlockList();
  for (const cidr of networks) addCidr(allowed, cidr);
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const addr = clientAddress(req);
    if (!allowed.check(addr, isIP(addr) === 6 ? 'ipv6' : 'ipv4')) {
      log.warn({ remote: addr, url: req.url }, `${what} request refused: anonymous access is not allowed from this address`);
      return reply.code(401).type('application/json').send({ error: `authentication required: anonymous ${what} access is only allowed from the networks in dicomweb.anonymousFrom` });
    }
  };
}

/** The client's address, IPv4-mapped IPv6 addresses given in their IPv4 form. */
export function clientAddress(req: FastifyRequest): string {
  const ip = req.socket.remoteAddress ?? '';
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip;
}
