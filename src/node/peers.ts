import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import type { Logger } from '../common/log.js';
import { addCidr, tlsMaterial, type Config, type Peer } from '../config/config.js';
import type { Remote } from '../dicom/scu.js';

/** How to reach a configured peer: its address, and for TLS peers our certificate and the trusted authority. */
export function remoteFor(config: Config, peer: Peer): Remote {
  const base = { aeTitle: peer.aeTitle, host: peer.host, port: peer.port };
  if (!peer.tls) return base;
  const m = tlsMaterial(config);
  if (!m) throw new Error(`peer ${peer.aeTitle} is marked tls but no tls certificate is configured`);
  return { ...base, tls: { cert: m.cert, key: m.key, ca: m.ca, rejectUnauthorized: true, minVersion: 'TLSv1.2' } };
}

/**
 * Where each configured peer may call from: its `host` (an address, or a name resolved now and every five
 * minutes), its `from` networks, or anywhere when it says `anyHost` (modalities on DHCP).
 */
export class PeerOrigins {
  private resolved = new Map<string, Set<string>>();
  private readonly networks = new Map<string, BlockList>();

  constructor(
    private readonly peers: Peer[],
    private readonly log: Logger,
  ) {
    for (const p of peers) {
      const list = new BlockList();
      for (const cidr of p.from ?? []) addCidr(list, cidr);
      this.networks.set(p.aeTitle, list);
    }
    void this.refresh();
    setInterval(() => void this.refresh(), 5 * 60_000).unref();
  }

  private async refresh(): Promise<void> {
    const next = new Map<string, Set<string>>();
    for (const p of this.peers) {
      if (isIP(p.host)) next.set(p.aeTitle, new Set([p.host]));
      else {
        try {
          next.set(p.aeTitle, new Set((await lookup(p.host, { all: true })).map((a) => a.address)));
        } catch (e) {
          // Keep what was known: a DNS hiccup must not lock a PACS out.
          next.set(p.aeTitle, this.resolved.get(p.aeTitle) ?? new Set());
          this.log.warn({ peer: p.aeTitle, host: p.host, err: (e as Error).message }, 'peer host name could not be resolved');
        }
      }
    }
    this.resolved = next;
  }

  allows(peer: Peer, remote: string): boolean {
    if (peer.anyHost) return true;
    const addr = remote.replace(/^::ffff:/, '');
    if (this.resolved.get(peer.aeTitle)?.has(addr) || peer.host === addr) return true;
    const family = isIP(addr);
    return family !== 0 && (this.networks.get(peer.aeTitle)?.check(addr, family === 6 ? 'ipv6' : 'ipv4') ?? false);
  }
}
