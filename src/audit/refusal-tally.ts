/**
 * Refused calls counted, not written one by one (issue 8 item 2): a call
 * refused before it had an accountable identity (no valid certificate, too
 * many calls in flight) adds one to a counter per source, operation, status
 * and reason; once per window every counter becomes one audit record with
 * its count. A flood therefore costs at most keysMax + 1 records per window
 * however fast it comes, and the writes never sit in front of authenticated
 * calls. Counters beyond keysMax in one window share one overflow record.
 */
import type { Clock } from "../time/clock.js";

export interface RefusalInput {
  /** Remote address, or the identity for a refusal of an authenticated caller. */
  source: string;
  operation: string;
  /** gRPC status name, e.g. "UNAUTHENTICATED". */
  status: string;
  reason: string;
}

export interface RefusalCount extends RefusalInput {
  count: number;
  /** Start of the window the count covers. */
  since: Date;
}

export interface RefusalTallyOptions {
  /** Length of a window; a window's records are written at its end. Default 10 s. */
  windowMs?: number;
  /** Distinct counters per window; further refusals go to one overflow counter. Default 256. */
  keysMax?: number;
}

export const OVERFLOW_SOURCE = "*";

export class RefusalTally {
  private counts = new Map<string, RefusalCount>();
  private timer: NodeJS.Timeout | undefined;
  private readonly windowMs: number;
  private readonly keysMax: number;

  /** `write` gets one window's counts; it must not throw (it is called from a timer). */
  constructor(
    private readonly write: (counts: RefusalCount[]) => void,
    private readonly clock: Clock,
    options: RefusalTallyOptions = {},
  ) {
    this.windowMs = options.windowMs ?? 10_000;
    this.keysMax = options.keysMax ?? 256;
    if (!Number.isSafeInteger(this.windowMs) || this.windowMs < 1)
      throw new RangeError("windowMs must be positive");
    if (!Number.isSafeInteger(this.keysMax) || this.keysMax < 1)
      throw new RangeError("keysMax must be positive");
  }

  count(refusal: RefusalInput): void {
    let key = JSON.stringify([refusal.source, refusal.operation, refusal.status, refusal.reason]);
    let entry = this.counts.get(key);
    if (entry === undefined) {
      if (this.counts.size >= this.keysMax) {
        key = "overflow";
        entry = this.counts.get(key);
        entry ??= this.add(key, {
          source: OVERFLOW_SOURCE,
          operation: "*",
          status: refusal.status,
          reason: `more than ${this.keysMax} distinct refusals in one window`,
        });
      } else {
        entry = this.add(key, refusal);
      }
    }
    entry.count += 1;
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.windowMs);
      this.timer.unref();
    }
  }

  /** Writes the current window now (at shutdown). */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.counts.size === 0) return;
    const counts = [...this.counts.values()];
    this.counts = new Map();
    this.write(counts);
  }

  private add(key: string, refusal: RefusalInput): RefusalCount {
    const entry: RefusalCount = { ...refusal, count: 0, since: this.clock.now() };
    this.counts.set(key, entry);
    return entry;
  }
}
