import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startTestNode } from '../../test/harness/node.js';
import { generateStudy } from '../../test/harness/gen-study.js';
import { storeInstances, echo } from '../dicom/scu.js';

test('graceful shutdown finishes the association in flight and refuses new ones', async () => {
  const node = await startTestNode({ dicom: { acceptUnknownCallingAe: true, checkCalledAe: true, maxPduLength: 262144, maxAssociations: 8, idleTimeoutMs: 30000, maxFindResults: 100 } });
  const study = generateStudy({ out: mkdtempSync(path.join(tmpdir(), 'shutdown-')), slices: 60, rows: 256 });
  const remote = { aeTitle: 'OPENDRIM', host: '127.0.0.1', port: node.dicomPort };
  const items = study.files.map((p, i) => ({ path: p, sopClassUid: '', sopInstanceUid: study.sopUids[i]!, transferSyntaxUid: '' }));
  let started!: () => void;
  const firstStored = new Promise<void>((r) => (started = r));
  const sending = storeInstances(remote, 'MODALITY', items, { onProgress: (p) => p.completed === 1 && started() });
  await firstStored;
  const closing = node.close(20_000);
  await assert.rejects(echo(remote, 'LATECOMER'));
  const result = await sending;
  await closing;
  assert.equal(result.completed, 60, result.error);
  assert.equal(result.failed, 0);
  // The index is closed with the node: reopen through a fresh node on the same data to check nothing was lost.
  const again = await startTestNode({ dataDir: node.config.dataDir });
  assert.equal((await again.index.counts()).instances, 60);
  await again.cleanup();
  rmSync(node.config.dataDir, { recursive: true, force: true });
});
