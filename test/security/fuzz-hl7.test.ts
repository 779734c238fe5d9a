/**
 * Fuzzing of everything that reads HL7 v2 from the outside: the ER7 parser and the profile readers (reports,
 * schedules, orders, exam updates), and a running MLLP listener fed mutated frames over TCP. Bounded in time
 * (FUZZ_SECONDS per target, 15 by default, 60 with `npm run test:security`); zero crashes and zero hangs.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { createLogger } from '../../src/common/log.js';
import { buildAck, Hl7ParseError, parseMessage } from '../../src/hl7/message.js';
import { ProfileError, readExamUpdate, readReportMessage } from '../../src/hl7/cisis-report.js';
import { readAppointmentMessage, readScheduledOrder } from '../../src/hl7/scheduling.js';
import { MllpServer, sendMllp } from '../../src/hl7/mllp.js';
import { imagingReportCda, omiO23, oruR01 } from '../../src/simulators/ris/reports.js';
import { ormO01, siu } from '../../src/simulators/ris/schedule.js';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 15);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : process.env.FUZZ_RANDOM ? undefined : 20261129;
const HANG_MS = 2000;

const patient = { ins: '280067512345690', ipp: 'IPP-7', family: 'PAT', given: 'CAMILLE', birthDate: '19800615', sex: 'F' as const };
const appointment = { ...patient, appointmentId: 'RDV-1', start: new Date('2026-12-01T08:30:00Z'), modality: 'CT', procedure: { code: 'ZBQK002', text: 'Scanographie du thorax' }, radiologist: { rpps: '899700218896', family: 'RADIO', given: 'Jeanne' } };
const report = { ...patient, studyUid: '1.2.3.4', accessionNumber: 'ACC-1', setId: 'S-1', version: 1 };
const SAMPLES = [oruR01(report, imagingReportCda(report)), siu('S12', appointment), ormO01(appointment), omiO23({ ...report }), 'MSH|^~\\&|DPI|H|OPENDRIM|H|20261129||ADT^A40^ADT_A39|C1|P|2.5\rPID|||IPP-9^^^H&1.2.3&ISO^PI\rMRG|IPP-2\r'];

/** Character-level mutations that favour HL7's own delimiters and escapes. */
function mutated(seed: string): fc.Arbitrary<string> {
  const special = fc.constantFrom('|', '^', '~', '\\', '&', '\r', '\n', '\x0b', '\x1c', '\\X00\\', '\\E\\', 'MSH|', '\u00e9', '\ufffd', '');
  const edit = fc.tuple(fc.nat({ max: seed.length }), fc.oneof(special, fc.string({ maxLength: 8 })), fc.nat({ max: 4 }));
  return fc.oneof(
    fc.array(edit, { minLength: 1, maxLength: 12 }).map((edits) => {
      let s = seed;
      for (const [i, ins, del] of edits) s = s.slice(0, i) + ins + s.slice(i + del);
      return s;
    }),
    fc.nat({ max: seed.length }).map((n) => seed.slice(0, n)),
    fc.tuple(fc.nat({ max: seed.length - 1 }), fc.integer({ min: 2, max: 2000 })).map(([i, n]) => seed.slice(0, i) + seed[i]!.repeat(n) + seed.slice(i)),
  );
}

const ACCEPTABLE = (e: unknown) => e instanceof Hl7ParseError || e instanceof ProfileError;

describe('HL7 fuzzing', () => {
  test(`parser and profile readers: ${SECONDS} s of mutated messages`, { timeout: (SECONDS + 30) * 1000 }, () => {
    let runs = 0;
    let refused = 0;
    let slowest = 0;
    fc.assert(
      fc.property(fc.constantFrom(...SAMPLES).chain((s) => mutated(s)), (text) => {
        runs++;
        const t = performance.now();
        try {
          const msg = parseMessage(text);
          buildAck(msg, 'AA');
          for (const read of [readReportMessage, readAppointmentMessage, readScheduledOrder, readExamUpdate]) {
            try {
              read(msg);
            } catch (e) {
              assert.ok(ACCEPTABLE(e), `unexpected ${(e as Error).name}: ${(e as Error).message}`);
            }
          }
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
          // The only acceptable failure is a clear parse or profile error.
          assert.ok(ACCEPTABLE(e), `unexpected ${(e as Error).name}: ${(e as Error).message}`);
          refused++;
        }
        const ms = performance.now() - t;
        slowest = Math.max(slowest, ms);
        assert.ok(ms < HANG_MS, 'reading took too long');
      }),
      { numRuns: 10_000_000, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false, seed: SEED },
    );
    console.log(`HL7 readers: ${runs} inputs, ${refused} refused by the parser, 0 crashes, slowest ${slowest.toFixed(1)} ms`);
    assert.ok(runs > 100);
  });

  describe('MLLP listener', () => {
    let server: MllpServer;
    before(async () => {
      server = new MllpServer({ host: '127.0.0.1', port: 0, maxMessageBytes: 256 * 1024, idleTimeoutMs: 2000, log: createLogger('silent'), handler: async (msg) => (msg.type.startsWith('ORU') ? { code: 'AA' } : { code: 'AR', errors: [{ code: '200', text: 'not handled' }] }) });
      await server.listen();
    });
    after(async () => {
      await server.close(1000);
    });

    test(`${SECONDS} s of mutated frames over TCP; a valid message is still answered after each`, { timeout: (SECONDS + 60) * 1000 }, async () => {
      const frames = fc.sample(
        fc.oneof(
          fc.constantFrom(...SAMPLES).chain((s) => mutated(s)).map((s) => Buffer.concat([Buffer.from([0x0b]), Buffer.from(s, 'utf8'), Buffer.from([0x1c, 0x0d])])),
          fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)),
        ),
        { numRuns: 100_000, seed: SEED },
      );
      const deadline = Date.now() + SECONDS * 1000;
      let sent = 0;
      for (const frame of frames) {
        if (Date.now() > deadline) break;
        await new Promise<void>((resolve) => {
          const socket = net.connect(server.port!, '127.0.0.1', () => {
            socket.end(frame);
          });
          socket.on('data', () => undefined);
          socket.on('close', () => resolve());
          socket.on('error', () => resolve());
          socket.setTimeout(HANG_MS, () => socket.destroy());
        });
        sent++;
        if (sent % 50 === 0) {
          const ack = parseMessage(await sendMllp('127.0.0.1', server.port!, SAMPLES[0]!, { timeoutMs: HANG_MS }));
          assert.equal(ack.segment('MSA')?.get(1), 'AA', 'the listener still answers');
        }
      }
      const ack = parseMessage(await sendMllp('127.0.0.1', server.port!, SAMPLES[0]!, { timeoutMs: HANG_MS }));
      assert.equal(ack.segment('MSA')?.get(1), 'AA');
      console.log(`MLLP listener: ${sent} mutated frames over TCP, 0 crashes, still answering`);
      assert.ok(sent > 50);
    });
  });
});
