import { test } from 'node:test';
import assert from 'node:assert/strict';
import { remembered } from './remembered.js';

test('computes once per key, remembers null results too, and empties the map at its limit', () => {
  const cache = new Map<number, string | null>();
  let calls = 0;
  const make = (k: number) => (calls++, k % 2 ? null : `v${k}`);
  assert.equal(remembered(cache, 2, 3, make), 'v2');
  assert.equal(remembered(cache, 2, 3, make), 'v2');
  assert.equal(remembered(cache, 1, 3, make), null);
  assert.equal(remembered(cache, 1, 3, make), null);
  assert.equal(calls, 2);
  remembered(cache, 4, 3, make);
  assert.equal(cache.size, 3);
  remembered(cache, 6, 3, make);
  assert.deepEqual([...cache.keys()], [6], 'emptied when full, never larger than the limit');
});
