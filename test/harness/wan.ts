/**
 * A simulated wide-area link for benchmarks: a TCP proxy that delays every chunk by a one-way latency and holds
 * each direction to a bandwidth, between a consumer box and a source box on this machine. TLS passes through.
 */
import net from 'node:net';
import { Bandwidth } from '../../src/common/bandwidth.js';

export interface Wan {
  port: number;
  bytes: { down: number; up: number };
  close(): Promise<void>;
}

export async function startWan(target: { host: string; port: number }, link: { latencyMs: number; mbps: number }): Promise<Wan> {
  const down = Bandwidth.megabits(link.mbps);
  const up = Bandwidth.megabits(link.mbps);
  const bytes = { down: 0, up: 0 };
  const sockets = new Set<net.Socket>();
  // Bandwidth is taken in order; each chunk is then delivered `latencyMs` later (a pipeline delay, not a pause
  // per chunk), and reading pauses while too much is in flight, as a real link's window would.
  const pipe = (from: net.Socket, to: net.Socket, bw: Bandwidth, count: (n: number) => void) => {
    let chain = Promise.resolve();
    let inFlight = 0;
    from.on('data', (chunk: Buffer) => {
      inFlight += chunk.length;
      if (inFlight > 4 * 1024 * 1024) from.pause();
      chain = chain.then(() => bw.take(chunk.length)).then(() => {
        setTimeout(() => {
          count(chunk.length);
          inFlight -= chunk.length;
          if (!to.destroyed) to.write(chunk);
          if (inFlight <= 4 * 1024 * 1024 && from.isPaused()) from.resume();
        }, link.latencyMs);
      });
    });
    from.on('end', () => void chain.then(() => setTimeout(() => to.end(), link.latencyMs + 1)));
    from.on('error', () => to.destroy());
    to.on('error', () => from.destroy());
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    pipe(client, upstream, up, (n) => (bytes.up += n));
    pipe(upstream, client, down, (n) => (bytes.down += n));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    bytes,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
