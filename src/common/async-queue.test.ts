import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncQueue } from './async-queue.js';

test('items pushed before and while iterating come out in order, then the end', async () => {
  const q = new AsyncQueue<number>();
  q.push(1);
  setTimeout(() => {
    q.push(2);
    q.push(3);
    q.close();
    q.push(4);
  }, 10);
  const seen: number[] = [];
  for await (const n of q) seen.push(n);
  assert.deepEqual(seen, [1, 2, 3]);
});

test('an error closes the queue after the items already queued', async () => {
  const q = new AsyncQueue<string>();
  q.push('a');
  q.close(new Error('association aborted'));
  const seen: string[] = [];
  await assert.rejects(async () => {
    for await (const s of q) seen.push(s);
  }, /association aborted/);
  assert.deepEqual(seen, ['a']);
});
