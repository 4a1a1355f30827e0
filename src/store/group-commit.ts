/**
 * Group commit: writers enqueue their operations; one flusher writes everything queued so far as
 * ONE synced batch, then resolves every writer in it. While a batch is being synced, new writers
 * queue up for the next one, so N concurrent writers cost far fewer than N fsyncs. A writer's
 * operations always land in the same batch (atomic per writer). The queue is bounded: beyond
 * `queuedOpsMax` waiting operations, new writes fail fast with RESOURCE_EXHAUSTED.
 */
import { LockboxError } from "../errors.js";

export interface GroupCommitMetrics {
  /** Synced batches written. */
  batches: number;
  /** Writer calls resolved or rejected by a batch. */
  writes: number;
  /** Operations written. */
  ops: number;
}

interface Pending<Op> {
  ops: readonly Op[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

export interface GroupCommitOptions {
  /** Most operations allowed to wait for a batch; more are refused. */
  queuedOpsMax?: number;
  /** Most operations in one batch; a longer queue is split into several batches. */
  batchOpsMax?: number;
  /** Told of every batch once it is written (or failed): its size and how long its synced write took. */
  onBatch?: (batch: { writes: number; ops: number; seconds: number }) => void;
}

export class GroupCommitWriter<Op> {
  private queue: Pending<Op>[] = [];
  private queuedOps = 0;
  private flushing: Promise<void> | undefined;
  private closed = false;
  private readonly queuedOpsMax: number;
  private readonly batchOpsMax: number;
  private readonly onBatch: GroupCommitOptions["onBatch"];
  readonly metrics: GroupCommitMetrics = { batches: 0, writes: 0, ops: 0 };

  /** `flush` must write `ops` as one atomic, synced batch. */
  constructor(
    private readonly flush: (ops: Op[]) => Promise<void>,
    options: GroupCommitOptions = {},
  ) {
    this.queuedOpsMax = options.queuedOpsMax ?? 100_000;
    this.batchOpsMax = options.batchOpsMax ?? 10_000;
    this.onBatch = options.onBatch;
  }

  /** Resolves once `ops` are in a synced batch. */
  write(ops: readonly Op[]): Promise<void> {
    if (this.closed) return Promise.reject(new LockboxError("UNAVAILABLE", "store is closing"));
    if (ops.length === 0) return Promise.resolve();
    if (this.queuedOps + ops.length > this.queuedOpsMax) {
      return Promise.reject(
        new LockboxError("RESOURCE_EXHAUSTED", `write queue full (${this.queuedOps} operations waiting)`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ops, resolve, reject });
      this.queuedOps += ops.length;
      this.flushing ??= this.drain();
    });
  }

  /** Refuses new writes and waits for queued ones to be written. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flushing;
  }

  private async drain(): Promise<void> {
    // Let writers that arrive in the same turn of the event loop join the first batch.
    await new Promise<void>((r) => setImmediate(r));
    try {
      while (this.queue.length > 0) {
        const group = this.takeGroup();
        const ops = group.flatMap((p) => p.ops);
        const started = process.hrtime.bigint();
        try {
          await this.flush(ops);
          for (const p of group) p.resolve();
        } catch (e) {
          for (const p of group) p.reject(e);
        }
        this.metrics.batches += 1;
        this.metrics.writes += group.length;
        this.metrics.ops += ops.length;
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        try {
          this.onBatch?.({ writes: group.length, ops: ops.length, seconds });
        } catch {
          // A metrics hook must not stop the writer.
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /** Takes whole writers from the queue until the batch would exceed batchOpsMax (at least one). */
  private takeGroup(): Pending<Op>[] {
    let count = 0;
    let n = 0;
    while (n < this.queue.length && (n === 0 || count + this.queue[n]!.ops.length <= this.batchOpsMax)) {
      count += this.queue[n]!.ops.length;
      n += 1;
    }
    this.queuedOps -= count;
    return this.queue.splice(0, n);
  }
}
