import { tlsMaterial, type Config, type Peer } from '../config/config.js';
import type { Remote } from '../dicom/scu.js';

/** How to reach a configured peer: its address, and for TLS peers our certificate and the trusted authority. */
export function remoteFor(config: Config, peer: Peer): Remote {
  const base = { aeTitle: peer.aeTitle, host: peer.host, port: peer.port };
  if (!peer.tls) return base;
  const m = tlsMaterial(config);
  if (!m) throw new Error(`peer ${peer.aeTitle} is marked tls but no tls certificate is configured`);
  return { ...base, tls: { cert: m.cert, key: m.key, ca: m.ca, rejectUnauthorized: true, minVersion: 'TLSv1.2' } };
}
