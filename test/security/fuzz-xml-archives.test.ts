/**
 * Fuzzing and attack inputs for what reads XML and archives from the outside: the hardened XML parser (SOAP,
 * CDA, XDM metadata) with mutated documents, XXE and entity-expansion ("billion laughs") attempts, deep nesting;
 * the zip extractor and the media reader (DICOMDIR, XDM) with mutated archives. Bounded in time (FUZZ_SECONDS per
 * target, 15 by default, 60 with `npm run test:security`); zero crashes, zero hangs, nothing written outside.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import fc from 'fast-check';
import yazl from 'yazl';
import { parseXml, XmlError } from '../../src/xds/xml.js';
import { readImagingReport, readReportBody } from '../../src/source/cda.js';
import { parseSoap } from '../../src/xds/soap.js';
import { imagingReportCda } from '../../src/simulators/ris/reports.js';
import { ArchiveError, extractZip } from '../../src/media/safe-zip.js';
import { readMedia, xdmDocuments } from '../../src/media/media-reader.js';
import { buildDicomdir } from '../../src/dicom/dicomdir.js';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 15);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : process.env.FUZZ_RANDOM ? undefined : 20261203;
const HANG_MS = 2000;
const work = mkdtempSync(path.join(tmpdir(), 'fuzz-arch-'));

const XDM = `<?xml version="1.0" encoding="UTF-8"?><lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0" xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"><rim:RegistryObjectList><rim:ExtrinsicObject id="Doc1" mimeType="application/dicom" objectType="urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"><rim:Slot name="URI"><rim:ValueList><rim:Value>IM000001</rim:Value></rim:ValueList></rim:Slot><rim:Name><rim:LocalizedString value="KOS"/></rim:Name></rim:ExtrinsicObject></rim:RegistryObjectList></lcm:SubmitObjectsRequest>`;
const CDA = imagingReportCda({ ins: '280067512345690', ipp: 'IPP-7', family: 'PAT', given: 'CAMILLE', birthDate: '19800615', sex: 'F', studyUid: '1.2.3.4', accessionNumber: 'ACC-1', setId: 'S-1', version: 1 });
const SAMPLES = [XDM, CDA];

function mutated(seed: string): fc.Arbitrary<string> {
  const special = fc.constantFrom('<', '>', '&', '"', "'", '/', '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>', '&e;', '&amp;', '<![CDATA[', ']]>', '<!--', '-->', '<?x?>', '\u0000', '\ufffd', '');
  const edit = fc.tuple(fc.nat({ max: seed.length }), fc.oneof(special, fc.string({ maxLength: 8 })), fc.nat({ max: 6 }));
  return fc.oneof(
    fc.array(edit, { minLength: 1, maxLength: 10 }).map((edits) => {
      let s = seed;
      for (const [i, ins, del] of edits) s = s.slice(0, i) + ins + s.slice(i + del);
      return s;
    }),
    fc.nat({ max: seed.length }).map((n) => seed.slice(0, n)),
  );
}

describe('XML and archive inputs', () => {
  after(() => rmSync(work, { recursive: true, force: true }));

  test('XXE, billion laughs and deep nesting are refused before any expansion', () => {
    const xxe = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>`;
    const laughs = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>`;
    const deep = `${'<a>'.repeat(10_000)}${'</a>'.repeat(10_000)}`;
    for (const doc of [xxe, laughs, deep]) {
      assert.throws(() => parseXml(doc), XmlError);
      assert.throws(() => xdmDocuments(doc), XmlError);
    }
    assert.throws(() => parseXml('x'.repeat(100), { maxBytes: 50 }), /exceeds/);
    assert.deepEqual(xdmDocuments(XDM), [{ uri: 'IM000001', mimeType: 'application/dicom' }]);
  });

  test(`XML readers: ${SECONDS} s of mutated XDM metadata, CDA reports and SOAP envelopes`, { timeout: (SECONDS + 30) * 1000 }, () => {
    let runs = 0;
    let refused = 0;
    let slowest = 0;
    fc.assert(
      fc.property(fc.constantFrom(...SAMPLES).chain((s) => mutated(s)), (xml) => {
        runs++;
        const t = performance.now();
        for (const read of [() => xdmDocuments(xml), () => readImagingReport(xml), () => readReportBody(xml), () => parseSoap('application/soap+xml; charset=utf-8', Buffer.from(xml))]) {
          try {
            read();
          } catch (e) {
            // A clear refusal (an Error with a message) is fine; a TypeError/RangeError from inside is a bug.
            assert.ok(e instanceof Error && !(e instanceof TypeError) && !(e instanceof RangeError), `unexpected ${(e as Error).name}: ${(e as Error).message}`);
            refused++;
          }
        }
        const ms = performance.now() - t;
        slowest = Math.max(slowest, ms);
        assert.ok(ms < HANG_MS, 'reading took too long');
      }),
      { numRuns: 10_000_000, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false, seed: SEED },
    );
    console.log(`XML readers: ${runs} documents, ${refused} refusals, 0 crashes, slowest ${slowest.toFixed(1)} ms`);
    assert.ok(runs > 50);
  });

  test(`archives: ${SECONDS} s of mutated zips (DICOMDIR, XDM) through extraction and the media reader`, { timeout: (SECONDS + 60) * 1000 }, async () => {
    const dicomdir = buildDicomdir([{ fileId: ['DICOM', 'I1'], patientId: 'P', patientName: 'A^B', studyUid: '1.2', studyDate: '20260101', studyTime: '', studyId: '', accessionNumber: '', studyDescription: '', seriesUid: '1.2.3', modality: 'CT', seriesNumber: '1', sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopUid: '1.2.3.4', transferSyntaxUid: '1.2.840.10008.1.2.1', instanceNumber: '1' }]);
    const zip = new yazl.ZipFile();
    zip.addBuffer(dicomdir, 'DICOMDIR');
    zip.addBuffer(Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.alloc(64, 1)]), 'DICOM/I1');
    zip.addBuffer(Buffer.from(XDM), 'IHE_XDM/SUBSET01/METADATA.XML');
    zip.addBuffer(Buffer.alloc(4096, 0x41), 'README.TXT');
    zip.end();
    const seedZip = path.join(work, 'seed.zip');
    await pipeline(zip.outputStream, createWriteStream(seedZip));
    const seed = readFileSync(seedZip);
    const flips = fc.array(fc.tuple(fc.nat({ max: seed.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 16 });
    const variants = fc.sample(fc.oneof(flips.map((f) => ({ f, cut: seed.length })), fc.nat({ max: seed.length }).map((cut) => ({ f: [] as Array<[number, number]>, cut }))), { numRuns: 100_000, seed: SEED });
    const deadline = Date.now() + SECONDS * 1000;
    let runs = 0;
    let refused = 0;
    for (const { f, cut } of variants) {
      if (Date.now() > deadline) break;
      const bytes = Buffer.from(seed.subarray(0, cut));
      for (const [i, v] of f) if (i < bytes.length) bytes[i] = v;
      const file = path.join(work, `m${runs}.zip`);
      writeFileSync(file, bytes);
      const dest = mkdtempSync(path.join(work, 'x-'));
      const t = Date.now();
      try {
        await extractZip(file, dest, { maxBytes: 10 * 1024 * 1024, maxFiles: 100, maxRatio: 1000 });
        await readMedia(dest);
      } catch (e) {
        assert.ok(e instanceof ArchiveError || (e instanceof Error && !(e instanceof TypeError) && !(e instanceof RangeError)), `unexpected ${(e as Error).name}: ${(e as Error).message}`);
        refused++;
      }
      assert.ok(Date.now() - t < HANG_MS * 5, 'an archive took too long');
      rmSync(dest, { recursive: true, force: true });
      rmSync(file, { force: true });
      runs++;
    }
    // Nothing was ever written beside the extraction folders.
    assert.deepEqual(readdirSync(work).filter((n) => !n.startsWith('x-') && n !== 'seed.zip'), []);
    assert.equal(existsSync(path.join(tmpdir(), 'evil.txt')), false);
    console.log(`archives: ${runs} mutated zips, ${refused} refused, 0 crashes`);
    assert.ok(runs > 20);
  });
});
