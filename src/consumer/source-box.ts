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
    const { base, origin } = parseRetrieveUrl(exam.retrieveUrl);
    return this.clientFor(base, origin, pro, exam.patient);
  }

  private async clientFor(base: string, origin: string, pro: Professional, patient?: string): Promise<DicomwebClient> {
    const { identity } = this.deps;
    const token = await issueProfessionalToken(pro, { issuer: identity.domain, audience: origin, privateKeyPem: identity.tls.key, lifetimeSeconds: identity.tokenLifetimeSeconds ?? 300, patient });
    return new DicomwebClient(base, { tls: identity.tls, headers: { authorization: `Bearer ${token}` } });
  }

  /**
   * A peer box's studies of a patient (QIDO-RS on its exchange port, `base` = …/dicom-web): the token names the
   * patient, and the box answers for that patient only.
   */
  async findStudies(base: string, ins: string, pro: Professional): Promise<Array<{ studyUid: string; date?: string; description?: string; modalities: string[] }>> {
    const u = new URL(base);
    if (u.protocol !== 'https:') throw new SourceBoxError(`peer box "${base}" is not an https URL`);
    const rows = await (await this.clientFor(base.replace(/\/$/, ''), u.origin, pro, ins)).search('/studies', { PatientID: ins, includefield: ['00080061', '00081030', '00080020'] });
    const str = (r: Record<string, { Value?: unknown[] }>, tag: string) => String(r[tag]?.Value?.[0] ?? '');
    return rows
      .map((r) => {
        const d = str(r, '00080020');
        return { studyUid: str(r, '0020000D'), date: /^\d{8}$/.test(d) ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)}` : undefined, description: str(r, '00081030') || undefined, modalities: ((r['00080061']?.Value ?? []) as string[]).map(String) };
      })
      .filter((x) => x.studyUid);
  }

  /** The series and instances of a study at a peer box (WADO-RS metadata), with their Retrieve URLs. */
  async studySeries(base: string, studyUid: string, ins: string, pro: Professional): Promise<Array<{ seriesUid: string; retrieveUrl: string; instances: Array<{ sopClassUid: string; sopUid: string }> }>> {
    const b = base.replace(/\/$/, '');
    const meta = await (await this.clientFor(b, new URL(b).origin, pro, ins)).metadata(studyUid);
    const bySeries = new Map<string, Array<{ sopClassUid: string; sopUid: string }>>();
    for (const m of meta) {
      const se = String(m['0020000E']?.Value?.[0] ?? '');
      if (!se) continue;
      bySeries.set(se, [...(bySeries.get(se) ?? []), { sopClassUid: String(m['00080016']?.Value?.[0] ?? ''), sopUid: String(m['00080018']?.Value?.[0] ?? '') }]);
    }
    return [...bySeries].map(([seriesUid, instances]) => ({ seriesUid, retrieveUrl: `${b}/studies/${studyUid}/series/${seriesUid}`, instances }));
  }

  /** Brings the exam (or one series) into the local store, telling `onInstance` of each one stored; returns what was received. */
  async importExam(exam: RemoteExam, pro: Professional, onInstance?: (r: IngestResult) => Promise<void> | void, opts: { /** An import or prefetch nobody watches: yields the cap to viewers. */ background?: boolean } = {}): Promise<{ received: number; stored: number; duplicates: number; refused: number }> {
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
      }, { bandwidth: this.deps.bandwidthOf?.(origin)?.flow({ background: opts.background }) });
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
