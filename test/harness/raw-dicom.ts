/**
 * Hand-built DICOM upper-layer PDUs (PS3.8 9.3), to send what no well-behaved toolkit would: truncated data
 * sets, oversized or unknown PDUs, a peer vanishing mid-transfer.
 */
import net from 'node:net';

const pad16 = (s: string) => Buffer.from(s.padEnd(16, ' ').slice(0, 16), 'ascii');

function item(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h[0] = type;
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

export function associateRq(calledAe: string, callingAe: string, contexts: Array<{ id: number; abstract: string; syntaxes: string[] }>, maxPdu = 16384): Buffer {
  const fixed = Buffer.alloc(68);
  fixed.writeUInt16BE(1, 0);
  pad16(calledAe).copy(fixed, 4);
  pad16(callingAe).copy(fixed, 20);
  const items = [item(0x10, Buffer.from('1.2.840.10008.3.1.1.1'))];
  for (const c of contexts) {
    const head = Buffer.from([c.id, 0, 0, 0]);
    items.push(item(0x20, Buffer.concat([head, item(0x30, Buffer.from(c.abstract)), ...c.syntaxes.map((t) => item(0x40, Buffer.from(t)))])));
  }
  const max = Buffer.alloc(4);
  max.writeUInt32BE(maxPdu);
  items.push(item(0x50, Buffer.concat([item(0x51, max), item(0x52, Buffer.from('1.2.3.4'))])));
  const body = Buffer.concat([fixed, ...items]);
  const h = Buffer.alloc(6);
  h[0] = 0x01;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

export function pdata(contextId: number, isCommand: boolean, isLast: boolean, data: Buffer): Buffer {
  const pdv = Buffer.alloc(6);
  pdv.writeUInt32BE(data.length + 2, 0);
  pdv[4] = contextId;
  pdv[5] = (isCommand ? 1 : 0) | (isLast ? 2 : 0);
  const h = Buffer.alloc(6);
  h[0] = 0x04;
  h.writeUInt32BE(pdv.length + data.length, 2);
  return Buffer.concat([h, pdv, data]);
}

function el(group: number, elem: number, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(elem, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}
const uid = (s: string) => Buffer.from(s.length % 2 ? s + '\0' : s, 'ascii');
const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};

/** A C-STORE-RQ command set, implicit VR little endian (PS3.7 9.3.1.1). */
export function cStoreCommand(sopClass: string, sopInstance: string, messageId = 1): Buffer {
  const body = Buffer.concat([el(0, 0x0002, uid(sopClass)), el(0, 0x0100, us(0x0001)), el(0, 0x0110, us(messageId)), el(0, 0x0700, us(0)), el(0, 0x0800, us(0x0000)), el(0, 0x1000, uid(sopInstance))]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length);
  return Buffer.concat([el(0, 0x0000, len), body]);
}

/** Status (0000,0900) of the first DIMSE response in `buf`, if any. */
export function responseStatus(buf: Buffer): number | undefined {
  const marker = Buffer.from([0x00, 0x00, 0x00, 0x09, 0x02, 0x00, 0x00, 0x00]);
  const i = buf.indexOf(marker);
  return i < 0 ? undefined : buf.readUInt16LE(i + 8);
}

export class RawAssociation {
  readonly socket: net.Socket;
  private received = Buffer.alloc(0);
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d) => (this.received = Buffer.concat([this.received, d])));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  /** `localAddress`: another loopback address plays another host. */
  static connect(port: number, localAddress?: string): Promise<RawAssociation> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(new RawAssociation(s)));
      s.once('error', reject);
    });
  }

  get data(): Buffer {
    return this.received;
  }

  send(b: Buffer): void {
    this.socket.write(b);
  }

  /** Waits until the peer has sent something matching `pred`, or closed, or the time is up. */
  async waitFor(pred: (b: Buffer) => boolean, ms = 5000): Promise<boolean> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (pred(this.received)) return true;
      if (this.closed) return pred(this.received);
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
