import assert from 'node:assert/strict';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, describe, test } from 'node:test';
import yazl from 'yazl';
import { ArchiveError, extractZip, safeEntryPath } from './safe-zip.js';

const work = mkdtempSync(path.join(tmpdir(), 'zip-'));
const limits = { maxBytes: 256 * 1024 * 1024, maxFiles: 1000, maxRatio: 200 };

async function makeZip(name: string, entries: Array<{ name: string; data: Buffer; compress?: boolean }>): Promise<string> {
  const zip = new yazl.ZipFile();
  for (const e of entries) zip.addBuffer(e.data, e.name, { compress: e.compress ?? true });
  zip.end();
  const file = path.join(work, name);
  await pipeline(zip.outputStream, createWriteStream(file));
  return file;
}

describe('safe zip extraction', () => {
  after(() => rmSync(work, { recursive: true, force: true }));

  test('entry names: traversal, absolute paths and drive letters are refused; . and empty segments dropped', () => {
    assert.equal(safeEntryPath('DICOM/./ST1//IM1'), 'DICOM/ST1/IM1');
    assert.equal(safeEntryPath('a\\b\\c'), 'a/b/c');
    for (const bad of ['../etc/passwd', 'DICOM/../../x', '/etc/passwd', 'C:\\Windows\\x', 'a\0b']) assert.throws(() => safeEntryPath(bad), ArchiveError, bad);
  });

  test('a normal archive is extracted with its folders', async () => {
    const file = await makeZip('ok.zip', [{ name: 'DICOM/IM1', data: Buffer.from('one') }, { name: 'README.TXT', data: Buffer.from('two') }]);
    const dest = mkdtempSync(path.join(work, 'ok-'));
    const r = await extractZip(file, dest, limits);
    assert.equal(r.files.length, 2);
    assert.equal(readFileSync(path.join(dest, 'DICOM/IM1'), 'utf8'), 'one');
  });

  test('zip slip: an entry named ../ is refused and nothing is written outside', async () => {
    // yazl refuses to write such a name, so one of the same length is patched in the local and central headers.
    const file = await makeZip('slip.zip', [{ name: 'zz/evil.txt', data: Buffer.from('pwned') }]);
    const bytes = readFileSync(file);
    writeFileSync(file, Buffer.from(bytes.toString('latin1').replaceAll('zz/evil.txt', '../evil.txt'), 'latin1'));
    const dest = mkdtempSync(path.join(work, 'slip-'));
    await assert.rejects(extractZip(file, dest, limits), (e: Error) => e instanceof ArchiveError && /path traversal/.test(e.message));
    assert.equal(existsSync(path.join(dest, '..', 'evil.txt')), false);
  });

  test('zip bomb: 200 MB of zeros in a tiny archive is refused by ratio, and by size, before filling the disk', async () => {
    const file = await makeZip('bomb.zip', [{ name: 'zeros.bin', data: Buffer.alloc(200 * 1024 * 1024) }]);
    assert.ok(readFileSync(file).length < 1024 * 1024);
    await assert.rejects(extractZip(file, mkdtempSync(path.join(work, 'bomb-')), limits), /zip bomb/);
    await assert.rejects(extractZip(file, mkdtempSync(path.join(work, 'big-')), { ...limits, maxRatio: 1e9, maxBytes: 50 * 1024 * 1024 }), /expands beyond/);
  });

  test('too many files, and a file that is not a zip, get clear errors', async () => {
    const file = await makeZip('many.zip', Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, data: Buffer.from([i]) })));
    await assert.rejects(extractZip(file, mkdtempSync(path.join(work, 'many-')), { ...limits, maxFiles: 10 }), /more than 10 files/);
    const notZip = path.join(work, 'not.zip');
    writeFileSync(notZip, 'hello');
    await assert.rejects(extractZip(notZip, mkdtempSync(path.join(work, 'nz-')), limits), /not a readable zip archive/);
  });
});
