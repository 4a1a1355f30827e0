import type { Scheduler } from "../../../cluster/raft/driver/scheduler.js";
import { SimScheduler, type SimProcess } from "../sim-scheduler.js";

/**
 * Drives the raft simulator's SimScheduler for code that awaits promises: after every batch of due
 * callbacks it lets the microtask queue drain (one setImmediate: nothing else runs in the simulation,
 * so the order is fixed by the seed), then jumps the virtual clock to the next timer.
 */
export class SimLoop {
  readonly scheduler = new SimScheduler();
  /** Due times of timers ever set (a cancelled one costs one empty step). */
  private due: number[] = [];
  steps = 0;

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  for(owner: SimProcess): Scheduler {
    const inner = this.scheduler.for(owner);
    return {
      soon: (fn) => inner.soon(fn),
      after: (ms, fn) => {
        this.push(this.scheduler.nowMs + Math.max(0, ms));
        return inner.after(Math.max(0, ms), fn);
      },
    };
  }

  /** Runs everything due up to `endMs`, then sets the clock to `endMs`. */
  async runUntil(endMs: number, stepsMax = 5_000_000): Promise<void> {
    for (;;) {
      if (++this.steps > stepsMax) throw new Error(`sim loop: more than ${stepsMax} steps`);
      let ran = this.scheduler.runSoon();
      await drain();
      while (ran > 0) {
        ran = this.scheduler.runSoon();
        await drain();
      }
      const next = this.peek();
      if (next === undefined || next > endMs) {
        this.scheduler.advanceTo(endMs);
        await drain();
        if (this.scheduler.runSoon() > 0) continue;
        return;
      }
      this.pop();
      if (next > this.scheduler.nowMs) this.scheduler.advanceTo(next);
      else this.scheduler.advanceTo(this.scheduler.nowMs);
      await drain();
    }
  }

  private push(t: number): void {
    const h = this.due;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]! <= h[i]!) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  private peek(): number | undefined {
    return this.due[0];
  }

  private pop(): void {
    const h = this.due;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l]! < h[m]!) m = l;
      if (r < h.length && h[r]! < h[m]!) m = r;
      if (m === i) break;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}

const drain = (): Promise<void> => new Promise<void>((r) => setImmediate(r));
