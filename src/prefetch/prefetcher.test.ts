import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../common/log.js';
import { loadConfig } from '../config/config.js';
import { AuditTrail } from '../audit/audit-trail.js';
import { LocalIdentities } from '../identity/local-identities.js';
import { openStore } from '../store/open-store.js';
import type { DmpExams } from '../consumer/dmp-exams.js';
import type { PacsImports } from '../consumer/pacs-import.js';
import { Prefetcher } from './prefetcher.js';

test('due appointments are searched a few at a time, and a day booked at once is worked through in one go', async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'prefetch-'));
  const store = await openStore(loadConfig({ env: {}, overrides: { dataDir: work } }), createLogger('silent'));
  try {
    let running = 0;
    let peak = 0;
    let searched = 0;
    // The DMP answers in 30 ms and knows no prior: each search ends in "nothing".
    const exams = {
      async list() {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 30));
        running--;
        searched++;
        return [];
      },
    } as unknown as DmpExams;
    const prefetcher = new Prefetcher({
      db: store.database.db,
      rules: [{ name: 'CT', match: { modality: 'CT' }, priors: { modalities: ['same'], regions: [], lookbackDays: 3650, maxStudies: 3, sources: ['dmp'] }, leadHours: 12 }],
      defaultLeadHours: 12,
      onBehalfOf: { id: '8899700218896' },
      exams,
      imports: { cancel: async () => 0, get: async () => undefined } as unknown as PacsImports,
      identities: new LocalIdentities(store.database.db, 'CABINET-B'),
      localCount: async () => 0,
      searchConcurrency: 4,
      audit: new AuditTrail(store.database.db, store.database.dialect, createLogger('silent')),
      log: createLogger('silent'),
    });
    // 120 appointments in the next hours, all due at once with a 12-hour lead time, booked while the first pass
    // (kicked by the first booking) is still running: nothing waits for a poll tick (none is started here).
    const t0 = Date.now();
    for (let k = 0; k < 120; k++) {
      await prefetcher.onAppointment({ event: 'new', appointmentId: `RDV-${k}`, patient: { ins: `2800675000${String(k).padStart(3, '0')}00`, oid: '1.2.250.1.213.1.4.10' }, start: new Date(Date.now() + 3600_000 + k * 60_000).toISOString(), modality: 'CT' });
    }
    for (let i = 0; i < 400 && searched < 120; i++) await new Promise((r) => setTimeout(r, 10));
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(searched, 120, 'every due appointment searched without waiting for a poll tick');
    assert.equal(peak, 4, 'four searches at once, no more');
    // From the first booking; one search at a time would take 120 × 30 ms = 3.6 s.
    assert.ok(seconds < 2.5, `took ${seconds} s`);
    const list = await prefetcher.list({ from: new Date(), to: new Date(Date.now() + 13 * 3600_000) });
    assert.equal(list.filter((a) => a.state === 'nothing').length, 120);
    prefetcher.stop();
  } finally {
    await store.close();
    rmSync(work, { recursive: true, force: true });
  }
});
