/**
 * Anti-entropy (DESIGN §4, Swift's object replicator): every `intervalMs`, for each partition this
 * peer is a primary of, compare its bucket digests with each other primary's and push the records of
 * the buckets that differ (push only: the other side pushes what it has in its own pass, so after a
 * pass on each side both hold the merge of both). A pass that synced with every other primary then
 * reclaims the partition's tombstones older than the reclaim age (so a primary that was away longer
 * than the reclaim age gets the tombstone before anyone forgets it), and quarantined partitions are
 * repaired by pulling every bucket from the other primaries.
 *
 * Convergence bound: once faults stop, two passes of every primary (2 * intervalMs plus the time a
 * pass takes) make every primary hold the merge of every primary's records. Handoff copies are not
 * covered by the every-primary check: they expire (undelivered) after a hint max age below the
 * reclaim age (hinted-handoff.ts), so no stale copy outlives a tombstone it predates.
 *
 * A quarantined partition is re-fetched from N - W + 1 other primaries: every acknowledged record is
 * on W primaries, so at least one of those holds each record this peer lost.
 */
import type { Scheduler } from "../../cluster/raft/driver/scheduler.js";
import {
  decodeReplicatedKey,
  majority,
  PartitionDigest,
  ReplicationError,
} from "../../cluster/replication/index.js";
import type { ItemSender } from "./link-batcher.js";
import { Periodic } from "./periodic.js";
import type { PlacementView } from "./placement-view.js";
import type { Replica } from "./replica.js";

export interface AntiEntropyOptions {
  replica: Replica;
  placement: PlacementView;
  sender: ItemSender;
  scheduler: Scheduler;
  intervalMs?: number;
  /** Partitions compared per pass (a rotating window over this peer's partitions). */
  partitionsPerPassMax?: number;
  /**
   * Called with the id of a record a replica refused for holding a rival version of it (rival
   * versions of a client request's key: coordinator.ts settle): digests differ until it is settled.
   */
  onRival?: (id: string) => void;
}

export interface AntiEntropyMetrics {
  passes: number;
  compared: number;
  bucketsDiffering: number;
  recordsPushed: number;
  repairsStarted: number;
  repairsDone: number;
}

export class AntiEntropy {
  private readonly periodic: Periodic;
  private readonly partitionsPerPassMax: number;
  private cursor = 0;
  readonly metrics: AntiEntropyMetrics = {
    passes: 0,
    compared: 0,
    bucketsDiffering: 0,
    recordsPushed: 0,
    repairsStarted: 0,
    repairsDone: 0,
  };

  constructor(private readonly options: AntiEntropyOptions) {
    this.partitionsPerPassMax = options.partitionsPerPassMax ?? 256;
    this.periodic = new Periodic(options.scheduler, options.intervalMs ?? 30_000, () => this.pass());
  }

  start(): void {
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
  }

  runOnce(): Promise<void> {
    return this.periodic.runOnce();
  }

  private async pass(): Promise<void> {
    this.metrics.passes += 1;
    const { replica, placement, sender } = this.options;
    const mine = placement.partitionsOf(sender.self);
    const window: number[] = [];
    for (let i = 0; i < Math.min(mine.length, this.partitionsPerPassMax); i++) {
      window.push(mine[(this.cursor + i) % mine.length]!);
    }
    this.cursor = mine.length === 0 ? 0 : (this.cursor + window.length) % mine.length;
    // Partitions quarantined on this peer are repaired first, even outside the window.
    const quarantined = replica.quarantinedPartitions().filter((p) => !window.includes(p));
    for (const p of [...quarantined, ...window]) {
      if (replica.isQuarantined(p)) await this.repair(p);
      else await this.syncPartition(p);
    }
  }

  /**
   * Pushes what differs to every other primary; then, only if every one of them answered and took
   * every push, reclaims the partition's tombstones past the reclaim age: each primary now holds
   * each of those tombstones (or had reclaimed it already), so none can hand the key back.
   */
  private async syncPartition(partition: number): Promise<void> {
    const { replica, placement, sender } = this.options;
    const local = await replica.digest(partition);
    if (local === null) return; // quarantined by the scan: repaired next pass
    const others = placement.primaries(partition).filter((p) => p !== sender.self);
    const synced = await Promise.all(others.map((peer) => this.syncWith(peer, partition, local)));
    if (synced.every((ok) => ok)) await replica.reclaimTombstones(partition);
  }

  /** True when `peer` answered and holds everything this replica held at the start of the call. */
  private async syncWith(peer: string, partition: number, local: PartitionDigest): Promise<boolean> {
    const { replica, placement, sender } = this.options;
    if (!placement.isUp(peer)) return false;
    const r = await sender.request(peer, { kind: "digest", partition });
    if (!r.ok || r.kind !== "digest") return false;
    let remote: PartitionDigest;
    try {
      remote = PartitionDigest.decode(r.digest);
    } catch (e) {
      if (e instanceof ReplicationError) return false;
      throw e;
    }
    if (remote.partition !== partition || remote.bucketBits !== local.bucketBits) return false;
    this.metrics.compared += 1;
    if (remote.top().equals(local.top())) return true;
    const buckets = local.diff(remote);
    this.metrics.bucketsDiffering += buckets.length;
    const records = await replica.bucketRecords(partition, buckets);
    if (records === null) return false;
    this.metrics.recordsPushed += records.length;
    const pushed = await Promise.all(
      records.map((record) => sender.request(peer, { kind: "put", partition, record })),
    );
    pushed.forEach((x, i) => {
      if (!x.ok && x.code === "ALREADY_EXISTS") this.rival(records[i]!);
    });
    return pushed.every((x) => x.ok);
  }

  /** Reports a refused rival's id (onRival), so the id is settled and the replicas converge. */
  private rival(record: Uint8Array): void {
    if (this.options.onRival === undefined) return;
    try {
      this.options.onRival(decodeReplicatedKey(record).fields.id);
    } catch (e) {
      if (!(e instanceof ReplicationError)) throw e; // a record that does not decode was refused for that
    }
  }

  /** Re-fetches a quarantined partition from its other primaries; ends the quarantine when enough answered. */
  private async repair(partition: number): Promise<void> {
    const { replica, placement, sender } = this.options;
    const generation = replica.quarantineGeneration(partition);
    if (generation === undefined) return;
    const primaries = placement.primaries(partition);
    if (!primaries.includes(sender.self)) {
      // Only handoff copies were lost here: their hints went with them, and there is nothing this peer
      // must hold for the partition, so nothing to fetch back.
      if (await replica.endQuarantine(partition, generation)) this.metrics.repairsDone += 1;
      return;
    }
    this.metrics.repairsStarted += 1;
    const needed = primaries.length - majority(primaries.length) + 1;
    const others = primaries.filter((p) => p !== sender.self);
    const buckets = Array.from({ length: 1 << replica.bucketBits }, (_, b) => b);
    let sources = 0;
    await Promise.all(
      others.map(async (peer) => {
        const r = await sender.request(peer, { kind: "pull", partition, buckets });
        if (!r.ok || r.kind !== "pull") return;
        const merged = await Promise.all(r.records.map((rec) => replica.put(partition, rec)));
        merged.forEach((m, i) => {
          if (!m.ok && m.code === "ALREADY_EXISTS") this.rival(r.records[i]!);
        });
        // Only a source whose every record merged counts: a refused record may be one this peer lost.
        if (merged.every((m) => m.ok)) sources += 1;
      }),
    );
    if (sources >= Math.min(needed, others.length) && (await replica.endQuarantine(partition, generation))) {
      this.metrics.repairsDone += 1;
    }
  }
}
