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

/**
 * The same link in a process of its own: a network is not something the consumer box's event loop pays for, and
 * in one process with the box the proxy's work would be counted against it. Byte counts come back over IPC.
 */
export async function startWanProcess(target: { host: string; port: number }, link: { latencyMs: number; mbps: number }): Promise<Wan> {
  const { fork } = await import('node:child_process');
  const child = fork(new URL(import.meta.url).pathname, ['--wan-child', JSON.stringify({ target, link })], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const bytes = { down: 0, up: 0 };
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`WAN process exited (${code})`)));
    child.once('message', (m: { port: number }) => resolve(m.port));
  });
  child.on('message', (m: { bytes?: { down: number; up: number } }) => {
    if (m.bytes) Object.assign(bytes, m.bytes);
  });
  // Counts pushed by the child every 200 ms and on request; `bytes` is read by the benchmark as it runs.
  return {
    port,
    bytes,
    async close() {
      const exited = new Promise((r) => child.once('exit', r));
      child.send({ close: true });
      await exited;
    },
  };
}

if (process.argv[2] === '--wan-child' && process.send) {
  const { target, link } = JSON.parse(process.argv[3]!) as { target: { host: string; port: number }; link: { latencyMs: number; mbps: number } };
  const wan = await startWan(target, link);
  const report = () => process.send!({ bytes: wan.bytes });
  const timer = setInterval(report, 200);
  process.on('message', (m: { close?: boolean }) => {
    if (!m.close) return;
    clearInterval(timer);
    report();
    void wan.close().then(() => process.exit(0));
  });
  process.send({ port: wan.port });
}
