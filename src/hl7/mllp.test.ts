import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { createLogger } from '../common/log.js';
import { decode, MllpServer, sendMllp } from './mllp.js';
import { parseMessage, type Hl7Message } from './message.js';

const received: Hl7Message[] = [];
let server: MllpServer;

before(async () => {
  server = new MllpServer({
    host: '127.0.0.1',
    port: 0,
    log: createLogger('silent'),
    maxMessageBytes: 64 * 1024,
    handler: async (msg) => {
      if (msg.segment('PID')?.get(3, 1) === 'THROW') throw new Error('boom');
      received.push(msg);
      if (!msg.segment('PID')) return { code: 'AE', errors: [{ code: '101', text: 'PID segment missing', location: 'PID' }] };
      return { code: 'AA' };
    },
  });
  await server.listen();
});
after(() => server.close());

const msg = (id: string, pid = 'PID|||123^^^X^PI') => `MSH|^~\\&|RIS|FAC|OPENDRIM|FAC|20240101||ORU^R01|${id}|P|2.5\r${pid}\r`;

/** Raw MLLP exchange: writes bytes (possibly in pieces) and collects `expect` framed answers. */
async function exchange(pieces: Buffer[], expect: number): Promise<string[]> {
  const socket = net.connect({ host: '127.0.0.1', port: server.port });
  await new Promise((r) => socket.once('connect', r));
  const answers: string[] = [];
  let buf = Buffer.alloc(0);
  const done = new Promise<void>((resolve, reject) => {
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let end: number;
      while (buf[0] === 0x0b && (end = buf.indexOf(0x1c)) > 0) {
        answers.push(buf.subarray(1, end).toString('utf8'));
        buf = buf.subarray(end + 2);
      }
      if (answers.length >= expect) resolve();
    });
    socket.on('error', reject);
    setTimeout(() => reject(new Error(`only ${answers.length} answers`)), 5000).unref();
  });
  for (const p of pieces) {
    socket.write(p);
    await new Promise((r) => setImmediate(r));
  }
  await done;
  socket.destroy();
  return answers;
}

const frame = (s: string) => Buffer.concat([Buffer.from([0x0b]), Buffer.from(s, 'utf8'), Buffer.from([0x1c, 0x0d])]);

test('acknowledges a message with AA, echoing its control ID', async () => {
  const ack = parseMessage(await sendMllp('127.0.0.1', server.port, msg('C1')));
  assert.equal(ack.segment('MSA')!.get(1), 'AA');
  assert.equal(ack.segment('MSA')!.get(2), 'C1');
  assert.equal(received.at(-1)!.controlId, 'C1');
});

test('reassembles frames split across TCP segments and answers pipelined frames in order', async () => {
  const whole = Buffer.concat([frame(msg('S1')), Buffer.from('\r\n'), frame(msg('S2')), frame(msg('S3'))]);
  const pieces = [whole.subarray(0, 1), whole.subarray(1, 7), whole.subarray(7, 40), whole.subarray(40, whole.length - 1), whole.subarray(whole.length - 1)];
  const answers = await exchange(pieces, 3);
  assert.deepEqual(answers.map((a) => parseMessage(a).segment('MSA')!.get(2)), ['S1', 'S2', 'S3']);
});

test('answers AR for garbage, AE for the handler refusing, AE for a handler crash, and keeps the connection usable', async () => {
  const answers = await exchange([frame('this is not hl7'), frame(msg('N1', 'NTE|1')), frame(msg('T1', 'PID|||THROW')), frame(msg('OK1'))], 4);
  const [garbage, refused, crashed, ok] = answers.map((a) => parseMessage(a));
  assert.equal(garbage!.segment('MSA')!.get(1), 'AR');
  assert.match(garbage!.segment('ERR')!.get(8), /MSH/);
  assert.equal(refused!.segment('MSA')!.get(1), 'AE');
  assert.equal(refused!.segment('ERR')!.get(8), 'PID segment missing');
  assert.equal(crashed!.segment('MSA')!.get(1), 'AE');
  assert.match(crashed!.segment('ERR')!.get(8), /boom/);
  assert.equal(ok!.segment('MSA')!.get(1), 'AA');
});

test('rejects a message over the size limit without buffering it, then carries on', async () => {
  const big = msg('BIG', `OBX|1|ED|X||${'A'.repeat(100 * 1024)}`);
  const answers = await exchange([frame(big), frame(msg('AFTER'))], 2);
  assert.equal(parseMessage(answers[0]!).segment('MSA')!.get(1), 'AR');
  assert.match(parseMessage(answers[0]!).segment('ERR')!.get(8), /limit/);
  assert.equal(parseMessage(answers[1]!).segment('MSA')!.get(2), 'AFTER');
});

test('reads the character set from MSH-18, and undeclared Latin-1 without mangling accents', () => {
  const utf = `MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5|||||FRA|UNICODE UTF-8\rPID|||1||Hélène`;
  assert.match(decode(Buffer.from(utf, 'utf8')), /Hélène/);
  const latin = `MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.5|||||FRA|8859/1\rPID|||1||Hélène`;
  assert.match(decode(Buffer.from(latin, 'latin1')), /Hélène/);
  assert.match(decode(Buffer.from(latin.replace('8859/1', ''), 'latin1')), /Hélène/);
});
