import type { StorageSpace } from '../store/space.js';
import { PeerOrigins } from './peers.js';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import type { AssociationInfo, DimseHandlers, DimseQuery, StoreSink } from '../dicom/server.js';
import { str, type DicomJson } from '../dicom/part10.js';
import type { OutboundInstance } from '../dicom/scu.js';
import type { BlobStore } from '../store/blobs.js';
import { IngestError, type Ingestor } from '../store/ingest.js';
import type { StudyIndex, StoredInstance } from '../store/study-index.js';
import type { Metrics } from '../ops/metrics.js';
import type { AuditTrail } from '../audit/audit-trail.js';
import { remoteFor } from './peers.js';

/** C-STORE status for each reason an instance can be refused (PS3.4 B.2.3). */
const STORE_STATUS: Record<IngestError['kind'], number> = {
  'not-dicom': 0xc000,
  damaged: 0xc000,
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
export function dimseHandlers(deps: { config: Config; index: StudyIndex; ingestor: Ingestor; blobs: BlobStore; metrics: Metrics; log: Logger; audit?: AuditTrail; space?: StorageSpace }): DimseHandlers {
  const { config, index, ingestor, blobs, metrics, log, audit, space } = deps;
  /** Instances received per association and study, recorded as one audit event each when the association ends. */
  const received = new Map<number, Map<string, { patientId: string; stored: number; refused: number }>>();
  const retrieved = new WeakMap<OutboundInstance[], Map<string, { patientId?: string; instances: number }>>();
  const actor = (a: AssociationInfo) => ({ actorType: 'dicom-ae' as const, actorId: a.callingAe || a.remoteAddress, actorAddress: a.remoteAddress });
  const flushReceived = (a: AssociationInfo) => {
    const studies = received.get(a.id);
    received.delete(a.id);
    for (const [studyUid, s] of studies ?? []) {
      void audit?.record({ ...actor(a), action: 'dicom.store', patientId: s.patientId, studyUid: studyUid || undefined, outcome: s.refused ? (s.stored ? 'failure' : 'refused') : 'success', detail: { stored: s.stored, refused: s.refused, association: a.id } });
    }
  };
  const noteReceived = (a: AssociationInfo, studyUid: string, patientId: string, ok: boolean) => {
    const perAssoc = received.get(a.id) ?? new Map();
    received.set(a.id, perAssoc);
    const s = perAssoc.get(studyUid) ?? { patientId, stored: 0, refused: 0 };
    if (ok) s.stored++;
    else s.refused++;
    perAssoc.set(studyUid, s);
  };
  const known = () => new Map(config.peers.map((p) => [p.aeTitle, p]));
  /** The addresses each peer may call from: its host (resolved), its `from` networks. */
  const origins = new PeerOrigins(config.peers, log);
  /** Associations open now, by calling AE. */
  const openByAe = new Map<number, string>();
  const openCount = (ae: string) => [...openByAe.values()].filter((x) => x === ae).length;

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
      const peer = known().get(a.callingAe);
      if (!config.dicom.acceptUnknownCallingAe && !peer) return 'calling-ae';
      // A configured AE title is only itself from its own host: otherwise anyone could call as the PACS.
      if (peer && !origins.allows(peer, a.remoteAddress)) return 'calling-host';
      if (openCount(a.callingAe) >= config.dicom.maxAssociationsPerAe) return 'ae-limit';
      if (space?.low) return 'no-space';
      return undefined;
    },

    openStore(a, req): StoreSink {
      const writer = ingestor.begin();
      return {
        writable: writer,
        async commit() {
          try {
            const r = await ingestor.commit(writer, { sopInstanceUid: req.sopInstanceUid, sopClassUid: req.sopClassUid, sourceAe: a.callingAe });
            noteReceived(a, r.studyUid, r.patientId, true);
            metrics.instancesReceived.inc({ protocol: 'dimse', outcome: r.outcome });
            metrics.bytesReceived.inc({ protocol: 'dimse' }, r.bytes);
            return { status: 0 };
          } catch (e) {
            metrics.instancesReceived.inc({ protocol: 'dimse', outcome: 'refused' });
            metrics.errors.inc({ component: 'dimse-store' });
            noteReceived(a, '', '', false);
            const ie = e instanceof IngestError ? e : new IngestError(String(e), 'storage');
            log.warn({ callingAe: a.callingAe, sop: req.sopInstanceUid, reason: ie.message }, 'C-STORE refused');
            return { status: STORE_STATUS[ie.kind], comment: ie.message };
          }
        },
        abort: () => writer.discard(),
      };
    },

    async find(a, q) {
      const keys = matchingKeys(q.identifier);
      const criteria = Object.fromEntries([...keys].filter(([, v]) => v !== ''));
      try {
        const { matches, truncated } = await index.find({ level: q.level, keys, limit: config.dicom.maxFindResults });
        if (truncated) log.warn({ level: q.level, limit: config.dicom.maxFindResults }, 'C-FIND results truncated at the configured limit');
        void audit?.record({ ...actor(a), action: 'dicom.find', patientId: keys.get('00100020') || undefined, studyUid: keys.get('0020000D') || undefined, outcome: 'success', detail: { level: q.level, criteria, matches: matches.length } });
        return matches.map((m) => m.attrs);
      } catch (e) {
        void audit?.record({ ...actor(a), action: 'dicom.find', outcome: 'failure', detail: { level: q.level, criteria, error: (e as Error).message } });
        throw e;
      }
    },

    async retrieve(_a, q): Promise<OutboundInstance[]> {
      const list = await instancesFor(q);
      const items = list.map((i) => ({ sopClassUid: i.sopClassUid, sopInstanceUid: i.sopUid, transferSyntaxUid: i.transferSyntaxUid, path: blobs.localPath(i.blobKey)! }));
      const studies = new Map<string, { patientId?: string; instances: number }>();
      for (const i of list) studies.set(i.studyUid, { instances: (studies.get(i.studyUid)?.instances ?? 0) + 1 });
      for (const [uid, s] of studies) s.patientId = await index.patientOfStudy(uid);
      retrieved.set(items, studies);
      return items;
    },

    onRetrieved(a, op, items, result, destination) {
      const studies = retrieved.get(items) ?? new Map();
      const outcome = result.failed === 0 && !result.cancelled ? 'success' : 'failure';
      for (const [studyUid, s] of studies) {
        void audit?.record({ ...actor(a), action: op === 'MOVE' ? 'dicom.move' : 'dicom.get', patientId: s.patientId, studyUid, outcome, detail: { destination, instances: s.instances, ...result } });
      }
    },

    resolveAe(aeTitle) {
      const peer = known().get(aeTitle);
      return peer ? remoteFor(config, peer) : undefined;
    },

    onUnknownDestination(a, destination) {
      void audit?.record({ ...actor(a), action: 'dicom.move', outcome: 'refused', detail: { destination, reason: 'unknown move destination' } });
    },

    onAssociation(event, a, detail) {
      if (event === 'open') openByAe.set(a.id, a.callingAe);
      if (event === 'close' || event === 'abort') openByAe.delete(a.id);
      metrics.associations.inc({ event });
      if (event === 'open') metrics.activeAssociations.inc();
      if (event === 'close') metrics.activeAssociations.dec();
      if (event === 'abort' || event === 'reject') log.info({ event, callingAe: a.callingAe, remote: a.remoteAddress, detail }, 'association ' + event);
      if (event === 'reject') void audit?.record({ ...actor(a), action: 'dicom.associate', outcome: 'refused', detail: { calledAe: a.calledAe, reason: detail } });
      if (event === 'close' || event === 'abort') flushReceived(a);
    },

    onStored(_a, _status, ms) {
      metrics.storeLatency.observe({ protocol: 'dimse' }, ms / 1000);
    },
  };
}
