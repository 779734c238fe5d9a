import type { Logger } from '../common/log.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import { issueProfessionalToken, type Professional } from '../auth/professional-token.js';
import { DicomwebClient, DicomwebError } from '../dicomweb/client.js';
import type { Bandwidth } from '../common/bandwidth.js';
import { IngestError, type Ingestor, type IngestResult } from '../store/ingest.js';

/** This box as it presents itself to source DRIMboxes: its trust-list domain and its TLS certificate. */
export interface BoxIdentity {
  domain: string;
  tls: { cert: Buffer; key: Buffer; ca: Buffer };
  tokenLifetimeSeconds?: number;
}

export interface RemoteExam {
  /** The WADO-RS Retrieve URL of a study or series, as the KOS manifest gives it (…/studies/{uid}[/series/{uid}]). */
  retrieveUrl: string;
  /** The patient's INS, carried in the token so the source's audit trail names the patient asked for. */
  patient?: string;
}

/** Splits a WADO-RS Retrieve URL into the service base and the study/series it names. */
export function parseRetrieveUrl(url: string): { base: string; origin: string; studyUid: string; seriesUid?: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SourceBoxError(`retrieve URL "${url}" is not a URL`);
  }
  if (u.protocol !== 'https:') throw new SourceBoxError(`retrieve URL "${url}" is not an https URL: images are only fetched from other boxes over mutual TLS`);
  const m = /^(.*)\/studies\/([0-9.]{1,64})(?:\/series\/([0-9.]{1,64}))?\/?$/.exec(u.pathname);
  if (!m) throw new SourceBoxError(`retrieve URL "${url}" does not name a study or series (…/studies/{uid}[/series/{uid}])`);
  return { base: `${u.origin}${m[1]}`, origin: u.origin, studyUid: m[2]!, seriesUid: m[3] };
}

export class SourceBoxError extends Error {
  override name = 'SourceBoxError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * The consumer half of DRIMbox-to-DRIMbox image exchange: an exam named in a KOS manifest is fetched from the
 * source box over WADO-RS (mutual TLS with this box's certificate, a token naming the professional, signed
 * with the same certificate's key) and streamed instance by instance into the local store.
 */
export class SourceBoxRetriever {
  constructor(
    private readonly deps: { identity: BoxIdentity; ingestor: Ingestor; audit: AuditTrail; log: Logger; /** The bandwidth cap of a source box (by origin), shared by every transfer from it. */ bandwidthOf?: (origin: string) => Bandwidth | undefined },
  ) {}

  private async client(exam: RemoteExam, pro: Professional): Promise<DicomwebClient> {
    const { identity } = this.deps;
    const { base, origin } = parseRetrieveUrl(exam.retrieveUrl);
    const token = await issueProfessionalToken(pro, { issuer: identity.domain, audience: origin, privateKeyPem: identity.tls.key, lifetimeSeconds: identity.tokenLifetimeSeconds ?? 300, patient: exam.patient });
    return new DicomwebClient(base, { tls: identity.tls, headers: { authorization: `Bearer ${token}` } });
  }

  /** Brings the exam (or one series) into the local store, telling `onInstance` of each one stored; returns what was received. */
  async importExam(exam: RemoteExam, pro: Professional, onInstance?: (r: IngestResult) => Promise<void> | void): Promise<{ received: number; stored: number; duplicates: number; refused: number }> {
    const { ingestor, audit, log } = this.deps;
    const counts = { received: 0, stored: 0, duplicates: 0, refused: 0 };
    const started = Date.now();
    let failure: Error | undefined;
    let target: { studyUid?: string; seriesUid?: string; origin?: string } = {};
    try {
      const { studyUid, seriesUid, origin } = (target = parseRetrieveUrl(exam.retrieveUrl));
      const client = await this.client(exam, pro);
      counts.received = await client.retrieve({ studyUid, seriesUid }, () => {
        const writer = ingestor.begin();
        return {
          writable: writer,
          done: async () => {
            try {
              const r = await ingestor.commit(writer, { sourceAe: new URL(exam.retrieveUrl).host });
              if (r.outcome === 'duplicate') counts.duplicates++;
              else counts.stored++;
              await onInstance?.(r);
            } catch (e) {
              if (!(e instanceof IngestError)) throw e;
              counts.refused++;
              log.warn({ url: exam.retrieveUrl, reason: e.message }, 'instance from the source box refused');
            }
          },
        };
      }, { bandwidth: this.deps.bandwidthOf?.(origin) });
    } catch (e) {
      failure = e instanceof DicomwebError ? new SourceBoxError(`the source box refused or failed: ${e.message}`, e.status) : (e as Error);
    }
    await audit.record({
      actorType: 'practitioner',
      actorId: pro.id,
      action: 'consumer.retrieve',
      studyUid: target.studyUid,
      patientId: exam.patient,
      outcome: failure ? ((failure as SourceBoxError).status === 401 || (failure as SourceBoxError).status === 403 ? 'refused' : 'failure') : 'success',
      detail: { source: exam.retrieveUrl, series: target.seriesUid, ...counts, ms: Date.now() - started, ...(failure ? { error: failure.message } : {}) },
    });
    if (failure) throw failure;
    log.info({ source: exam.retrieveUrl, ...counts, ms: Date.now() - started }, 'exam fetched from the source box');
    return counts;
  }
}
