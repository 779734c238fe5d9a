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

test('background transfers finish one after another, oldest first, instead of all together', async () => {
  const bw = new Bandwidth(4 * 1024 * 1024); // 4 MiB/s, burst 1 MiB
  const chunk = Buffer.alloc(64 * 1024);
  async function* source(n: number) {
    for (let i = 0; i < n; i++) yield chunk;
  }
  const finished: Record<string, number> = {};
  const t0 = Date.now();
  const run = async (name: string) => {
    const flow = bw.flow({ background: true });
    for await (const _ of throttled(source(32), flow)); // 2 MiB each
    finished[name] = Date.now() - t0;
  };
  await Promise.all([run('first'), run('second'), run('third')]);
  // 6 MiB at 4 MiB/s after a 1 MiB burst: ~1.25 s in all. Shared evenly, all three would end together at the
  // end; oldest first, the first is done after about a third of that.
  assert.ok(finished.first! < finished.second! && finished.second! < finished.third!, JSON.stringify(finished));
  assert.ok(finished.first! < 0.6 * finished.third!, JSON.stringify(finished));
});

test('an interactive transfer overtakes background ones, and the cap stays work-conserving', async () => {
  const bw = new Bandwidth(2 * 1024 * 1024); // burst 512 KiB
  const chunk = Buffer.alloc(64 * 1024);
  async function* source(n: number, pauseMs = 0) {
    for (let i = 0; i < n; i++) {
      if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      yield chunk;
    }
  }
  const t0 = Date.now();
  const ended: Record<string, number> = {};
  const background = (async () => {
    for await (const _ of throttled(source(48), bw.flow({ background: true }))); // 3 MiB
    ended.background = Date.now() - t0;
  })();
  await new Promise((r) => setTimeout(r, 300));
  // A viewer opens an image while the import is under way: 512 KiB go ahead of the import's remaining bytes.
  for await (const _ of throttled(source(8), bw.flow()));
  ended.interactive = Date.now() - t0;
  await background;
  assert.ok(ended.interactive! < 1000, `interactive took ${ended.interactive} ms behind the import`);
  assert.ok(ended.background! > ended.interactive!, JSON.stringify(ended));
  // Work-conserving: a first flow that pauses (its source has nothing to give for 2 s) does not hold back a second.
  const slow = bw.flow({ background: true });
  const fast = bw.flow({ background: true });
  const t1 = Date.now();
  let fastEnd = 0;
  await Promise.all([
    (async () => {
      for await (const _ of throttled(source(2, 1000), slow));
    })(),
    (async () => {
      for await (const _ of throttled(source(16), fast));
      fastEnd = Date.now() - t1;
    })(),
  ]);
  assert.ok(fastEnd < 1000, `the second flow waited ${fastEnd} ms for a first one that was not using the link`);
});
