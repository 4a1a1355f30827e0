import type { Cancel, Scheduler } from "../../cluster/raft/driver/scheduler.js";

/** One process incarnation: its deferred calls die with it, and wait while it is paused. */
export class SimProcess {
  alive = true;
  paused = false;
  constructor(readonly name: string) {}
}

interface Timer {
  atMs: number;
  seq: number;
  fn: () => void;
  owner: SimProcess;
  cancelled: boolean;
}

/**
 * Virtual time for every driver in a simulation: `soon` calls run when the simulator drains them, timers
 * when the simulator advances the clock past them, each in a fixed order (time, then creation order), so
 * a seed replays exactly. A dead process's calls are dropped; a paused one's wait until it resumes.
 */
export class SimScheduler {
  nowMs = 0;
  private seq = 0;
  private soonQueue: { fn: () => void; owner: SimProcess }[] = [];
  private timers: Timer[] = [];

  /** The Scheduler the driver of `owner` gets. */
  for(owner: SimProcess): Scheduler {
    return {
      soon: (fn) => {
        this.soonQueue.push({ fn, owner });
      },
      after: (ms, fn): Cancel => {
        const t: Timer = { atMs: this.nowMs + ms, seq: this.seq++, fn, owner, cancelled: false };
        // Sorted insert from the back: most timers are the latest.
        let i = this.timers.length;
        while (i > 0 && this.timers[i - 1]!.atMs > t.atMs) i--;
        this.timers.splice(i, 0, t);
        return () => {
          t.cancelled = true;
        };
      },
    };
  }

  /** Runs every runnable `soon` call, including those they schedule; returns how many ran. */
  runSoon(): number {
    let ran = 0;
    for (let guard = 0; guard < 1_000_000; guard++) {
      const i = this.soonQueue.findIndex((s) => !s.owner.paused || !s.owner.alive);
      if (i < 0) return ran;
      const s = this.soonQueue.splice(i, 1)[0]!;
      if (!s.owner.alive) continue;
      ran++;
      s.fn();
    }
    throw new Error("sim scheduler: soon calls do not quiesce");
  }

  /** Advances the clock to `ms`, running due timers of live, running processes in order. */
  advanceTo(ms: number): void {
    this.nowMs = ms;
    const kept: Timer[] = [];
    const due: Timer[] = [];
    for (const t of this.timers) {
      if (t.cancelled || !t.owner.alive) continue;
      if (t.atMs <= ms && !t.owner.paused) due.push(t);
      else kept.push(t);
    }
    this.timers = kept;
    for (const t of due) if (!t.cancelled && t.owner.alive) t.fn();
  }

  pendingTimers(): number {
    return this.timers.length;
  }
}
