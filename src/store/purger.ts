/**
 * Purging overwritten versions in batches. LevelDB keeps a value that a later write replaced (a
 * destroyed key's wrapped material) in its write-ahead log and tables until a compaction merges
 * it with the newer version. Compacting per call cost two range compactions and a fresh WAL per
 * DeleteKey; instead, writers name what must leave the disk (a durable marker is written in the
 * same batch, see PeerStore.write), and this purger compacts everything named within `delayMs`,
 * at most `keysPerRunMax` keys per run, one run at a time. Markers are cleared only after their
 * run, and reloaded at open, so a crash before the purge does not forget it.
 *
 * Best effort against snapshots: an iterator open during the compaction keeps the old version
 * alive until a later compaction of that range.
 */
export interface PurgeStatus {
  /** Keys waiting for a purge run. */
  pending: number;
  /** Age of the oldest waiting key (0 when none). */
  oldestPendingMs: number;
  /** Runs finished, and keys they purged. */
  runs: number;
  purgedKeys: number;
  /** Duration of the last run (0 before the first). */
  lastRunMs: number;
  /** When the last run (successful or not) ended, as Date.now(); undefined before the first. */
  lastRunEndedAt: number | undefined;
  /** Runs that failed (their keys stay pending and are retried). */
  failedRuns: number;
  delayMs: number;
}

export interface PurgerOptions {
  /** Longest a named key waits before a run starts. */
  purgeDelayMs?: number;
  /** Most keys one run compacts; more start another run right after. */
  purgeKeysPerRunMax?: number;
}

export interface PurgeBackend {
  /** Makes LevelDB drop the overwritten versions of these marked keys. */
  purge(markers: readonly string[]): Promise<void>;
  /** Removes the durable markers of purged keys. */
  clearMarkers(keys: readonly string[]): Promise<void>;
}

export class Purger {
  private readonly pending = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<boolean> | undefined;
  private closed = false;
  private readonly delayMs: number;
  private readonly keysPerRunMax: number;
  private runs = 0;
  private purgedKeys = 0;
  private failedRuns = 0;
  private lastRunMs = 0;
  private lastRunEndedAt: number | undefined;
  private lastRunFailed = false;

  constructor(
    private readonly backend: PurgeBackend,
    options: PurgerOptions = {},
  ) {
    this.delayMs = options.purgeDelayMs ?? 1000;
    this.keysPerRunMax = options.purgeKeysPerRunMax ?? 256;
    if (!Number.isInteger(this.delayMs) || this.delayMs < 0)
      throw new RangeError("purgeDelayMs must be >= 0");
    if (!Number.isInteger(this.keysPerRunMax) || this.keysPerRunMax < 1) {
      throw new RangeError("purgeKeysPerRunMax must be >= 1");
    }
  }

  /** Schedules `keys` (sublevel-prefixed) for the next run, at most delayMs from now. */
  add(keys: readonly string[]): void {
    const now = Date.now();
    for (const k of keys) if (!this.pending.has(k)) this.pending.set(k, now);
    this.schedule();
  }

  /** Runs now until nothing is pending or a run fails (then the rest stays pending). */
  async flush(): Promise<void> {
    for (;;) {
      clearTimeout(this.timer);
      this.timer = undefined;
      if (this.running !== undefined) {
        await this.running;
        continue;
      }
      if (this.pending.size === 0) return;
      this.running = this.run();
      if (!(await this.running)) return;
    }
  }

  /** Stops scheduling, then purges what is pending (a failure leaves its markers for the next open). */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  status(): PurgeStatus {
    let oldest = Infinity;
    for (const since of this.pending.values()) oldest = Math.min(oldest, since);
    return {
      pending: this.pending.size,
      oldestPendingMs: this.pending.size === 0 ? 0 : Math.max(0, Date.now() - oldest),
      runs: this.runs,
      purgedKeys: this.purgedKeys,
      lastRunMs: this.lastRunMs,
      lastRunEndedAt: this.lastRunEndedAt,
      failedRuns: this.failedRuns,
      delayMs: this.delayMs,
    };
  }

  private schedule(): void {
    if (this.closed || this.timer !== undefined || this.running !== undefined || this.pending.size === 0)
      return;
    let oldest = Infinity;
    for (const since of this.pending.values()) oldest = Math.min(oldest, since);
    // After a failed run, wait a whole delay before retrying rather than spin.
    const waitMs = this.lastRunFailed ? this.delayMs : Math.max(0, oldest + this.delayMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.running ??= this.run();
    }, waitMs);
    this.timer.unref();
  }

  /** One run over the oldest pending keys; true when it purged them. */
  private async run(): Promise<boolean> {
    const batch = [...this.pending.keys()].slice(0, this.keysPerRunMax);
    const started = performance.now();
    try {
      await this.backend.purge(batch);
      await this.backend.clearMarkers(batch);
      for (const k of batch) this.pending.delete(k);
      this.runs += 1;
      this.purgedKeys += batch.length;
      this.lastRunFailed = false;
    } catch {
      // The store is closing or LevelDB failed: keys stay pending (and their markers on disk).
      this.failedRuns += 1;
      this.lastRunFailed = true;
    } finally {
      this.lastRunMs = performance.now() - started;
      this.lastRunEndedAt = Date.now();
      this.running = undefined;
    }
    this.schedule();
    return !this.lastRunFailed;
  }
}
