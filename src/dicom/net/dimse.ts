import type { Readable } from 'node:stream';
import type { Association, DimseMessage } from './association.js';
import { isPending, type Command } from './command.js';

export interface ResponseMessage {
  command: Command;
  dataset?: Buffer;
}

/**
 * Request/response bookkeeping on top of an association: responses are matched to requests by message ID,
 * incoming requests go to `onRequest`. Used by both the SCP (which also issues C-STORE sub-operations during
 * C-GET) and the SCU (which also receives them).
 */
export class DimseEndpoint {
  private readonly pending = new Map<number, { onResponse?: (r: ResponseMessage) => void; resolve: (r: ResponseMessage) => void; reject: (e: Error) => void }>();
  onRequest?: (msg: DimseMessage) => void;

  constructor(readonly assoc: Association) {
    assoc.on('message', (msg: DimseMessage) => {
      const field = msg.command.commandField;
      if (field & 0x8000) {
        const id = msg.command.messageIdBeingRespondedTo ?? -1;
        const p = this.pending.get(id);
        if (!p) return;
        const r = { command: msg.command, dataset: msg.dataset };
        if (isPending(msg.command.status)) p.onResponse?.(r);
        else {
          this.pending.delete(id);
          p.resolve(r);
        }
      } else this.onRequest?.(msg);
    });
    assoc.on('closed', () => {
      for (const p of this.pending.values()) p.reject(new Error('association closed before the final response'));
      this.pending.clear();
    });
  }

  /** Sends a request; resolves with the final response, calling `onResponse` for each pending one. */
  request(contextId: number, command: Command, dataset?: Buffer | Readable, onResponse?: (r: ResponseMessage) => void): Promise<ResponseMessage> {
    const messageId = command.messageId ?? this.assoc.nextMessageId();
    const cmd = { ...command, messageId };
    return new Promise((resolve, reject) => {
      this.pending.set(messageId, { onResponse, resolve, reject });
      this.assoc.send(contextId, cmd, dataset).catch((e: Error) => {
        this.pending.delete(messageId);
        reject(e);
      });
    });
  }

  respond(request: DimseMessage, command: Omit<Command, 'messageIdBeingRespondedTo'>, dataset?: Buffer): Promise<void> {
    return this.assoc.send(request.contextId, { ...command, messageIdBeingRespondedTo: request.command.messageId }, dataset);
  }
}
