/**
 * A bandwidth cap shared by every transfer from one remote site (a token bucket): bytes are let through at the
 * configured rate, with a burst of a quarter of a second, whatever the number of streams drawing on it.
 */
export class Bandwidth {
  private tokens: number;
  private last = Date.now();
  private readonly burst: number;
  private queue: Promise<void> = Promise.resolve();

  constructor(readonly bytesPerSecond: number) {
    this.burst = Math.max(64 * 1024, bytesPerSecond / 4);
    this.tokens = this.burst;
  }

  static megabits(mbps: number): Bandwidth {
    return new Bandwidth((mbps * 1e6) / 8);
  }

  /** Resolves once `bytes` may go; callers are served in order. */
  take(bytes: number): Promise<void> {
    const turn = this.queue.then(async () => {
      for (;;) {
        const now = Date.now();
        this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
        this.last = now;
        if (this.tokens >= bytes || this.tokens >= this.burst) {
          this.tokens -= bytes;
          return;
        }
        await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(((Math.min(bytes, this.burst) - this.tokens) / this.bytesPerSecond) * 1000))));
      }
    });
    this.queue = turn;
    return turn;
  }
}

/** A byte stream held to a bandwidth. */
export async function* throttled(source: AsyncIterable<Buffer>, bandwidth: Bandwidth | undefined): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    if (bandwidth) await bandwidth.take(chunk.length);
    yield chunk;
  }
}
