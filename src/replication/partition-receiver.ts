/**
 * Rebalance while serving (DESIGN §4, issue 10 item 6), the receiving side: after a ring change, each
 * partition this peer newly holds is streamed in from its old holders (partition-moves.ts: staying
 * primaries first, then those leaving), a whole partition per pull, and merged into the local replica
 * (each put synced as any replica write; the puts of one pull share group commits). Writes keep flowing meanwhile: the
 * coordinator already sends new versions to the new primaries, and merges make the order irrelevant.
 *
 * Flow control: at most `concurrency` partitions at once (8), each one pull in flight (the whole
 * partition, or BUCKETS_PER_PULL buckets of one too large for one answer), through the link batcher's
 * bounded queues; a partition that no source can serve now is tried again after `retryMs`. Nothing
 * is dropped here: the old holders drop their copies once every new primary confirmed each record
 * (partition-handover.ts).
 */
import { type PartitionMove } from "../../cluster/ring/index.js";
import type { ItemSender } from "./link-batcher.js";
import type { Replica } from "./replica.js";

export interface ReceiverProgress {
  /** Partitions this peer receives in the current plan, and how many are fully streamed in. */
  partitions: number;
  received: number;
  records: number;
  bytes: number;
  /** Bytes per second since the plan started (0 before any byte). */
  bytesPerSecond: number;
}

const BUCKETS_PER_PULL = 32;

export class PartitionReceiver {
  private plan: PartitionMove[] = [];
  private queue: PartitionMove[] = [];
  private generation = 0;
  private received = 0;
  private records = 0;
  private bytes = 0;
  private startedMs = 0;
  private active = 0;
  private stopped = false;

  constructor(
    private readonly options: {
      self: string;
      replica: Replica;
      sender: ItemSender;
      bucketBits: number;
      nowMs: () => number;
      log: (line: string) => void;
      concurrency?: number;
      retryMs?: number;
    },
  ) {}

  /** Replaces the plan with the moves of a new ring change (the old plan's unfinished work is dropped). */
  receive(moves: readonly PartitionMove[]): void {
    this.generation += 1;
    this.plan = moves.filter((m) => m.receivers.includes(this.options.self));
    this.queue = [...this.plan];
    this.received = 0;
    this.records = 0;
    this.bytes = 0;
    this.startedMs = this.options.nowMs();
    this.pump();
  }

  progress(): ReceiverProgress {
    const seconds = (this.options.nowMs() - this.startedMs) / 1000;
    return {
      partitions: this.plan.length,
      received: this.received,
      records: this.records,
      bytes: this.bytes,
      bytesPerSecond: seconds > 0 && this.bytes > 0 ? this.bytes / seconds : 0,
    };
  }

  stop(): void {
    this.stopped = true;
  }

  private pump(): void {
    const concurrency = this.options.concurrency ?? 8;
    while (!this.stopped && this.active < concurrency && this.queue.length > 0) {
      const move = this.queue.shift()!;
      const generation = this.generation;
      this.active += 1;
      void this.stream(move, generation)
        .then((done) => {
          if (generation !== this.generation) return;
          if (done) this.received += 1;
          else {
            const t = setTimeout(() => {
              if (generation !== this.generation) return;
              this.queue.push(move);
              this.pump();
            }, this.options.retryMs ?? 2_000);
            t.unref();
          }
        })
        .catch((e: unknown) =>
          this.options.log(`replication: streaming in partition ${move.partition} failed: ${String(e)}`),
        )
        .finally(() => {
          this.active -= 1;
          this.pump();
        });
    }
  }

  /** Streams one partition in from the first source that serves every bucket range; false if none did. */
  private async stream(move: PartitionMove, generation: number): Promise<boolean> {
    const buckets = 1 << this.options.bucketBits;
    const all = Array.from({ length: buckets }, (_, i) => i);
    for (const source of move.sources) {
      if (source === this.options.self) continue;
      if (this.stopped || generation !== this.generation) return false;
      // Most partitions fit one answer; one too large for it is pulled bucket range by bucket range.
      const whole = await this.pull(source, move.partition, all);
      if (whole === "ok") return true;
      if (whole !== "too-large") continue;
      let complete = true;
      for (let first = 0; first < buckets && complete; first += BUCKETS_PER_PULL) {
        if (this.stopped || generation !== this.generation) return false;
        const range = all.slice(first, first + BUCKETS_PER_PULL);
        complete = (await this.pull(source, move.partition, range)) === "ok";
      }
      if (complete) return true;
    }
    return false;
  }

  /** Pulls `buckets` of a partition from `source` and merges each record into the local replica. */
  private async pull(
    source: string,
    partition: number,
    buckets: number[],
  ): Promise<"ok" | "too-large" | "failed"> {
    const r = await this.options.sender.request(source, { kind: "pull", partition, buckets });
    if (!r.ok) return r.code === "RESOURCE_EXHAUSTED" ? "too-large" : "failed";
    if (r.kind !== "pull") return "failed";
    // Different keys: the puts run at once and share group commits (a pull holds at most PULL_RECORDS_MAX).
    const puts = await Promise.all(r.records.map((record) => this.options.replica.put(partition, record)));
    puts.forEach((put, i) => {
      // A record the replica refuses (damaged, not of this partition) is not counted; anti-entropy
      // compares digests later and fetches what is still missing.
      if (!put.ok) return;
      this.records += 1;
      this.bytes += r.records[i]!.length;
    });
    return "ok";
  }
}
