import dimse from 'dcmjs-dimse';
import dcmjs from 'dcmjs';
import type { DicomJson } from './part10.js';
import { SopClass } from './uids.js';

const { Client, Dataset } = dimse;
const { CEchoRequest, CFindRequest, CMoveRequest, CGetRequest, CStoreRequest } = dimse.requests;
const { CStoreResponse } = dimse.responses;
const { Status } = dimse.constants;
const { DicomMetaDictionary } = dcmjs.data;

export interface Remote {
  aeTitle: string;
  host: string;
  port: number;
}

export interface OutboundInstance {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** Local Part 10 file. */
  path: string;
}

export class DimseError extends Error {
  override name = 'DimseError';
}

const SEND_OPTS = { connectTimeout: 10_000, associationTimeout: 30_000, pduTimeout: 60_000, associationLingerTimeout: 0 };

/** Runs one association with the given requests; resolves when it is released or closed, rejects on refusal. */
function runAssociation(remote: Remote, callingAe: string, requests: unknown[], setup?: (client: any) => void, opts: Record<string, unknown> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    for (const r of requests) client.addRequest(r as any);
    setup?.(client);
    let error: Error | undefined;
    client.on('connected', () => (client as any).network?.socket?.setNoDelay?.(true));
    client.on('associationRejected', (e: any) => {
      error = new DimseError(`association rejected by ${remote.aeTitle}@${remote.host}:${remote.port} (result ${e?.result}, source ${e?.source}, reason ${e?.reason})`);
    });
    client.on('networkError', (e: Error) => {
      error ??= new DimseError(`network error talking to ${remote.aeTitle}@${remote.host}:${remote.port}: ${e.message}`);
    });
    client.on('closed', () => (error ? reject(error) : resolve()));
    try {
      client.send(remote.host, remote.port, callingAe, remote.aeTitle, { ...SEND_OPTS, ...opts } as any);
    } catch (e) {
      reject(new DimseError((e as Error).message));
    }
  });
}

export async function echo(remote: Remote, callingAe: string): Promise<void> {
  let status: number | undefined;
  const req = new CEchoRequest();
  req.on('response', (r: any) => (status = r.getStatus()));
  await runAssociation(remote, callingAe, [req]);
  if (status !== Status.Success) throw new DimseError(`C-ECHO to ${remote.aeTitle} failed (status ${status === undefined ? 'none' : '0x' + status.toString(16)})`);
}

function naturalIdentifier(level: string, keys: Record<string, string>): Record<string, unknown> {
  return { QueryRetrieveLevel: level, ...keys };
}

function toJson(ds: any): DicomJson {
  const elements = { ...(ds?.getElements?.() ?? {}) };
  delete elements._vrMap;
  delete elements._meta;
  return DicomMetaDictionary.denaturalizeDataset(elements) as DicomJson;
}

/** C-FIND with keyword keys (e.g. { PatientID: 'P1', StudyInstanceUID: '' }); '' asks for the attribute back. */
export async function find(remote: Remote, callingAe: string, level: 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE', keys: Record<string, string>, model: 'STUDY' | 'PATIENT' = 'STUDY'): Promise<DicomJson[]> {
  const req = new CFindRequest();
  req.setAffectedSopClassUid(model === 'STUDY' ? SopClass.StudyRootFind : SopClass.PatientRootFind);
  req.setDataset(new Dataset(naturalIdentifier(level, keys)));
  const results: DicomJson[] = [];
  let final: number | undefined;
  req.on('response', (r: any) => {
    const s = r.getStatus();
    if ((s === Status.Pending || s === 0xff01) && r.hasDataset()) results.push(toJson(r.getDataset()));
    else if (s !== Status.Pending && s !== 0xff01) final = s;
  });
  await runAssociation(remote, callingAe, [req]);
  if (final !== Status.Success) throw new DimseError(`C-FIND on ${remote.aeTitle} ended with status ${final === undefined ? 'none' : '0x' + final.toString(16)}`);
  return results;
}

export interface RetrieveOutcome {
  status: number;
  completed: number;
  failed: number;
  warning: number;
}

/** C-MOVE: asks `remote` to send what matches to `destinationAe` (which may be this node). */
export async function move(remote: Remote, callingAe: string, destinationAe: string, level: 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE', keys: Record<string, string>, model: 'STUDY' | 'PATIENT' = 'STUDY'): Promise<RetrieveOutcome> {
  const req = new CMoveRequest();
  req.setAffectedSopClassUid(model === 'STUDY' ? SopClass.StudyRootMove : SopClass.PatientRootMove);
  req.setDataset(new Dataset(naturalIdentifier(level, keys)));
  req.getCommandDataset().setElement('MoveDestination', destinationAe);
  const out: RetrieveOutcome = { status: -1, completed: 0, failed: 0, warning: 0 };
  req.on('response', (r: any) => {
    out.completed = r.getCompleted() ?? out.completed;
    out.failed = r.getFailures() ?? out.failed;
    out.warning = r.getWarnings() ?? out.warning;
    if (r.getStatus() !== Status.Pending) out.status = r.getStatus();
  });
  await runAssociation(remote, callingAe, [req], undefined, { associationTimeout: 600_000, pduTimeout: 600_000 });
  return out;
}

