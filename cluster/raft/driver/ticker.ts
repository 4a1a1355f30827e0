/**
 * The clock seam of the driver: it calls `onTick` every tick. The core counts ticks (election and
 * heartbeat timeouts are in ticks), so wall time enters raft only here.
 */
export interface Ticker {
  start(onTick: () => void): void;
  stop(): void;
}

/** A Node timer ticking every `tickMs`. Unref'd, so a stopped driver never holds the process open. */
export class IntervalTicker implements Ticker {
  #timer: NodeJS.Timeout | undefined;

  constructor(readonly tickMs: number) {
    if (!Number.isSafeInteger(tickMs) || tickMs < 1)
      throw new RangeError(`tickMs must be >= 1, got ${tickMs}`);
  }

  start(onTick: () => void): void {
    if (this.#timer !== undefined) throw new Error("ticker already started");
    this.#timer = setInterval(onTick, this.tickMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
