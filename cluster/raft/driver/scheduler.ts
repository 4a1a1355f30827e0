/**
 * The time seam of the driver: every deferred call (the next round of the loop, client deadlines, read
 * retries) goes through a Scheduler, so the simulator can run the production driver on virtual time
 * (TigerBeetle's `time.zig`: time is an argument, never a global).
 */
export interface Scheduler {
  /** Runs `fn` once, soon, after the current call stack (lets IO callbacks that are due land first). */
  soon(fn: () => void): void;
  /** Runs `fn` once after `ms` milliseconds unless cancelled first. */
  after(ms: number, fn: () => void): Cancel;
}

/** Cancels a scheduled call; a no-op once it ran or was cancelled. */
export type Cancel = () => void;

/** Node's timers. A pending deadline holds the process open, as the caller awaits its promise. */
export const nodeScheduler: Scheduler = {
  soon(fn) {
    setImmediate(fn);
  },
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};
