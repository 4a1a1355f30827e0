/**
 * Rebalance while serving (DESIGN §4, issue 10 item 6), the giving side: after a ring change (once it
 * has settled for `settleMs`, so a peer a little behind on the ring does not give away what a newer
 * ring gives it), every partition this peer holds records of but is no primary of (a "leaver" in
 * partition-moves.ts, or a peer that missed ring changes while down) has each of its records pushed
 * to every primary, and deletes a record only once every one of them answered that it synced it,
 * and only if the record is still the version pushed (Replica.finishHandoff): the old owner drops a
 * partition only after the new owners confirm it. A partition whose push failed anywhere keeps its
 * records and is tried again after `retryMs`; a partition the ring gives back to this peer meanwhile is
 * kept (the next ring change replaces the plan).
 *
 * Flow control: one partition at a time, its records pushed through the link batcher's bounded queues
 * in slices of `recordsPerSlice`, each slice awaited before the next.
 */
import { decodeReplicatedKey } from "../../cluster/replication/index.js";
import type { ItemSender } from "./link-batcher.js";
import type { PlacementView } from "./placement-view.js";
import type { Replica } from "./replica.js";

export interface HandoverProgress {
  /** Partitions this peer gives away in the current plan, and how many it has dropped. */
  partitions: number;
  dropped: number;
  records: number;
  bytes: number;
  /** True from a ring change until every partition of the plan is handed over. */
  busy: boolean;
}

export class PartitionHandover {
  private queue: number[] = [];
  private planned = 0;
  private dropped = 0;
  private records = 0;
  private bytes = 0;
  private generation = 0;
  private running = false;
  private busy = false;
  private stopped = false;

  constructor(
    private readonly options: {
      self: string;
      replica: Replica;
      sender: ItemSender;
      placement: PlacementView;
      log: (line: string) => void;
      /** Partitions this peer holds records of (ReplicaStore.partitions). */
      heldPartitions: () => Promise<number[]>;
      settleMs?: number;
      recordsPerSlice?: number;
      retryMs?: number;
    },
  ) {}

  /** After a ring change: once it settled, plans the partitions this peer holds but no longer owns. */
  ringChanged(): void {
    this.generation += 1;
    const generation = this.generation;
    this.queue = [];
    this.busy = true;
    const t = setTimeout(() => {
      if (generation !== this.generation || this.stopped) return;
      this.planFromHeld(generation).catch((e: unknown) => {
        // Tried again at the next ring change; nothing is dropped without a plan.
        this.busy = false;
        this.options.log(`replication: planning the handover failed: ${String(e)}`);
      });
    }, this.options.settleMs ?? 5_000);
    t.unref();
  }

  private async planFromHeld(generation: number): Promise<void> {
    const { placement, self } = this.options;
    const held = await this.options.heldPartitions();
    if (generation !== this.generation) return;
    this.queue = held.filter((p) => {
      const primaries = placement.primaries(p);
      return primaries.length > 0 && !primaries.includes(self);
    });
    this.planned = this.queue.length;
    this.dropped = 0;
    this.records = 0;
    this.bytes = 0;
    await this.run();
  }

  progress(): HandoverProgress {
    return {
      partitions: this.planned,
      dropped: this.dropped,
      records: this.records,
      bytes: this.bytes,
      busy: this.busy,
    };
  }

  stop(): void {
    this.stopped = true;
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (!this.stopped && this.queue.length > 0) {
        const generation = this.generation;
        const partition = this.queue.shift()!;
        let done = false;
        try {
          done = await this.handOver(partition, generation);
        } catch (e) {
          this.options.log(`replication: handing over partition ${partition} failed: ${String(e)}`);
        }
        if (generation !== this.generation) continue; // a new plan replaced this one
        if (done) this.dropped += 1;
        else {
          const t = setTimeout(() => {
            if (generation !== this.generation) return;
            this.queue.push(partition);
            void this.run();
          }, this.options.retryMs ?? 5_000);
          t.unref();
        }
      }
    } finally {
      this.running = false;
      if (this.dropped === this.planned && this.queue.length === 0) this.busy = false;
    }
  }

  /** Pushes the partition to its new primaries, dropping each record they all confirmed; true when none is left. */
  private async handOver(partition: number, generation: number): Promise<boolean> {
    const { replica, sender, placement, self } = this.options;
    const primaries = placement.primaries(partition);
    // The ring gave it back, or knows no primaries: nothing to give away.
    if (primaries.length === 0 || primaries.includes(self)) return true;
    const records = await replica.bucketRecords(partition);
    if (records === null) return false; // quarantined: repaired first, handed over later
    const slice = this.options.recordsPerSlice ?? 64;
    let complete = true;
    for (let i = 0; i < records.length; i += slice) {
      if (this.stopped || generation !== this.generation) return false;
      await Promise.all(
        records.slice(i, i + slice).map(async (bytes) => {
          const results = await Promise.all(
            primaries.map((p) => sender.request(p, { kind: "put", partition, record: bytes })),
          );
          if (!results.every((r) => r.ok)) {
            complete = false;
            return;
          }
          // Checked when read (bucketRecords); decoded again only for its id.
          const id = decodeReplicatedKey(bytes).fields.id;
          await replica.finishHandoff(partition, id, [], bytes, false);
          this.records += 1;
          this.bytes += bytes.length;
        }),
      );
    }
    return complete;
  }
}
