import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import type { AssociationInfo, DimseHandlers, DimseQuery, StoreSink } from '../dicom/server.js';
import { str, type DicomJson } from '../dicom/part10.js';
import type { OutboundInstance } from '../dicom/scu.js';
import type { BlobStore } from '../store/blobs.js';
import { IngestError, type Ingestor } from '../store/ingest.js';
import type { StudyIndex, StoredInstance } from '../store/study-index.js';
import type { Metrics } from '../ops/metrics.js';

/** C-STORE status for each reason an instance can be refused (PS3.4 B.2.3). */
const STORE_STATUS: Record<IngestError['kind'], number> = {
  'not-dicom': 0xc000,
  'missing-attribute': 0xc000,
  mismatch: 0xa900,
  'too-large': 0xa700,
  storage: 0xa700,
};

/** Translates an identifier into the index's matching keys (tag → DICOM string value). */
export function matchingKeys(identifier: DicomJson): Map<string, string> {
  const keys = new Map<string, string>();
  for (const [tag, el] of Object.entries(identifier)) {
    if (tag === '00080052' || tag === '00080005') continue;
    if (el.vr === 'SQ') {
      // Other Patient IDs Sequence with a Patient ID in its item: match against the patient's other identifiers.
      const item = (el.Value?.[0] ?? undefined) as DicomJson | undefined;
      if (tag === '00101002' && item && str(item, '00100020')) keys.set('00101000', str(item, '00100020'));
      continue;
    }
    const values = (el.Value ?? []).map((v) => (v && typeof v === 'object' ? String((v as Record<string, string>).Alphabetic ?? '') : String(v ?? '')));
    keys.set(tag, values.join('\\'));
  }
  return keys;
}

/** The node's answers to DIMSE requests, over its store and index. */
export function dimseHandlers(deps: { config: Config; index: StudyIndex; ingestor: Ingestor; blobs: BlobStore; metrics: Metrics; log: Logger }): DimseHandlers {
  const { config, index, ingestor, blobs, metrics, log } = deps;
  const known = () => new Map(config.peers.map((p) => [p.aeTitle, p]));

  async function instancesFor(q: DimseQuery): Promise<StoredInstance[]> {
    const id = q.identifier;
    const uids = (tag: string) => str(id, tag).split('\\').map((u) => u.trim()).filter(Boolean);
    const out: StoredInstance[] = [];
    switch (q.level) {
      case 'PATIENT': {
        const pid = str(id, '00100020');
        if (!pid) throw new Error('C-MOVE/C-GET at PATIENT level needs a Patient ID');
        out.push(...(await index.listInstances({ patientId: pid })));
        break;
      }
      case 'STUDY':
        for (const u of uids('0020000D')) out.push(...(await index.listInstances({ studyUid: u })));
        break;
      case 'SERIES':
        for (const u of uids('0020000E')) out.push(...(await index.listInstances({ seriesUid: u })));
        break;
      case 'IMAGE':
        for (const u of uids('00080018')) out.push(...(await index.listInstances({ sopUid: u })));
        break;
    }
    return out;
  }

  return {
    checkAssociation(a: AssociationInfo) {
      if (config.dicom.checkCalledAe && a.calledAe !== config.aeTitle) return 'called-ae';
      if (!config.dicom.acceptUnknownCallingAe && !known().has(a.callingAe)) return 'calling-ae';
      return undefined;
    },

    openStore(a, req): StoreSink {
      const writer = ingestor.begin();
      return {
        writable: writer,
        async commit() {
          try {
            const r = await ingestor.commit(writer, { sopInstanceUid: req.sopInstanceUid, sopClassUid: req.sopClassUid, sourceAe: a.callingAe });
            metrics.instancesReceived.inc({ protocol: 'dimse', outcome: r.outcome });
            metrics.bytesReceived.inc({ protocol: 'dimse' }, r.bytes);
            return { status: 0 };
          } catch (e) {
            metrics.instancesReceived.inc({ protocol: 'dimse', outcome: 'refused' });
            metrics.errors.inc({ component: 'dimse-store' });
            const ie = e instanceof IngestError ? e : new IngestError(String(e), 'storage');
            log.warn({ callingAe: a.callingAe, sop: req.sopInstanceUid, reason: ie.message }, 'C-STORE refused');
            return { status: STORE_STATUS[ie.kind], comment: ie.message };
          }
        },
        abort: () => writer.discard(),
      };
    },

    async find(_a, q) {
      const { matches, truncated } = await index.find({ level: q.level, keys: matchingKeys(q.identifier), limit: config.dicom.maxFindResults });
      if (truncated) log.warn({ level: q.level, limit: config.dicom.maxFindResults }, 'C-FIND results truncated at the configured limit');
      return matches.map((m) => m.attrs);
    },

    async retrieve(_a, q): Promise<OutboundInstance[]> {
      const list = await instancesFor(q);
      return list.map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopUid, transferSyntaxUid: i.transferSyntaxUid, path: blobs.localPath(i.blobKey)! }));
    },

    resolveAe(aeTitle) {
      return known().get(aeTitle);
    },

    onAssociation(event, a, detail) {
      metrics.associations.inc({ event });
      if (event === 'open') metrics.activeAssociations.inc();
      if (event === 'close') metrics.activeAssociations.dec();
      if (event === 'abort' || event === 'reject') log.info({ event, callingAe: a.callingAe, remote: a.remoteAddress, detail }, 'association ' + event);
    },

    onStored(_a, _status, _bytes, ms) {
      metrics.storeLatency.observe({ protocol: 'dimse' }, ms / 1000);
    },
  };
}
