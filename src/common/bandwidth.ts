/**
 * A bandwidth cap shared by every transfer from one remote site (a token bucket): bytes are let through at the
 * configured rate, with a burst of a quarter of a second, whatever the number of streams drawing on it.
 *
 * Who goes first when bytes are scarce: interactive transfers (a viewer waiting) before background ones
 * (imports, prefetch), and within each class the transfer that started first. Sharing the cap evenly between
 * equal background transfers makes them all finish together, so every one then stores into the PACS at the same
 * moment while the link idles (a convoy); finishing the oldest first keeps the link busy while earlier ones are
 * stored, and makes each prior ready as early as it can be. It stays work-conserving: bytes the first transfer
 * has not asked for yet go to the next one.
 */
export class Bandwidth {
  private tokens: number;
  private last = Date.now();
  private readonly burst: number;
  private readonly waiting: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flows = 0;
  private arrivals = 0;

  constructor(readonly bytesPerSecond: number) {
    this.burst = Math.max(64 * 1024, bytesPerSecond / 4);
    this.tokens = this.burst;
  }

  static megabits(mbps: number): Bandwidth {
    return new Bandwidth((mbps * 1e6) / 8);
  }

  /** One transfer drawing on the cap; its requests rank by class, then by when the transfer started. */
  flow(opts: { background?: boolean } = {}): BandwidthFlow {
    const rank = [opts.background ? 1 : 0, ++this.flows] as const;
    return { take: (bytes: number) => this.request(bytes, rank) };
  }

  /** Resolves once `bytes` may go; requests made this way are served in the order they are made. */
  take(bytes: number): Promise<void> {
    return this.request(bytes, [0, 0]);
  }

  private request(bytes: number, rank: readonly [number, number]): Promise<void> {
    this.refill();
    if (!this.waiting.length && this.fits(bytes)) {
      this.tokens -= bytes;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const w: Waiter = { bytes, cls: rank[0], flow: rank[1], arrival: ++this.arrivals, resolve };
      // Sorted insertion: few transfers wait at once, so a linear scan is cheaper than a heap.
      let i = this.waiting.length;
      while (i > 0 && before(w, this.waiting[i - 1]!)) i--;
      this.waiting.splice(i, 0, w);
      this.pump();
    });
  }

  private fits(bytes: number): boolean {
    return this.tokens >= bytes || this.tokens >= this.burst;
  }

  private refill(): void {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
    this.last = now;
  }

  private pump(): void {
    if (this.timer) return;
    this.refill();
    while (this.waiting.length && this.fits(this.waiting[0]!.bytes)) {
      const w = this.waiting.shift()!;
      this.tokens -= w.bytes;
      w.resolve();
    }
    if (!this.waiting.length) return;
    const need = Math.min(this.waiting[0]!.bytes, this.burst) - this.tokens;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.max(1, Math.ceil((need / this.bytesPerSecond) * 1000)));
  }
}

export interface BandwidthFlow {
  take(bytes: number): Promise<void>;
}

interface Waiter {
  bytes: number;
  cls: number;
  flow: number;
  arrival: number;
  resolve: () => void;
}

function before(a: Waiter, b: Waiter): boolean {
  if (a.cls !== b.cls) return a.cls < b.cls;
  if (a.flow !== b.flow) return a.flow < b.flow;
  return a.arrival < b.arrival;
}

/** A byte stream held to a bandwidth (a shared cap, or one transfer's flow on it). */
export async function* throttled(source: AsyncIterable<Buffer>, bandwidth: Bandwidth | BandwidthFlow | undefined): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    if (bandwidth) await bandwidth.take(chunk.length);
    yield chunk;
  }
}
