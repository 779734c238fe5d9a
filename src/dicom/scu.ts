import { createReadStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { lookupTag } from './dictionary.js';
import { fileMetaHeader, type DicomJson } from './part10.js';
import { SopClass, TransferSyntax } from './uids.js';
import { Association, type DimseMessage } from './net/association.js';
import { CommandField, Status, type Command } from './net/command.js';
import { convertDataset, decodeDataset, encodeDataset, part10Info, readPart10Info, type Part10Info } from './net/dataset.js';
import { DimseEndpoint } from './net/dimse.js';
import type { PresentationContextRq } from './net/pdu.js';

export interface Remote {
  aeTitle: string;
  host: string;
  port: number;
  /** DICOM over TLS: certificate, key and trusted authorities for this connection. */
  tls?: import('node:tls').ConnectionOptions;
}

export interface OutboundInstance {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  /** Local Part 10 file. */
  path: string;
  /** The Part 10 bytes already in memory (sent from here; `path` then only names it in messages). */
  bytes?: Buffer;
}

export class DimseError extends Error {
  override name = 'DimseError';
}

export type Level = 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE';

const MAX_PDU = 262144;
const NATIVE = [TransferSyntax.ExplicitLE, TransferSyntax.ImplicitLE];
const hex = (s: number | undefined) => (s === undefined ? 'none' : `0x${s.toString(16).padStart(4, '0')}`);

async function open(remote: Remote, callingAe: string, contexts: PresentationContextRq[], roles?: Array<{ sopClassUid: string; scu: boolean; scp: boolean }>): Promise<DimseEndpoint> {
  try {
    const assoc = await Association.request(remote, callingAe, contexts, { maxPduLength: MAX_PDU, roles, timeoutMs: 15_000 });
    return new DimseEndpoint(assoc);
  } catch (e) {
    throw new DimseError((e as Error).message);
  }
}

function contextOrThrow(ep: DimseEndpoint, abstract: string, remote: Remote) {
  const ctx = ep.assoc.contextFor(abstract);
  if (!ctx) {
    void ep.assoc.release();
    throw new DimseError(`${remote.aeTitle} did not accept ${abstract}`);
  }
  return ctx;
}

export async function echo(remote: Remote, callingAe: string): Promise<void> {
  const ep = await open(remote, callingAe, [{ id: 1, abstractSyntax: SopClass.Verification, transferSyntaxes: [...NATIVE] }]);
  try {
    const ctx = contextOrThrow(ep, SopClass.Verification, remote);
    const r = await ep.request(ctx.id, { commandField: CommandField.CEchoRq, affectedSopClassUid: SopClass.Verification, commandDataSetType: 0x0101 });
    if (r.command.status !== Status.Success) throw new DimseError(`C-ECHO to ${remote.aeTitle} failed (status ${hex(r.command.status)})`);
  } finally {
    await ep.assoc.release();
  }
}

/** Identifier from keyword keys (e.g. { PatientID: 'P1', StudyInstanceUID: '' }); '' asks for the attribute back. */
export function identifier(level: Level, keys: Record<string, string>): DicomJson {
  const json: DicomJson = { '00080052': { vr: 'CS', Value: [level] } };
  for (const [k, v] of Object.entries(keys)) {
    const t = lookupTag(k);
    if (!t) throw new DimseError(`unknown attribute ${k}`);
    json[t.tag] = v === '' ? { vr: t.vr } : { vr: t.vr, Value: [t.vr === 'PN' ? { Alphabetic: v } : v] };
  }
  return json;
}

/** C-FIND: returns the matches as DICOM JSON. */
export async function find(remote: Remote, callingAe: string, level: Level, keys: Record<string, string>, model: 'STUDY' | 'PATIENT' = 'STUDY'): Promise<DicomJson[]> {
  return findWith(remote, callingAe, model === 'STUDY' ? SopClass.StudyRootFind : SopClass.PatientRootFind, identifier(level, keys));
}

/** Modality Worklist C-FIND (PS3.4 K.6): the identifier is given whole, with its Scheduled Procedure Step Sequence. */
export async function findWorklist(remote: Remote, callingAe: string, query: DicomJson): Promise<DicomJson[]> {
  return findWith(remote, callingAe, SopClass.ModalityWorklistFind, query);
}

async function findWith(remote: Remote, callingAe: string, sop: string, query: DicomJson): Promise<DicomJson[]> {
  const ep = await open(remote, callingAe, [{ id: 1, abstractSyntax: sop, transferSyntaxes: [...NATIVE] }]);
  try {
    const ctx = contextOrThrow(ep, sop, remote);
    const results: DicomJson[] = [];
    const final = await ep.request(ctx.id, { commandField: CommandField.CFindRq, affectedSopClassUid: sop, priority: 0, commandDataSetType: 0 }, encodeDataset(query, ctx.transferSyntax), (r) => {
      if (r.dataset) results.push(decodeDataset(r.dataset, ctx.transferSyntax));
    });
    if (final.command.status !== Status.Success) throw new DimseError(`C-FIND on ${remote.aeTitle} ended with status ${hex(final.command.status)}${final.command.errorComment ? `: ${final.command.errorComment}` : ''}`);
    return results;
  } finally {
    await ep.assoc.release();
  }
}

export interface RetrieveOutcome {
  status: number;
  completed: number;
  failed: number;
  warning: number;
}

function outcome(final: Command, last: RetrieveOutcome): RetrieveOutcome {
  return { status: final.status ?? -1, completed: final.completed ?? last.completed, failed: final.failed ?? last.failed, warning: final.warning ?? last.warning };
}

/** Keeps the latest sub-operation counts of C-MOVE/C-GET pending responses (the final one may omit them). */
function countTracker(onProgress?: (p: RetrieveOutcome & { remaining: number }) => void) {
  const last: RetrieveOutcome = { status: -1, completed: 0, failed: 0, warning: 0 };
  const onPending = (r: { command: Command }) => {
    last.completed = r.command.completed ?? last.completed;
    last.failed = r.command.failed ?? last.failed;
    last.warning = r.command.warning ?? last.warning;
    onProgress?.({ ...last, remaining: r.command.remaining ?? 0 });
  };
  return { last, onPending };
}

/** C-MOVE: asks `remote` to send what matches to `destinationAe` (which may be this node). */
export async function move(remote: Remote, callingAe: string, destinationAe: string, level: Level, keys: Record<string, string>, model: 'STUDY' | 'PATIENT' = 'STUDY', onProgress?: (p: RetrieveOutcome & { remaining: number }) => void): Promise<RetrieveOutcome> {
  const sop = model === 'STUDY' ? SopClass.StudyRootMove : SopClass.PatientRootMove;
  const ep = await open(remote, callingAe, [{ id: 1, abstractSyntax: sop, transferSyntaxes: [...NATIVE] }]);
  try {
    const ctx = contextOrThrow(ep, sop, remote);
    const { last, onPending } = countTracker(onProgress);
    const final = await ep.request(ctx.id, { commandField: CommandField.CMoveRq, affectedSopClassUid: sop, priority: 0, moveDestination: destinationAe, commandDataSetType: 0 }, encodeDataset(identifier(level, keys), ctx.transferSyntax), onPending);
    return outcome(final.command, last);
  } finally {
    await ep.assoc.release();
  }
}

/** Where a received instance goes: bytes are streamed to `writable` (meta header included), then `commit` decides. */
export interface InstanceSink {
  writable: Writable;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

/**
 * C-GET: instances come back on the same association as C-STORE sub-operations, each streamed into the sink
 * `openInstance` returns. The storage SOP classes to receive must be named (they are negotiated up front,
 * with SCP role selection).
 */
export async function get(remote: Remote, callingAe: string, level: Level, keys: Record<string, string>, storageClasses: string[], openInstance: (info: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string }) => InstanceSink): Promise<RetrieveOutcome> {
  const contexts: PresentationContextRq[] = [{ id: 1, abstractSyntax: SopClass.StudyRootGet, transferSyntaxes: [...NATIVE] }];
  storageClasses.slice(0, 127).forEach((uid, i) => contexts.push({ id: 3 + 2 * i, abstractSyntax: uid, transferSyntaxes: [...NATIVE] }));
  const ep = await open(remote, callingAe, contexts, storageClasses.map((sopClassUid) => ({ sopClassUid, scu: false, scp: true })));
  const sinks = new Map<unknown, InstanceSink>();
  ep.assoc.openDataset = (contextId, command) => {
    if (command.commandField !== CommandField.CStoreRq) return undefined;
    const ts = ep.assoc.accepted.get(contextId)!.transferSyntax;
    const info = { sopClassUid: command.affectedSopClassUid ?? '', sopInstanceUid: command.affectedSopInstanceUid ?? '', transferSyntaxUid: ts };
    const sink = openInstance(info);
    sink.writable.write(fileMetaHeader({ ...info, sourceAeTitle: remote.aeTitle }));
    sinks.set(command, sink);
    return sink.writable;
  };
  ep.onRequest = (msg: DimseMessage) => {
    if (msg.command.commandField !== CommandField.CStoreRq) return;
    const sink = sinks.get(msg.command);
    sinks.delete(msg.command);
    const reply = (status: number, comment?: string) =>
      ep.respond(msg, { commandField: CommandField.CStoreRsp, affectedSopClassUid: msg.command.affectedSopClassUid, affectedSopInstanceUid: msg.command.affectedSopInstanceUid, status, errorComment: comment, commandDataSetType: 0x0101 }).catch(() => undefined);
    if (!sink) return void reply(Status.ProcessingFailure, 'no data set');
    sink.commit().then(
      () => reply(Status.Success),
      (e: Error) => reply(Status.CannotUnderstand, e.message),
    );
  };
  try {
    const ctx = contextOrThrow(ep, SopClass.StudyRootGet, remote);
    const { last, onPending } = countTracker();
    const final = await ep.request(ctx.id, { commandField: CommandField.CGetRq, affectedSopClassUid: SopClass.StudyRootGet, priority: 0, commandDataSetType: 0 }, encodeDataset(identifier(level, keys), ctx.transferSyntax), onPending);
    return outcome(final.command, last);
  } finally {
    for (const s of sinks.values()) await s.abort();
    await ep.assoc.release();
  }
}

export interface StoreProgress {
  completed: number;
  failed: number;
  warning: number;
}

/** Presentation contexts for sending these files: one per SOP class, offering each file's own syntax first. */
export function storageContexts(infos: Part10Info[]): PresentationContextRq[] {
  const bySop = new Map<string, Set<string>>();
  for (const i of infos) {
    const set = bySop.get(i.sopClassUid) ?? new Set<string>();
    set.add(i.transferSyntaxUid);
    bySop.set(i.sopClassUid, set);
  }
  const contexts: PresentationContextRq[] = [];
  let id = 1;
  for (const [sop, syntaxes] of bySop) {
    // A context per compressed syntax (it cannot be converted); native ones share one context.
    for (const ts of syntaxes) {
      if ((NATIVE as string[]).includes(ts)) continue;
      if (id > 255) break;
      contexts.push({ id, abstractSyntax: sop, transferSyntaxes: [ts] });
      id += 2;
    }
    if (id > 255) break;
    contexts.push({ id, abstractSyntax: sop, transferSyntaxes: [...new Set([...[...syntaxes].filter((t) => (NATIVE as string[]).includes(t)), ...NATIVE])] });
    id += 2;
  }
  return contexts;
}

/**
 * C-STORE SCU over an association: each file's data set is streamed from disk as stored, byte for byte, so a
 * study goes out at disk speed and without decoding; only a native syntax the peer did not accept is converted.
 */
export async function storeOver(
  ep: DimseEndpoint,
  items: Array<OutboundInstance & { info: Part10Info }>,
  opts: { moveOriginator?: { aeTitle: string; messageId: number }; onProgress?: (p: StoreProgress) => void; isCancelled?: () => boolean } = {},
): Promise<StoreProgress & { failedUids: string[]; error?: string }> {
  const progress = { completed: 0, failed: 0, warning: 0 };
  const failedUids: string[] = [];
  let error: string | undefined;
  for (const item of items) {
    if (opts.isCancelled?.()) break;
    const { info } = item;
    const ctx = ep.assoc.contextFor(info.sopClassUid, info.transferSyntaxUid);
    let status: number;
    if (!ctx) {
      status = Status.SopClassNotSupported;
      error ??= `peer did not accept SOP class ${info.sopClassUid}`;
    } else {
      try {
        const data =
          ctx.transferSyntax === info.transferSyntaxUid
            ? item.bytes
              ? item.bytes.subarray(info.datasetOffset)
              : createReadStream(item.path, { start: info.datasetOffset, highWaterMark: 1024 * 1024 })
            : await convertDataset(item.bytes ?? item.path, info.transferSyntaxUid, ctx.transferSyntax);
        const r = await ep.request(
          ctx.id,
          {
            commandField: CommandField.CStoreRq,
            affectedSopClassUid: info.sopClassUid,
            affectedSopInstanceUid: info.sopInstanceUid,
            priority: 0,
            commandDataSetType: 0,
            moveOriginatorAe: opts.moveOriginator?.aeTitle,
            moveOriginatorMessageId: opts.moveOriginator?.messageId,
          },
          data,
        );
        status = r.command.status ?? Status.ProcessingFailure;
        if (status !== Status.Success && (status & 0xf000) !== 0xb000) error ??= `${info.sopInstanceUid}: status ${hex(status)}${r.command.errorComment ? ` (${r.command.errorComment})` : ''}`;
      } catch (e) {
        status = Status.ProcessingFailure;
        error ??= (e as Error).message;
        if (ep.assoc.state === 'closed') {
          progress.failed++;
          failedUids.push(info.sopInstanceUid);
          break;
        }
      }
    }
    if (status === Status.Success) progress.completed++;
    else if ((status & 0xf000) === 0xb000) progress.warning++;
    else {
      progress.failed++;
      failedUids.push(info.sopInstanceUid);
    }
    opts.onProgress?.({ ...progress });
  }
  const answered = progress.completed + progress.failed + progress.warning;
  if (answered < items.length && !opts.isCancelled?.()) {
    for (const i of items.slice(answered)) failedUids.push(i.sopInstanceUid);
    progress.failed += items.length - answered;
  }
  return { ...progress, failedUids, error };
}

/** Sends local files to a remote SCP (C-STORE SCU), one association, progress per instance. */
export async function storeInstances(
  remote: Remote,
  callingAe: string,
  items: OutboundInstance[],
  opts: { moveOriginator?: { aeTitle: string; messageId: number }; onProgress?: (p: StoreProgress) => void; isCancelled?: () => boolean } = {},
): Promise<StoreProgress & { error?: string; failedUids: string[] }> {
  const withInfo: Array<OutboundInstance & { info: Part10Info }> = [];
  const unreadable: string[] = [];
  for (const item of items) {
    try {
      withInfo.push({ ...item, info: item.bytes ? part10Info(item.bytes, item.path) : await readPart10Info(item.path) });
    } catch {
      unreadable.push(item.sopInstanceUid || item.path);
    }
  }
  let ep: DimseEndpoint;
  try {
    ep = await open(remote, callingAe, storageContexts(withInfo.map((i) => i.info)));
  } catch (e) {
    return { completed: 0, warning: 0, failed: items.length, failedUids: items.map((i) => i.sopInstanceUid), error: (e as Error).message };
  }
  try {
    const r = await storeOver(ep, withInfo, opts);
    return { ...r, failed: r.failed + unreadable.length, failedUids: [...r.failedUids, ...unreadable], error: r.error ?? (unreadable.length ? `${unreadable.length} file(s) unreadable` : undefined) };
  } finally {
    await ep.assoc.release();
  }
}
