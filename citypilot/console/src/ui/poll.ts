// Reading something from the API again and again: now, then every few milliseconds,
// and at once when asked (the next read is timed from the last one).

export class Poller {
  private timer: number | undefined;

  constructor(
    private everyMs: number,
    private read: () => Promise<void>,
  ) {}

  start(): void {
    void this.now();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** Read now; the next read follows ``everyMs`` after this one. */
  async now(): Promise<void> {
    clearTimeout(this.timer);
    try {
      await this.read();
    } finally {
      this.timer = window.setTimeout(() => void this.now(), this.everyMs);
    }
  }
}
