import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validIns } from './ins.js';

test('INS control keys are checked, Corsican departments included', () => {
  assert.equal(validIns('280067512345690'), true);
  assert.equal(validIns('279035121518989'), true);
  assert.equal(validIns('280067512345691'), false, 'wrong key');
  assert.equal(validIns('28006751234569'), false, 'too short');
  assert.equal(validIns('2800675123456AB'), false);
  // 1 85 05 2A 123 456 + key computed with 2A counted as 19.
  const body = '185052A123456';
  const key = 97 - Number(BigInt(body.replace('2A', '19')) % 97n);
  assert.equal(validIns(`${body}${String(key).padStart(2, '0')}`), true);
});
