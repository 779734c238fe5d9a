import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../common/log.js';
import { loadConfig } from '../config/config.js';
import { OpenDrimNode } from './node.js';

const busyPort = () =>
  new Promise<net.Server>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => resolve(s));
  });
const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

test('a listener whose port is taken stops the node cleanly, naming the listener and its setting; nothing stays open', async () => {
  const blocker = await busyPort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'listeners-'));
  const free = await busyPort();
  const httpPort = portOf(free);
  await new Promise((r) => free.close(r));
  try {
    const config = loadConfig({ env: {}, overrides: { bind: '127.0.0.1', httpPort, dicomPort: 0, 'hl7.port': portOf(blocker), dataDir } });
    await assert.rejects(new OpenDrimNode(config, createLogger('silent')).start(), /the HL7 \(MLLP\) listener could not listen on 127\.0\.0\.1:\d+: the port is already in use.*change hl7\.port/);
    // The HTTP listener opened before the failure was closed again.
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => again.once('error', reject).listen(httpPort, '127.0.0.1', () => resolve()));
    await new Promise((r) => again.close(r));
  } finally {
    await new Promise((r) => blocker.close(r));
    rmSync(dataDir, { recursive: true, force: true });
  }
});
