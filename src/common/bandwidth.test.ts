import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bandwidth, throttled } from './bandwidth.js';

test('streams sharing a cap get the capped rate together, not each', async () => {
  const bw = new Bandwidth(2 * 1024 * 1024); // 2 MiB/s, burst 512 KiB
  const chunk = Buffer.alloc(64 * 1024);
  async function* source(n: number) {
    for (let i = 0; i < n; i++) yield chunk;
  }
  const t0 = Date.now();
  let bytes = 0;
  await Promise.all(
    [0, 1].map(async () => {
      for await (const c of throttled(source(24), bw)) bytes += c.length;
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  // 3 MiB through a 2 MiB/s cap with a 0.5 MiB burst: about 1.25 s, never much less.
  assert.equal(bytes, 3 * 1024 * 1024);
  assert.ok(seconds >= 1.1, `took ${seconds} s`);
  assert.ok(seconds < 3, `took ${seconds} s`);
});
