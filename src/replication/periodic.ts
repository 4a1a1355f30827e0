/**
 * A pass that runs every `intervalMs` on an injected scheduler, never overlapping itself: the next
 * pass is scheduled when the last one ends, so a slow pass delays the next instead of piling up.
 */
import type { Cancel, Scheduler } from "../../cluster/raft/driver/scheduler.js";

export class Periodic {
  private cancel: Cancel | undefined;
  private stopped = true;
  running: Promise<void> | undefined;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly intervalMs: number,
    private readonly pass: () => Promise<void>,
    private readonly onError: (e: unknown) => void = () => {},
  ) {
    if (!Number.isSafeInteger(intervalMs) || intervalMs <= 0)
      throw new RangeError("intervalMs must be positive");
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.cancel = undefined;
  }

  /** Runs one pass now (tests; a pass already running is awaited instead). */
  runOnce(): Promise<void> {
    this.running ??= this.pass()
      .catch(this.onError)
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private arm(): void {
    this.cancel = this.scheduler.after(this.intervalMs, () => {
      void this.runOnce().then(() => {
        if (!this.stopped) this.arm();
      });
    });
  }
}
