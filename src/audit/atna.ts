import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import { XMLBuilder } from 'fast-xml-parser';
import type { Logger } from '../common/log.js';
import type { AuditRecord } from './audit-trail.js';

/** DICOM PS3.15 A.5 / IHE ATNA event for each OpenDRIM action: event ID (DCM code), meaning, action code. */
const EVENTS: Record<string, { code: string; meaning: string; action: 'C' | 'R' | 'U' | 'D' | 'E' }> = {
  'dicom.store': { code: '110104', meaning: 'DICOM Instances Transferred', action: 'C' },
  'dicomweb.store': { code: '110104', meaning: 'DICOM Instances Transferred', action: 'C' },
  'dicom.move': { code: '110104', meaning: 'DICOM Instances Transferred', action: 'R' },
  'dicom.get': { code: '110104', meaning: 'DICOM Instances Transferred', action: 'R' },
  'dicomweb.retrieve': { code: '110103', meaning: 'DICOM Instances Accessed', action: 'R' },
  'dicom.find': { code: '110112', meaning: 'Query', action: 'E' },
  'dicomweb.search': { code: '110112', meaning: 'Query', action: 'E' },
  'dicom.associate': { code: '110113', meaning: 'Security Alert', action: 'E' },
};

const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@', suppressEmptyNode: true });

/** One audit record as a DICOM audit message (PS3.15 A.5.1, the RFC 3881 schema as DICOM extends it). */
export function toAuditMessage(r: AuditRecord, source: { aeTitle: string; host: string }): string {
  const ev = EVENTS[r.action] ?? { code: '110100', meaning: 'Application Activity', action: 'E' as const };
  const objects: unknown[] = [];
  if (r.patientId) {
    objects.push({ '@ParticipantObjectID': r.patientId, '@ParticipantObjectTypeCode': '1', '@ParticipantObjectTypeCodeRole': '1', ParticipantObjectIDTypeCode: { '@csd-code': '2', '@codeSystemName': 'RFC-3881', '@originalText': 'Patient Number' } });
  }
  if (r.studyUid) {
    objects.push({ '@ParticipantObjectID': r.studyUid, '@ParticipantObjectTypeCode': '2', '@ParticipantObjectTypeCodeRole': '3', ParticipantObjectIDTypeCode: { '@csd-code': '110180', '@codeSystemName': 'DCM', '@originalText': 'Study Instance UID' } });
  }
  const message = {
    AuditMessage: {
      EventIdentification: {
        '@EventActionCode': ev.action,
        '@EventDateTime': r.at,
        '@EventOutcomeIndicator': r.outcome === 'success' ? '0' : r.outcome === 'refused' ? '4' : '8',
        EventID: { '@csd-code': ev.code, '@codeSystemName': 'DCM', '@originalText': ev.meaning },
      },
      ActiveParticipant: [
        { '@UserID': r.actorId, '@UserIsRequestor': 'true', ...(r.actorAddress ? { '@NetworkAccessPointID': r.actorAddress, '@NetworkAccessPointTypeCode': '2' } : {}) },
        { '@UserID': source.aeTitle, '@UserIsRequestor': 'false', '@NetworkAccessPointID': source.host, '@NetworkAccessPointTypeCode': '1' },
      ],
      AuditSourceIdentification: { '@AuditSourceID': source.aeTitle },
      ...(objects.length ? { ParticipantObjectIdentification: objects } : {}),
    },
  };
  return `<?xml version="1.0" encoding="UTF-8"?>${builder.build(message)}`;
}

/** RFC 5424 syslog message (facility authpriv, severity notice), framed by octet counting (RFC 5425/6587). */
export function syslogFrame(xml: string, appName = 'OpenDRIM'): Buffer {
  const header = `<85>1 ${new Date().toISOString()} ${os.hostname()} ${appName} ${process.pid} IHE+RFC-3881 - `;
  const msg = Buffer.concat([Buffer.from(header, 'utf8'), Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(xml, 'utf8')]);
  return Buffer.concat([Buffer.from(`${msg.length} `, 'ascii'), msg]);
}

export interface SyslogTarget {
  host: string;
  port: number;
  /** TLS (RFC 5425) with these options; plain TCP when absent. */
  tls?: tls.ConnectionOptions;
}

/**
 * Ships audit records to a syslog collector. The database trail stays the record of truth: messages that
 * cannot be delivered are queued (bounded), retried with backoff, and a dropped message is logged.
 */
export class AtnaExporter {
  private socket: net.Socket | undefined;
  private connecting = false;
  private readonly queue: Buffer[] = [];
  private backoff = 500;
  private closed = false;
  sent = 0;

  constructor(
    private readonly target: SyslogTarget,
    private readonly source: { aeTitle: string; host: string },
    private readonly log: Logger,
    private readonly maxQueue = 10_000,
  ) {}

  export(record: AuditRecord): void {
    if (this.closed) return;
    if (this.queue.length >= this.maxQueue) {
      this.queue.shift();
      this.log.error({ target: `${this.target.host}:${this.target.port}` }, 'ATNA queue full: oldest audit message dropped (the database trail still has it)');
    }
    this.queue.push(syslogFrame(toAuditMessage(record, this.source)));
    this.pump();
  }

  private pump(): void {
    if (this.closed) return;
    if (!this.socket) return this.connect();
    while (this.queue.length) {
      const msg = this.queue[0]!;
      if (!this.socket.write(msg)) {
        this.queue.shift();
        this.sent++;
        this.socket.once('drain', () => this.pump());
        return;
      }
      this.queue.shift();
      this.sent++;
    }
  }

  private connect(): void {
    if (this.connecting || this.closed) return;
    this.connecting = true;
    const { host, port } = this.target;
    const s = this.target.tls ? tls.connect({ ...this.target.tls, host, port }) : net.connect({ host, port });
    s.once(this.target.tls ? 'secureConnect' : 'connect', () => {
      this.connecting = false;
      this.backoff = 500;
      this.socket = s;
      this.pump();
    });
    s.on('error', (e) => this.log.warn({ target: `${host}:${port}`, err: e.message }, 'ATNA syslog connection failed; will retry'));
    s.on('close', () => {
      this.connecting = false;
      if (this.socket === s) this.socket = undefined;
      if (!this.closed && this.queue.length) {
        setTimeout(() => this.connect(), this.backoff).unref();
        this.backoff = Math.min(this.backoff * 2, 60_000);
      }
    });
  }

  /** Waits (bounded) for queued messages to be written, then closes the connection. */
  async close(waitMs = 2000): Promise<void> {
    const end = Date.now() + waitMs;
    while (this.queue.length && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    this.closed = true;
    this.socket?.end();
  }
}
