import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildAck, escape, Hl7ParseError, parseMessage, unescape } from './message.js';

const ORU = [
  'MSH|^~\\&|RIS|CLINIQUE|DRIMBOX|CLINIQUE|20240102120000||ORU^R01^ORU_R01|MSG0001|P|2.5|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2',
  'PID|||279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS~IPP101^^^HOPITAL&1.2.250.1.213.4.5.2.4&ISO^PI||PAT-TROIS^DOMINIQUE^^^^^L||19790328|F',
  'OBR|1|984375862^RIS|09011600123^RIS|18748-4^CR d\'imagerie médicale^LN||||||||||||899700367909^KIT^DOC^^^DR^^^^D^^^RPPS||09011600123',
  'OBX|1|TX|NOTE||Fracture \\F\\ pas de \\S\\ signe \\E\\ ici\\X0D\\suite',
].join('\r');

test('parses fields, components, subcomponents and repetitions with HL7 numbering', () => {
  const m = parseMessage(ORU);
  assert.equal(m.type, 'ORU^R01');
  assert.equal(m.controlId, 'MSG0001');
  assert.equal(m.version, '2.5');
  assert.equal(m.msh.get(1), '|');
  assert.equal(m.msh.get(2), '^~\\&');
  assert.equal(m.msh.get(18), 'UNICODE UTF-8');
  const pid = m.segment('PID')!;
  assert.equal(pid.get(3, 1), '279035121518989');
  assert.equal(pid.get(3, 4, 2), '1.2.250.1.213.1.4.10');
  assert.equal(pid.get(3, 5), 'INS');
  assert.equal(pid.get(3, 1, 0, 1), 'IPP101');
  assert.equal(pid.repetitions(3).length, 2);
  assert.equal(pid.part(pid.repetitions(3)[1]!, 5), 'PI');
  assert.equal(m.segment('OBR')!.get(18), '09011600123');
  assert.equal(m.segment('OBX')!.get(5), 'Fracture | pas de ^ signe \\ ici\rsuite');
  assert.equal(m.segment('ZZZ'), undefined);
  assert.equal(m.segment('PID')!.get(40), '');
});

test('round-trips to text and accepts LF or CRLF segment separators', () => {
  const m = parseMessage(ORU.replace(/\r/g, '\r\n'));
  assert.equal(m.toString(), ORU + '\r');
  assert.equal(parseMessage(ORU.replace(/\r/g, '\n')).segments.length, 4);
});

test('escape and unescape are inverse on delimiters and line breaks', () => {
  const s = 'a|b^c&d~e\\f\rg';
  assert.equal(unescape(escape(s)), s);
  assert.equal(unescape('caf\\XC3A9\\'), Buffer.from('café').toString('latin1'));
  assert.equal(unescape('unterminated \\F'), 'unterminated \\F');
});

test('rejects what is not an HL7 message with a reason', () => {
  const bad: [string, RegExp][] = [
    ['', /MSH/],
    ['PID|||1', /MSH/],
    ['MSH|', /encoding/],
    ['MSH|^^^^|A', /distinct/],
    ['MSH|^~\\&|A|B|C|D|20240101||ORU^R01|', /MSH-10/],
    ['MSH|^~\\&|A|B|C|D|20240101|||1', /MSH-9/],
    ['MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1\rpid|x', /segment name/],
    ['MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1\rMSH|^~\\&|', /second MSH/],
  ];
  for (const [text, re] of bad) assert.throws(() => parseMessage(text), (e: unknown) => e instanceof Hl7ParseError && re.test(e.message), text);
  assert.throws(() => parseMessage(`MSH|^~\\&|A|B|C|D|1||ORU^R01|1\rOBX|${'x'.repeat(200)}`, { maxSegmentLength: 100 }), /limit of 100/);
  assert.throws(() => parseMessage(`MSH|^~\\&|A|B|C|D|1||ORU^R01|1\r${'NTE|x\r'.repeat(20)}`, { maxSegments: 10 }), /limit of 10/);
});

test('builds an ACK that answers the message: swapped applications, MSA and ERR segments', () => {
  const m = parseMessage(ORU);
  const ack = parseMessage(buildAck(m, 'AE', [{ code: '101', text: 'PID-3 has no INS', location: 'PID-3' }], { application: 'OPENDRIM', facility: 'CHU' }));
  assert.equal(ack.type, 'ACK^R01');
  assert.equal(ack.msh.get(3), 'OPENDRIM');
  assert.equal(ack.msh.get(4), 'CHU');
  assert.equal(ack.msh.get(5), 'RIS');
  assert.equal(ack.msh.get(6), 'CLINIQUE');
  assert.equal(ack.msh.get(18), 'UNICODE UTF-8');
  assert.equal(ack.segment('MSA')!.get(1), 'AE');
  assert.equal(ack.segment('MSA')!.get(2), 'MSG0001');
  const err = ack.segment('ERR')!;
  assert.equal(err.get(2, 1), 'PID');
  assert.equal(err.get(2, 3), '3');
  assert.equal(err.get(3, 1), '101');
  assert.equal(err.get(4), 'E');
  assert.equal(err.get(8), 'PID-3 has no INS');
  const aa = parseMessage(buildAck(m, 'AA'));
  assert.equal(aa.segment('MSA')!.get(1), 'AA');
  assert.equal(aa.segment('ERR'), undefined);
  // Without a readable message there is still a well-formed AR.
  assert.equal(parseMessage(buildAck(undefined, 'AR', [{ code: '102', text: 'bad' }])).segment('MSA')!.get(1), 'AR');
});
