import { AsyncQueue } from '../common/async-queue.js';
import type { Logger } from '../common/log.js';
import type { Professional } from '../auth/professional-token.js';
import type { StoredInstance, StudyIndex } from '../store/study-index.js';
import type { ManifestSeries } from './manifest-reader.js';
import type { SourceBoxRetriever } from './source-box.js';

/** On whose behalf a series is brought: the professional, the patient the token names, and whether anyone waits. */
export interface Requester {
  professional: Professional;
  patient?: string;
  /** Nobody waits on screen (an import, a prefetch): the transfer yields the bandwidth cap to viewers. */
  background?: boolean;
}

export class RemoteSeriesError extends Error {
  override name = 'RemoteSeriesError';
}

interface Transfer {
  done: Promise<void>;
  /** Instances stored so far by this transfer, for requests that join it. */
  arrived: StoredInstance[];
  listeners: Set<(i: StoredInstance | undefined, error?: Error) => void>;
  /** Set once the transfer is over, for requests that join after the end. */
  ended?: { error?: Error };
}

/**
 * The consumer's copy of exams held by other DRIMboxes. A series is fetched from its source box once (one
 * series-level WADO-RS request, streamed into the local store); every request from the viewer is answered from
 * what is already here and then from each instance as it lands, so the first image shows while the series is
 * still coming, and a second opening costs nothing.
 */
export class RemoteExamCache {
  private readonly transfers = new Map<string, Transfer>();
  /**
   * The order in which each series' instances became available here, kept a while after its transfer so that
   * a viewer asking "the k-th instance" sees one consistent order from the first request to the last.
   */
  private readonly orders = new Map<string, { list: StoredInstance[]; expires: number }>();

  constructor(private readonly deps: { index: StudyIndex; retriever: SourceBoxRetriever; log: Logger }) {}

  /** Instances of a series (or one instance of it), local first, then as the source box delivers them. */
  async *instances(target: { studyUid: string; seriesUid: string; sopUid?: string }, series: ManifestSeries, who: Requester): AsyncGenerator<StoredInstance> {
    const { index } = this.deps;
    const local = await index.listInstances(target);
    const sent = new Set<string>();
    for (const i of local) {
      sent.add(i.sopUid);
      yield i;
    }
    if (target.sopUid ? local.length > 0 : (await index.listInstances({ studyUid: target.studyUid, seriesUid: target.seriesUid })).length >= series.instances.length) return;
    const wanted = (i: StoredInstance) => !sent.has(i.sopUid) && (!target.sopUid || i.sopUid === target.sopUid);
    const queue = new AsyncQueue<StoredInstance>();
    const transfer = this.transferOf(target.studyUid, series, who);
    const listener = (i: StoredInstance | undefined, error?: Error) => {
      if (i && wanted(i)) queue.push(i);
      if (!i) queue.close(error);
    };
    for (const i of transfer.arrived) if (wanted(i)) queue.push(i);
    if (transfer.ended) queue.close(transfer.ended.error);
    else transfer.listeners.add(listener);
    try {
      for await (const i of queue) {
        if (!wanted(i)) continue;
        sent.add(i.sopUid);
        yield i;
        if (target.sopUid) return;
      }
    } finally {
      transfer.listeners.delete(listener);
    }
  }

  /**
   * The k-th instance of a series in the order instances become available here (those stored first, then as
   * they arrive), waiting for it if need be; undefined past the end. A viewer asking for 0, 1, 2… gets the first
   * image as soon as any instance has arrived, whatever order the source and its PACS send them in.
   */
  async nth(target: { studyUid: string; seriesUid: string }, k: number, series: ManifestSeries, who: Requester): Promise<StoredInstance | undefined> {
    const now = Date.now();
    for (const [key, o] of this.orders) if (o.expires < now) this.orders.delete(key);
    let order = this.orders.get(series.seriesUid);
    if (!order) {
      const local = await this.deps.index.listInstances(target);
      order = { list: [...local], expires: now + 15 * 60_000 };
      this.orders.set(series.seriesUid, order);
      if (local.length < series.instances.length) {
        const seen = new Set(local.map((i) => i.sopUid));
        const transfer = this.transferOf(target.studyUid, series, who);
        const add = (i: StoredInstance | undefined) => {
          if (i && !seen.has(i.sopUid)) {
            seen.add(i.sopUid);
            order!.list.push(i);
          }
        };
        transfer.arrived.forEach(add);
        transfer.listeners.add(add);
        void transfer.done.finally(() => transfer.listeners.delete(add));
      }
    }
    order.expires = now + 15 * 60_000;
    for (;;) {
      if (k < order.list.length) return order.list[k];
      const transfer = this.transfers.get(series.seriesUid);
      if (transfer?.ended?.error) throw transfer.ended.error;
      if (!transfer || transfer.ended) return order.list[k];
      await new Promise<void>((resolve) => {
        const wake = () => {
          transfer.listeners.delete(wake);
          resolve();
        };
        transfer.listeners.add(wake);
      });
    }
  }

  /** The transfer bringing this series, started if none runs. */
  private transferOf(studyUid: string, series: ManifestSeries, who: Requester): Transfer {
    const running = this.transfers.get(series.seriesUid);
    if (running) return running;
    if (!series.retrieveUrl) throw new RemoteSeriesError(`the manifest gives no Retrieve URL for series ${series.seriesUid}`);
    const t: Transfer = { done: Promise.resolve(), arrived: [], listeners: new Set() };
    const { index, retriever, log } = this.deps;
    t.done = retriever
      .importExam({ retrieveUrl: series.retrieveUrl, patient: who.patient }, who.professional, async (r) => {
        const [i] = await index.listInstances({ sopUid: r.sopUid });
        if (!i || i.studyUid !== studyUid) return;
        t.arrived.push(i);
        for (const l of t.listeners) l(i);
      }, { background: who.background })
      .then(
        () => {
          t.ended = {};
          for (const l of t.listeners) l(undefined);
        },
        (e: Error) => {
          log.warn({ seriesUid: series.seriesUid, err: e.message }, 'series could not be fetched from the source box');
          t.ended = { error: new RemoteSeriesError(e.message) };
          for (const l of t.listeners) l(undefined, t.ended.error);
        },
      )
      .finally(() => this.transfers.delete(series.seriesUid));
    this.transfers.set(series.seriesUid, t);
    return t;
  }
}
