import { BlockList, isIP } from 'node:net';
import type { Hl7Message } from './message.js';

/** What a sender may send, by the function the messages drive. */
export type MessageFamily = 'reports' | 'orders' | 'scheduling' | 'adt';

/** The family of a message type (MSH-9), or undefined when no function here takes it. */
export function familyOf(type: string): MessageFamily | undefined {
  if (/^(ORU\^R01|MDM\^T(02|04|10|11))$/.test(type)) return 'reports';
  if (/^(ORM\^O01|OMI\^O23|OMG\^O19)$/.test(type)) return 'orders';
  if (/^SIU\^S\d\d$/.test(type)) return 'scheduling';
  if (/^ADT\^A\d\d$/.test(type)) return 'adt';
  return undefined;
}

export interface DeclaredSender {
  /** A name for the logs and the audit trail (e.g. "RIS Xplore", "DPI"). */
  name: string;
  /** Addresses or CIDR networks the sender connects from. */
  from: string[];
  /** MSH-3 (sending application) and MSH-4 (sending facility) it must name, when given. */
  application?: string;
  facility?: string;
  messages: MessageFamily[];
}

export type SenderVerdict = { allowed: true; sender: string } | { allowed: false; reason: string };

/**
 * The HL7 senders this node listens to. A message is taken only from a declared sender: its address within one of
 * the sender's networks, MSH-3/MSH-4 as declared, and its type within the families the sender may send (a RIS
 * sends reports and orders, an ADT feed patients). Anyone else is answered AR: a forged report, withdrawal or
 * merge is never acted on.
 */
export class SenderList {
  private readonly senders: Array<DeclaredSender & { networks: BlockList }>;

  constructor(declared: DeclaredSender[], addCidr: (list: BlockList, cidr: string) => void) {
    this.senders = declared.map((d) => {
      const networks = new BlockList();
      for (const cidr of d.from) addCidr(networks, cidr);
      return { ...d, networks };
    });
  }

  check(msg: Hl7Message, remoteAddress: string): SenderVerdict {
    const family = familyOf(msg.type);
    const application = msg.msh.get(3, 1);
    const facility = msg.msh.get(4, 1);
    const addr = remoteAddress.replace(/^::ffff:/, '');
    const fromHere = this.senders.filter((s) => isIP(addr) !== 0 && s.networks.check(addr, isIP(addr) === 6 ? 'ipv6' : 'ipv4'));
    if (!fromHere.length) return { allowed: false, reason: `no HL7 sender is declared for address ${addr}` };
    const named = fromHere.filter((s) => (!s.application || s.application === application) && (!s.facility || s.facility === facility));
    if (!named.length) return { allowed: false, reason: `sending application/facility ${application}/${facility} (MSH-3/MSH-4) is not the one declared for ${addr}` };
    if (!family) return { allowed: true, sender: named[0]!.name };
    const may = named.find((s) => s.messages.includes(family));
    if (!may) return { allowed: false, reason: `${named.map((s) => s.name).join(', ')} may not send ${family} (${msg.type})` };
    return { allowed: true, sender: may.name };
  }
}