/**
 * C-GET: the instances come back on the same association. Each one is handed to `onInstance` as Part 10
 * bytes; its promise decides the C-STORE status (rejection = failure).
 */
export async function get(remote: Remote, callingAe: string, level: 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE', keys: Record<string, string>, storageClasses: string[], onInstance: (part10: Buffer) => Promise<void>): Promise<RetrieveOutcome> {
  const req = new CGetRequest();
  req.setAffectedSopClassUid(SopClass.StudyRootGet);
  req.setDataset(new Dataset(naturalIdentifier(level, keys)));
  const out: RetrieveOutcome = { status: -1, completed: 0, failed: 0, warning: 0 };
  req.on('response', (r: any) => {
    out.completed = r.getCompleted() ?? out.completed;
    out.failed = r.getFailures() ?? out.failed;
    out.warning = r.getWarnings() ?? out.warning;
    if (r.getStatus() !== Status.Pending) out.status = r.getStatus();
  });
  await runAssociation(
    remote,
    callingAe,
    [req],
    (client) => {
      const { PresentationContext } = dimse.association as any;
      for (const uid of storageClasses) {
        const ctx = new PresentationContext(0, uid);
        ctx.addTransferSyntaxUid('1.2.840.10008.1.2.1');
        ctx.addTransferSyntaxUid('1.2.840.10008.1.2');
        client.addAdditionalPresentationContext(ctx);
      }
      client.on('cStoreRequest', (request: any, callback: (r: any) => void) => {
        const response = CStoreResponse.fromRequest(request);
        let bytes: Buffer;
        try {
          const ds = request.getDataset();
          const tmp = new Dataset(ds.getElements(), ds.getTransferSyntaxUid());
          bytes = Buffer.from(datasetToPart10(tmp));
        } catch (e) {
          response.setStatus(Status.ProcessingFailure);
          response.setErrorComment(String((e as Error).message).slice(0, 64));
          callback(response);
          return;
        }
        onInstance(bytes).then(
          () => {
            response.setStatus(Status.Success);
            callback(response);
          },
          (e: Error) => {
            response.setStatus(Status.ProcessingFailure);
            response.setErrorComment(e.message.slice(0, 64));
            callback(response);
          },
        );
      });
    },
    { associationTimeout: 600_000, pduTimeout: 600_000 },
  );
  return out;
}

function datasetToPart10(ds: any): ArrayBuffer {
  const elements = { ...ds.getElements() };
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: elements.SOPClassUID,
    MediaStorageSOPInstanceUID: elements.SOPInstanceUID,
    TransferSyntaxUID: ds.getTransferSyntaxUid() || '1.2.840.10008.1.2',
    ImplementationClassUID: '1.2.826.0.1.3680043.10.1355.1',
  };
  const dict = new dcmjs.data.DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  delete elements._meta;
  dict.dict = DicomMetaDictionary.denaturalizeDataset(elements);
  return dict.write();
}

export interface StoreProgress {
  completed: number;
  failed: number;
  warning: number;
}

/**
 * Sends files to a remote SCP over one association (C-STORE SCU), reporting progress per instance.
 * dcmjs-dimse re-encodes each data set before sending; instances are loaded one at a time, so memory stays flat.
 */
export async function storeInstances(
  remote: Remote,
  callingAe: string,
  items: OutboundInstance[],
  opts: { maxPduLength?: number; moveOriginator?: { aeTitle: string; messageId: number }; onProgress?: (p: StoreProgress) => void } = {},
): Promise<StoreProgress & { error?: string; failedUids: string[] }> {
  const progress = { completed: 0, failed: 0, warning: 0 };
  const failedUids: string[] = [];
  const requests = items.map((item) => {
    const req = new CStoreRequest(item.path);
    if (opts.moveOriginator) {
      req.getCommandDataset().setElement('MoveOriginatorApplicationEntityTitle', opts.moveOriginator.aeTitle);
      req.getCommandDataset().setElement('MoveOriginatorMessageID', opts.moveOriginator.messageId as unknown as string);
    }
    req.on('response', (r: any) => {
      const s = r.getStatus();
      if (s === Status.Success) progress.completed++;
      else if ((s & 0xf000) === 0xb000) progress.warning++;
      else {
        progress.failed++;
        failedUids.push(item.sopInstanceUid);
      }
      opts.onProgress?.({ ...progress });
    });
    return req;
  });
  let error: string | undefined;
  try {
    await runAssociation(remote, callingAe, requests);
  } catch (e) {
    error = (e as Error).message;
  }
  const answered = progress.completed + progress.failed + progress.warning;
  if (answered < items.length) {
    for (const item of items.slice(answered)) failedUids.push(item.sopInstanceUid);
    progress.failed += items.length - answered;
    error ??= `${items.length - answered} instance(s) were not acknowledged by ${remote.aeTitle}`;
  }
  return { ...progress, error, failedUids };
}
