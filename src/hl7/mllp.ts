import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from '../common/log.js';
import { buildAck, Hl7ParseError, parseMessage, type AckError, type Hl7Message } from './message.js';

/** MLLP framing (HL7 v2 Minimal Lower Layer Protocol): <VT> message <FS><CR>. */
const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

export interface Hl7Reply {
  code: 'AA' | 'AE' | 'AR';
  errors?: AckError[];
}

/** What the application does with one message; the listener turns the answer (or a thrown error) into the ACK. */
export type Hl7Handler = (msg: Hl7Message, ctx: { remoteAddress: string }) => Promise<Hl7Reply>;

export interface MllpServerOptions {
  host: string;
  port: number;
  handler: Hl7Handler;
  log: Logger;
  /** Largest message accepted; larger ones get an AR and are discarded up to their end marker. */
  maxMessageBytes?: number;
  maxSegmentLength?: number;
  idleTimeoutMs?: number;
  maxConnections?: number;
  /** Sending application/facility written in our ACKs' MSH-3/4. */
  application?: string;
  facility?: string;
  tls?: tls.TlsOptions;
}

/**
 * The MLLP listener. Each connection handles one message at a time (the sender waits for the ACK), input is
 * bounded, any malformed frame or message gets a negative ACK, and nothing a peer sends can crash the process.
 */
export class MllpServer {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly opts: MllpServerOptions) {}

  get port(): number {
    const a = this.server?.address();
    return typeof a === 'object' && a ? a.port : this.opts.port;
  }

  async listen(): Promise<void> {
    const onConnection = (socket: net.Socket) => this.accept(socket);
    this.server = this.opts.tls ? tls.createServer({ ...this.opts.tls }, onConnection) : net.createServer(onConnection);
    this.server.maxConnections = this.opts.maxConnections ?? 64;
    this.server.on('error', (e) => this.opts.log.error({ err: e }, 'HL7 listener error'));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port, this.opts.host, () => {
        this.server!.off('error', reject);
        resolve();
      });
    });
  }

  /** Stops accepting, lets messages being processed finish (their ACK is sent), then closes connections. */
  async close(graceMs = 5000): Promise<void> {
    if (!this.server) return;
    const closed = new Promise<void>((r) => this.server!.close(() => r()));
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, graceMs).unref())]);
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private accept(socket: net.Socket): void {
    const { log } = this.opts;
    const remoteAddress = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const max = this.opts.maxMessageBytes ?? 32 * 1024 * 1024;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.setTimeout(this.opts.idleTimeoutMs ?? 300_000, () => {
      log.info({ remote: remoteAddress }, 'HL7 connection idle, closing');
      socket.destroy();
    });
    socket.on('error', (e) => log.debug({ err: e, remote: remoteAddress }, 'HL7 connection error'));
    socket.on('close', () => this.sockets.delete(socket));

    let chunks: Buffer[] = [];
    let size = 0;
    let inFrame = false;
    let oversize = false;
    const queue: Buffer[] = [];
    let busy = false;

    const pump = async () => {
      if (busy) return;
      busy = true;
      while (queue.length) {
        const frame = queue.shift()!;
        const p = this.process(frame, remoteAddress).then((ack) => {
          if (!socket.destroyed) socket.write(frame_(ack));
        });
        this.inFlight.add(p);
        await p.catch((e) => log.error({ err: e }, 'HL7 message processing failed'));
        this.inFlight.delete(p);
      }
      busy = false;
    };

    socket.on('data', (data: Buffer) => {
      let start = 0;
      for (let i = 0; i < data.length; i++) {
        const b = data[i]!;
        if (!inFrame) {
          if (b === VT) {
            inFrame = true;
            chunks = [];
            size = 0;
            oversize = false;
            start = i + 1;
          }
          // Bytes between frames (stray CR/LF from some senders) are ignored.
          continue;
        }
        if (b === FS && (i + 1 < data.length ? data[i + 1] === CR : true)) {
          size += i - start;
          if (size > max) oversize = true;
          if (!oversize) chunks.push(data.subarray(start, i));
          const frame = oversize ? null : Buffer.concat(chunks);
          inFrame = false;
          chunks = [];
          if (frame) queue.push(frame);
          else {
            log.warn({ remote: remoteAddress, bytes: size }, 'HL7 message larger than the limit rejected');
            queue.push(Buffer.from(`\u0000oversize:${size}`));
          }
          if (i + 1 < data.length) i++;
          start = i + 1;
        }
      }
      if (inFrame) {
        const tail = data.subarray(start);
        size += tail.length;
        if (size > max) {
          oversize = true;
          chunks = [];
        } else chunks.push(tail);
      }
      void pump();
    });
  }

  private async process(frame: Buffer, remoteAddress: string): Promise<string> {
    const sender = { application: this.opts.application ?? 'OPENDRIM', facility: this.opts.facility ?? '' };
    if (frame[0] === 0 && frame.subarray(1, 10).toString() === 'oversize:') {
      const limit = this.opts.maxMessageBytes ?? 32 * 1024 * 1024;
      return buildAck(undefined, 'AR', [{ code: '207', text: `message larger than the ${limit}-byte limit` }], sender);
    }
    const text = decode(frame);
    let msg: Hl7Message;
    try {
      msg = parseMessage(text, { maxSegmentLength: this.opts.maxSegmentLength });
    } catch (e) {
      const reason = e instanceof Hl7ParseError ? e.message : 'unreadable message';
      this.opts.log.warn({ remote: remoteAddress, reason }, 'malformed HL7 message rejected');
      return buildAck(undefined, 'AR', [{ code: '102', text: reason }], sender);
    }
    try {
      const reply = await this.opts.handler(msg, { remoteAddress });
      return buildAck(msg, reply.code, reply.errors, sender);
    } catch (e) {
      this.opts.log.error({ err: e, type: msg.type, controlId: msg.controlId }, 'HL7 handler failed');
      return buildAck(msg, 'AE', [{ code: '207', text: `internal error: ${(e as Error).message}`.slice(0, 200) }], sender);
    }
  }
}

