import { statfs } from 'node:fs/promises';
import type { Logger } from '../common/log.js';

/**
 * The free space of the storage file system, read every few seconds: receiving stops being offered (associations
 * refused as a transient local limit, STOW-RS answered 503) while it is below the threshold, so a full disk is
 * announced before a write fails halfway through an instance; /health and /metrics report it.
 */
export class StorageSpace {
  free: number | undefined;
  total: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wasLow = false;

  constructor(
    private readonly dir: string,
    readonly minFreeBytes: number,
    private readonly log: Logger,
    private readonly everyMs = 5000,
  ) {}

  get low(): boolean {
    return this.free !== undefined && this.free < this.minFreeBytes;
  }

  async refresh(): Promise<void> {
    try {
      const s = await statfs(this.dir);
      this.free = Number(s.bavail) * Number(s.bsize);
      this.total = Number(s.blocks) * Number(s.bsize);
    } catch (e) {
      this.log.warn({ err: e, dir: this.dir }, 'free space of the storage could not be read');
      return;
    }
    if (this.low !== this.wasLow) {
      this.wasLow = this.low;
      if (this.low) this.log.error({ freeBytes: this.free, minFreeBytes: this.minFreeBytes }, 'storage almost full: new associations and STOW-RS requests are refused until space is freed');
      else this.log.warn({ freeBytes: this.free }, 'storage has free space again: receiving resumes');
    }
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
