import type { Scheduler } from "../../../cluster/raft/driver/scheduler.js";
import { SimScheduler, type SimProcess } from "../sim-scheduler.js";

interface Timer {
  atMs: number;
  seq: number;
  fn: () => void;
  owner: SimProcess;
  cancelled: boolean;
}

/**
 * Drives code that awaits promises on virtual time. `soon` calls go through the raft simulator's
 * SimScheduler (a dead process's calls are dropped); timers live in a heap here, ordered by due time
 * then creation, so a cancelled one (most batch deadlines) costs nothing. After every step the
 * microtask queue drains (one setImmediate: nothing else runs in the simulation, so the order is fixed
 * by the seed), then the clock jumps to the next timer.
 */
export class SimLoop {
  readonly scheduler = new SimScheduler();
  private readonly timers: Timer[] = [];
  private seq = 0;
  steps = 0;

  get nowMs(): number {
    return this.scheduler.nowMs;
  }

  for(owner: SimProcess): Scheduler {
    const inner = this.scheduler.for(owner);
    return {
      soon: (fn) => inner.soon(fn),
      after: (ms, fn) => {
        const t: Timer = { atMs: this.nowMs + Math.max(0, ms), seq: this.seq++, fn, owner, cancelled: false };
        this.push(t);
        return () => {
          t.cancelled = true;
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
      while (this.timers.length > 0 && (this.timers[0]!.cancelled || !this.timers[0]!.owner.alive))
        this.pop();
      const next = this.timers[0];
      if (next === undefined || next.atMs > endMs) {
        this.scheduler.advanceTo(endMs);
        return;
      }
      this.scheduler.advanceTo(Math.max(next.atMs, this.nowMs));
      this.pop();
      if (!next.cancelled && next.owner.alive) next.fn();
    }
  }

  private less(a: Timer, b: Timer): boolean {
    return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
  }

  private push(t: Timer): void {
    const h = this.timers;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i]!, h[parent]!)) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  private pop(): void {
    const h = this.timers;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}

const drain = (): Promise<void> => new Promise<void>((r) => setImmediate(r));
