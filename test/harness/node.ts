import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/config.js';
import { OpenDrimNode } from '../../src/node/node.js';
import { createLogger } from '../../src/common/log.js';

/** Test senders: every HL7 message family from this machine (suites that test the sender list set their own). */
export const LOOPBACK_SENDERS = [{ name: 'test RIS and ADT feed', from: ['127.0.0.1', '::1'], messages: ['reports', 'orders', 'scheduling', 'adt'] }];

/** An in-process OpenDRIM node on 127.0.0.1 with ephemeral ports and its own data directory. */
export async function startTestNode(overrides: Record<string, unknown> = {}, databaseUrl?: string): Promise<OpenDrimNode & { cleanup(): Promise<void> }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'opendrim-node-'));
  const config = loadConfig({
    env: {},
    overrides: { bind: '127.0.0.1', httpPort: 0, dicomPort: 0, 'hl7.port': 0, 'hl7.senders': LOOPBACK_SENDERS, dataDir, ...(databaseUrl ? { databaseUrl } : {}), ...overrides },
  });
  const node = new OpenDrimNode(config, createLogger(process.env.OPENDRIM_TEST_LOG ?? 'silent'));
  await node.start();
  return Object.assign(node, {
    async cleanup() {
      await node.close(2000);
      rmSync(dataDir, { recursive: true, force: true });
    },
  });
}
