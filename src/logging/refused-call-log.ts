/**
 * Refused calls (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED) in the log without letting
 * a flood of them flood the log: they are counted, and at the end of each window that saw any, ONE
 * warn line sums the window up: how many, by status, by method and by source (the busiest few of
 * each). A window with no refusal writes nothing. The counters are bounded however many distinct
 * methods or sources a flood uses. The audit log keeps its own aggregate records (refusal-tally.ts);
 * this is the operator's view in the peer's log.
 */

/** Statuses that mean "refused", as opposed to "failed". */
export const REFUSAL_STATUSES: ReadonlySet<string> = new Set([
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
]);

export interface RefusedCall {
  /** gRPC status name. */
  status: string;
  /** "/lockbox.v1.KeyService/GetKey". */
  method: string;
  /** Remote address, without port ("" when unknown). */
  source: string;
}

export interface RefusedCallSummary {
  windowMs: number;
  total: number;
  byStatus: Record<string, number>;
  byMethod: Record<string, number>;
  bySource: Record<string, number>;
}

export interface RefusedCallLogOptions {
  windowMs: number;
  /** Distinct methods or sources counted per window; the rest are counted under "*". Default 64. */
  keysMax?: number;
  /** Entries of byMethod and bySource in a summary (the largest). Default 10. */
  topMax?: number;
}

export class RefusedCallLog {
  private total = 0;
  private byStatus = new Map<string, number>();
  private byMethod = new Map<string, number>();
  private bySource = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private readonly keysMax: number;
  private readonly topMax: number;

  /** `write` gets a window's summary; it must not throw (it runs from a timer). */
  constructor(
    private readonly write: (summary: RefusedCallSummary) => void,
    private readonly options: RefusedCallLogOptions,
  ) {
    this.keysMax = options.keysMax ?? 64;
    this.topMax = options.topMax ?? 10;
    if (!Number.isSafeInteger(options.windowMs) || options.windowMs < 1)
      throw new RangeError("windowMs must be a positive integer");
  }

  /** Counts `call` if its status is a refusal; anything else is ignored. */
  note(call: RefusedCall): void {
    if (!REFUSAL_STATUSES.has(call.status)) return;
    this.total += 1;
    bump(this.byStatus, call.status, this.keysMax);
    bump(this.byMethod, call.method, this.keysMax);
    bump(this.bySource, call.source, this.keysMax);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.options.windowMs);
      this.timer.unref();
    }
  }

  /** Writes the current window now, if it saw a refusal (at shutdown). */
  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.total === 0) return;
    const summary: RefusedCallSummary = {
      windowMs: this.options.windowMs,
      total: this.total,
      byStatus: Object.fromEntries(this.byStatus),
      byMethod: top(this.byMethod, this.topMax),
      bySource: top(this.bySource, this.topMax),
    };
    this.total = 0;
    this.byStatus = new Map();
    this.byMethod = new Map();
    this.bySource = new Map();
    this.write(summary);
  }
}

function bump(counts: Map<string, number>, key: string, keysMax: number): void {
  const k = counts.has(key) || counts.size < keysMax ? key : "*";
  counts.set(k, (counts.get(k) ?? 0) + 1);
}

function top(counts: Map<string, number>, n: number): Record<string, number> {
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).slice(0, n));
}
