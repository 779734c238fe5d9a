import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Kysely } from 'kysely';
import type { Logger } from '../common/log.js';
import type { DB } from '../store/db.js';
import type { AuditTrail } from './audit-trail.js';

/** What a checkpoint vouches for: the trail up to record `lastId`, whose hash is `lastHash`, at `at`. */
export interface Checkpoint {
  at: string;
  lastId: number;
  lastHash: string;
  count: number;
  /** Ed25519 signature (base64) of the fields above, by the node's audit key. */
  signature: string;
}

const signedPart = (c: Omit<Checkpoint, 'signature'>) => Buffer.from(JSON.stringify({ at: c.at, lastId: c.lastId, lastHash: c.lastHash, count: c.count }));

/** The node's audit signing key, made on first use (private key 0600, public key beside it). */
export function auditKey(keyFile: string): { privateKey: KeyObject; publicKey: KeyObject } {
  if (!existsSync(keyFile)) {
    mkdirSync(path.dirname(keyFile), { recursive: true });
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(`${keyFile}.pub`, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 });
  }
  const privateKey = createPrivateKey(readFileSync(keyFile));
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/**
 * Anchors of the audit trail outside its database. Every few minutes (and at shutdown) the node signs where the
 * trail stands (last id, last hash, count) and appends it to a file of its own, opened for appending only, and
 * records it in the trail, so it also goes to the ATNA collector. Someone who can write to the database can edit,
 * delete, renumber and re-chain records; the checkpoints already written, here and at the collector, then no
 * longer match, and `opendrim audit verify` names the first record that does not.
 */
export class AuditCheckpoints {
  private timer: NodeJS.Timeout | undefined;
  private last: { lastId: number; lastHash: string } | undefined;
  private readonly key: { privateKey: KeyObject; publicKey: KeyObject };

  constructor(
    private readonly deps: { db: Kysely<DB>; trail: AuditTrail; file: string; keyFile: string; log: Logger; everyMs?: number },
  ) {
    this.key = auditKey(deps.keyFile);
  }

  /** Signs and writes a checkpoint of the trail as it is now, unless nothing was added since the last one. */
  async write(): Promise<Checkpoint | undefined> {
    await this.deps.trail.flush();
    const last = await this.deps.db.selectFrom('audit_events').select(['id', 'hash', 'action']).orderBy('id', 'desc').limit(1).executeTakeFirst();
    // Nothing happened since the last checkpoint (whose own record is the last one): nothing to vouch for.
    if (!last || last.action === 'audit.checkpoint' || (this.last && this.last.lastId === Number(last.id))) return undefined;
    const count = Number((await this.deps.db.selectFrom('audit_events').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const body = { at: new Date().toISOString(), lastId: Number(last.id), lastHash: last.hash, count };
    const checkpoint: Checkpoint = { ...body, signature: sign(null, signedPart(body), this.key.privateKey).toString('base64') };
    mkdirSync(path.dirname(this.deps.file), { recursive: true });
    const fh = await open(this.deps.file, 'a', 0o600);
    try {
      await fh.appendFile(`${JSON.stringify(checkpoint)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.last = { lastId: body.lastId, lastHash: body.lastHash };
    await this.deps.trail.record({ actorType: 'system', actorId: 'audit', action: 'audit.checkpoint', outcome: 'success', detail: { ...checkpoint } });
    return checkpoint;
  }

  start(): void {
    this.timer = setInterval(() => void this.write().catch((e) => this.deps.log.error({ err: e }, 'audit checkpoint could not be written')), this.deps.everyMs ?? 5 * 60_000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.write().catch((e) => this.deps.log.error({ err: e }, 'audit checkpoint could not be written at shutdown'));
  }
}

export type CheckpointVerdict = { ok: true; checkpoints: number } | { ok: false; checkpoints: number; line: number; reason: string; record?: number };

/** Checks each checkpoint's signature, then that the trail still holds what it vouched for. */
export async function verifyCheckpoints(db: Kysely<DB>, file: string, publicKey: KeyObject): Promise<CheckpointVerdict> {
  if (!existsSync(file)) return { ok: true, checkpoints: 0 };
  const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
  for (const [i, line] of lines.entries()) {
    let c: Checkpoint;
    try {
      c = JSON.parse(line) as Checkpoint;
    } catch {
      return { ok: false, checkpoints: i, line: i + 1, reason: 'checkpoint line is not readable' };
    }
    if (!verify(null, signedPart(c), publicKey, Buffer.from(c.signature ?? '', 'base64'))) return { ok: false, checkpoints: i, line: i + 1, reason: 'checkpoint signature does not verify: the checkpoint file was altered' };
    const row = await db.selectFrom('audit_events').select(['id', 'hash']).where('id', '=', c.lastId).executeTakeFirst();
    if (!row) return { ok: false, checkpoints: i, line: i + 1, record: c.lastId, reason: `record ${c.lastId}, vouched for at ${c.at}, is no longer in the trail (truncated)` };
    if (row.hash !== c.lastHash) return { ok: false, checkpoints: i, line: i + 1, record: c.lastId, reason: `record ${c.lastId} no longer has the hash vouched for at ${c.at}: records up to it were altered and re-chained` };
    const count = Number((await db.selectFrom('audit_events').select((eb) => eb.fn.countAll().as('n')).where('id', '<=', c.lastId).executeTakeFirstOrThrow()).n);
    if (count !== c.count) return { ok: false, checkpoints: i, line: i + 1, record: c.lastId, reason: `${c.count} records up to ${c.lastId} were vouched for at ${c.at}; ${count} are there now` };
  }
  return { ok: true, checkpoints: lines.length };
}

