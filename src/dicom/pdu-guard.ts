import type { Socket } from 'node:net';

/**
 * Watches the raw byte stream of an association and reports the first PDU that breaks the limits, before
 * dcmjs-dimse would buffer it: dcmjs-dimse accumulates a whole PDU in memory whatever length it announces,
 * so a peer announcing a 4 GB PDU would otherwise exhaust memory.
 */
export function guardPdus(socket: Socket, limits: { maxPduLength: number; maxAssociateLength: number }, onViolation: (reason: string) => void): void {
  let header = Buffer.alloc(0);
  let remaining = 0; // bytes of the current PDU body still to skip
  let tripped = false;
  socket.on('data', (chunk: Buffer) => {
    if (tripped) return;
    let off = 0;
    while (off < chunk.length) {
      if (remaining > 0) {
        const take = Math.min(remaining, chunk.length - off);
        remaining -= take;
        off += take;
        continue;
      }
      const need = 6 - header.length;
      header = Buffer.concat([header, chunk.subarray(off, off + need)]);
      off += Math.min(need, chunk.length - off);
      if (header.length < 6) return;
      const type = header[0]!;
      const length = header.readUInt32BE(2);
      header = Buffer.alloc(0);
      let reason: string | undefined;
      if (type < 1 || type > 7) reason = `unknown PDU type 0x${type.toString(16)}`;
      else if (type === 4 && length > limits.maxPduLength + 6) reason = `P-DATA-TF PDU of ${length} bytes exceeds the negotiated maximum of ${limits.maxPduLength}`;
      else if (type !== 4 && length > limits.maxAssociateLength) reason = `PDU type ${type} of ${length} bytes exceeds ${limits.maxAssociateLength}`;
      if (reason) {
        tripped = true;
        onViolation(reason);
        return;
      }
      remaining = length;
    }
  });
}
