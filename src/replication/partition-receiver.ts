/**
 * Rebalance while serving (DESIGN §4, issue 10 item 6), the receiving side: after a ring change, each
 * partition this peer newly holds is streamed in from its old holders (partition-moves.ts: staying
 * primaries first, then those leaving), bucket range by bucket range, and merged into the local
 * replica record by record (each put synced, as any replica write). Writes keep flowing meanwhile: the
 * coordinator already sends new versions to the new primaries, and merges make the order irrelevant.
 *
 * Flow control: at most `concurrency` partitions at once, each one pull of BUCKETS_PER_PULL buckets in
 * flight, through the link batcher's bounded queues; a partition that no source can serve now is tried
 * again after `retryMs`. Nothing is dropped here: an old holder keeps its copy (the drop after the
 * receivers confirm is not implemented yet), which costs disk but never an acknowledged key.
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
    const concurrency = this.options.concurrency ?? 2;
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
    for (const source of move.sources) {
      if (source === this.options.self) continue;
      let complete = true;
      for (let first = 0; first < buckets && complete; first += BUCKETS_PER_PULL) {
        if (this.stopped || generation !== this.generation) return false;
        const range = Array.from(
          { length: Math.min(BUCKETS_PER_PULL, buckets - first) },
          (_, i) => first + i,
        );
        const r = await this.options.sender.request(source, {
          kind: "pull",
          partition: move.partition,
          buckets: range,
        });
        if (!r.ok || r.kind !== "pull") {
          complete = false;
          break;
        }
        for (const record of r.records) {
          const put = await this.options.replica.put(move.partition, record);
          // A record the replica refuses (damaged, not of this partition) is not counted; anti-entropy
          // compares digests later and fetches what is still missing.
          if (!put.ok) continue;
          this.records += 1;
          this.bytes += record.length;
        }
      }
      if (complete) return true;
    }
    return false;
  }
}
