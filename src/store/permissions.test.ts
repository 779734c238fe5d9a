import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createLogger } from '../common/log.js';
import { loadConfig } from '../config/config.js';
import { generateStudy } from '../../test/harness/gen-study.js';
import { readFileSync } from 'node:fs';
import { openStore } from './open-store.js';

test('the data directory is the service user\'s only: directory 0700, index and instance files 0600', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'perms-'));
  const dataDir = path.join(root, 'data');
  const store = await openStore(loadConfig({ env: {}, overrides: { dataDir } }), createLogger('silent'));
  try {
    const file = generateStudy({ out: path.join(root, 'gen'), modality: 'CT', series: 1, slices: 1, rows: 16, cols: 16 }).files[0]!;
    const w = store.ingestor.begin();
    w.end(readFileSync(file));
    await store.ingestor.commit(w);
    const mode = (p: string) => statSync(p).mode & 0o777;
    assert.equal(mode(dataDir), 0o700);
    assert.equal(mode(path.join(dataDir, 'index.sqlite')), 0o600);
    const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
    const stored = walk(path.join(dataDir, 'storage')).filter((f) => f.endsWith('.dcm'));
    assert.equal(stored.length, 1);
    assert.equal(mode(stored[0]!), 0o600);
  } finally {
    await store.close();
    rmSync(root, { recursive: true, force: true });
  }
});
