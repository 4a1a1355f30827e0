import type { Scheduler } from "../../../cluster/raft/driver/scheduler.js";
import { SimScheduler, type SimProcess } from "../sim-scheduler.js";

/**
 * Drives the raft simulator's SimScheduler for code that awaits promises: after every batch of due
 * callbacks it lets the microtask queue drain (one setImmediate: nothing else runs in the simulation,
 * so the order is fixed by the seed), then jumps the virtual clock to the next timer.
 */
export class SimLoop {
  readonly scheduler = new SimScheduler();
  /** Min-heap of timers set through `for` (a cancelled one is skipped without a step). */
  private due: { atMs: number; cancelled: boolean }[] = [];
  steps = 0;

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  for(owner: SimProcess): Scheduler {
    const inner = this.scheduler.for(owner);
    return {
      soon: (fn) => inner.soon(fn),
      after: (ms, fn) => {
        const entry = { atMs: this.scheduler.nowMs + Math.max(0, ms), cancelled: false };
        this.push(entry);
        const cancel = inner.after(Math.max(0, ms), fn);
        return () => {
          entry.cancelled = true;
          cancel();
        };
      },
    };
  }

  /** Runs everything due up to `endMs`, then sets the clock to `endMs`. */
  async runUntil(endMs: number, stepsMax = 5_000_000): Promise<void> {
    for (;;) {
      if (++this.steps > stepsMax) throw new Error(`sim loop: more than ${stepsMax} steps`);
      // Let every promise settle, and every `soon` call they schedule run, before time moves.
      do await drain();
      while (this.scheduler.runSoon() > 0);
      let next = this.peek();
      while (next !== undefined && next.cancelled) {
        this.pop();
        next = this.peek();
      }
      if (next === undefined || next.atMs > endMs) {
        this.scheduler.advanceTo(endMs);
        if (this.scheduler.runSoon() > 0) continue;
        await drain();
        if (this.scheduler.runSoon() > 0) continue;
        return;
      }
      const at = next.atMs;
      while (this.peek() !== undefined && this.peek()!.atMs <= at) this.pop();
      this.scheduler.advanceTo(Math.max(at, this.scheduler.nowMs));
    }
  }

  private push(e: { atMs: number; cancelled: boolean }): void {
    const h = this.due;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.atMs <= h[i]!.atMs) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  private peek(): { atMs: number; cancelled: boolean } | undefined {
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
      if (l < h.length && h[l]!.atMs < h[m]!.atMs) m = l;
      if (r < h.length && h[r]!.atMs < h[m]!.atMs) m = r;
      if (m === i) break;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}

const drain = (): Promise<void> => new Promise<void>((r) => setImmediate(r));
