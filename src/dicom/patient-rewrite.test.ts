import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateStudy } from '../../test/harness/gen-study.js';
import { parseHeader, str } from './part10.js';
import { rewritePatient } from './patient-rewrite.js';

test('the local identity replaces Patient ID and issuer; the original ones and the INS are kept in Other Patient IDs', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'rewrite-'));
  try {
    const study = generateStudy({ out: dir, series: 1, slices: 1, rows: 16, cols: 16, patientId: 'IPP-A-7', issuer: 'CHU-A', ins: '280067512345690' });
    const original = readFileSync(study.files[0]!);
    const out = rewritePatient(original, { patientId: 'IPP-B-55', issuer: 'CABINET-B' }, [{ patientId: '280067512345690', issuer: 'ASIP-SANTE-INS-NIR' }]);
    const h = parseHeader(out, true);
    assert.equal(str(h.dataset, '00100020'), 'IPP-B-55');
    assert.equal(str(h.dataset, '00100021'), 'CABINET-B');
    const others = (h.dataset['00101002']?.Value ?? []) as any[];
    const ids = others.map((o) => `${o['00100020'].Value[0]}|${o['00100021'].Value[0]}`).sort();
    assert.deepEqual(ids, ['280067512345690|ASIP-SANTE-INS-NIR', 'IPP-A-7|CHU-A'], 'INS not duplicated, original IPP kept');
    assert.equal(str(h.dataset, '00080018'), str(parseHeader(original, true).dataset, '00080018'), 'same instance');
    assert.equal(h.transferSyntaxUid, parseHeader(original, true).transferSyntaxUid);
    assert.ok(out.length > 16 * 16 * 2, 'pixel data kept');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