function frame_(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(body.length + 3);
  out[0] = VT;
  body.copy(out, 1);
  out[body.length + 1] = FS;
  out[body.length + 2] = CR;
  return out;
}

/**
 * MSH-18 names the character set; French RIS send "UNICODE UTF-8" or "8859/1". Undeclared text is read as UTF-8
 * when it is valid UTF-8, else as Latin-1 (the usual undeclared encoding), so accents are not turned into U+FFFD.
 */
export function decode(bytes: Buffer): string {
  const head = bytes.subarray(0, Math.min(bytes.length, 1024)).toString('latin1');
  const firstSegment = head.split(/[\r\n]/)[0] ?? '';
  const charset = firstSegment.split(firstSegment[3] ?? '|')[17] ?? '';
  if (/8859\/1|latin/i.test(charset)) return bytes.toString('latin1');
  const utf8 = bytes.toString('utf8');
  if (/UTF-?8/i.test(charset) || !utf8.includes('\uFFFD')) return utf8;
  return bytes.toString('latin1');
}

/** Sends one message over MLLP and resolves with the ACK's text. */
export async function sendMllp(host: string, port: number, message: string, opts: { timeoutMs?: number; tls?: tls.ConnectionOptions } = {}): Promise<string> {
  const payload = frame_(message.replace(/\n/g, '\r'));
  return new Promise<string>((resolve, reject) => {
    const socket = opts.tls ? tls.connect({ host, port, ...opts.tls }) : net.connect({ host, port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no HL7 acknowledgement from ${host}:${port} within ${opts.timeoutMs ?? 30_000} ms`));
    }, opts.timeoutMs ?? 30_000);
    socket.once(opts.tls ? 'secureConnect' : 'connect', () => socket.write(payload));
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      const end = all.indexOf(FS);
      if (all[0] === VT && end > 0) {
        clearTimeout(timer);
        socket.end();
        resolve(decode(all.subarray(1, end)));
      }
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`HL7 connection to ${host}:${port} closed before an acknowledgement`));
    });
  });
}
