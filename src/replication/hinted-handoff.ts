/**
 * Hinted handoff (DESIGN §4, Swift's handoff revert): a peer holding copies for other peers (hints,
 * written by replica puts with `hintFor`) pushes each such record to EVERY primary of its partition,
 * and deletes the hint (and its own copy, when it is no primary) only after every one of them answered
 * that it synced the record. Until then the hint stays and the next pass tries again: a handoff copy
 * is never the first copy dropped. Which primaries already synced a version is remembered across
 * passes (in memory: a restart asks them again), so on a lossy network the copy goes home once each
 * primary has answered once, not when all answer in the same pass: the time a copy waits is the time
 * a stale copy could still come back, which the reclaim age must exceed (anti-entropy.ts).
 *
 * One exception, by design: a copy not written for `hintMaxAgeMs` (less than the reclaim age) is
 * dropped without being delivered. Pushed later, it could bring back a key whose tombstone every
 * primary has reclaimed meanwhile. Dropping it loses nothing acknowledged: a write is acknowledged
 * only once W primaries synced it (coordinator.ts), and anti-entropy brings the rest up to date.
 *
 * Rival versions (coordinator.ts): a copy a primary refuses for holding a rival version of its key
 * has the id settled (`settle`); when the kept version is another one, this copy lost for good and
 * is dropped with its hints (it was never acknowledged: the settled version holds the write quorum).
 */
import { createHash } from "node:crypto";
import type { Scheduler } from "../../cluster/raft/driver/scheduler.js";
import { decodeReplicatedKey, sameBody, type ReplicatedKey } from "../../cluster/replication/index.js";
import type { ItemSender } from "./link-batcher.js";
import { Periodic } from "./periodic.js";
import type { PlacementView } from "./placement-view.js";
import type { Replica } from "./replica.js";
import type { ReplicaStore } from "./replica-store.js";
import type { ReplicationBugs } from "./replication-bugs.js";

export interface HandoffOptions {
  replica: Replica;
  store: ReplicaStore;
  placement: PlacementView;
  sender: ItemSender;
  scheduler: Scheduler;
  /** Physical time, for hint ages. */
  nowMs: () => number;
  /** Copies older than this are dropped undelivered; must be below the replica's reclaim age. */
  hintMaxAgeMs: number;
  intervalMs?: number;
  /** Hints handled per pass (the rest wait for later passes). */
  hintsPerPassMax?: number;
  bugs?: ReplicationBugs;
  /** Settles a key with rival versions and returns the kept version (Coordinator.settle). */
  settle?: (id: string) => Promise<ReplicatedKey | null>;
}

export interface HandoffMetrics {
  passes: number;
  /** Hints still held after the last pass (of the at most hintsPerPassMax it read): for a gauge. */
  held: number;
  pushed: number;
  delivered: number;
  dropped: number;
  expired: number;
}

export class HandoffRunner {
  private readonly periodic: Periodic;
  private readonly hintsPerPassMax: number;
  readonly metrics: HandoffMetrics = {
    passes: 0,
    held: 0,
    pushed: 0,
    delivered: 0,
    dropped: 0,
    expired: 0,
  };
  /** `partition/id` -> the version pushed and the primaries that synced it. */
  private acked = new Map<string, { version: string; peers: Set<string> }>();

  constructor(private readonly options: HandoffOptions) {
    this.hintsPerPassMax = options.hintsPerPassMax ?? 1024;
    if (!Number.isSafeInteger(options.hintMaxAgeMs) || options.hintMaxAgeMs <= 0)
      throw new RangeError("hintMaxAgeMs must be a positive integer");
    this.periodic = new Periodic(options.scheduler, options.intervalMs ?? 10_000, () => this.pass());
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
    const { store, replica, placement, sender } = this.options;
    const hints = await store.hints(this.hintsPerPassMax);
    const groups = new Map<string, { partition: number; id: string; owners: string[]; newestMs: number }>();
    for (const h of hints) {
      const k = `${h.partition}/${h.id}`;
      const g = groups.get(k) ?? { partition: h.partition, id: h.id, owners: [], newestMs: 0 };
      g.owners.push(h.owner);
      g.newestMs = Math.max(g.newestMs, h.atMs);
      groups.set(k, g);
    }
    // Forget acknowledgements of hints no longer held (finished elsewhere, or beyond this pass's window).
    const keep = new Map<string, { version: string; peers: Set<string> }>();
    for (const k of groups.keys()) {
      const a = this.acked.get(k);
      if (a !== undefined) keep.set(k, a);
    }
    this.acked = keep;
    let finished = 0;
    await Promise.all(
      [...groups].map(async ([key, { partition, id, owners, newestMs }]) => {
        const record = await replica.localRecord(partition, id);
        if (record === undefined) {
          // Reclaimed, or removed as damaged: nothing left to take home.
          this.metrics.dropped += 1;
          await replica.dropHints(partition, id, owners);
          finished += owners.length;
          return;
        }
        if (this.options.nowMs() - newestMs > this.options.hintMaxAgeMs) {
          this.metrics.expired += 1;
          this.acked.delete(key);
          const keep = placement.primaries(partition).includes(sender.self);
          await replica.finishHandoff(partition, id, owners, record, keep);
          finished += owners.length;
          return;
        }
        const version = createHash("sha256").update(record).digest("hex");
        let acked = this.acked.get(key);
        if (acked === undefined || acked.version !== version) {
          acked = { version, peers: new Set() };
          this.acked.set(key, acked);
        }
        const holders = acked.peers;
        const primaries = placement.primaries(partition);
        const targets = primaries.filter((p) => p !== sender.self);
        let rivalHeld = false;
        await Promise.all(
          targets.map(async (peer) => {
            if (holders.has(peer) || !placement.isUp(peer)) return;
            this.metrics.pushed += 1;
            const r = await sender.request(peer, { kind: "put", partition, record });
            if (r.ok) holders.add(peer);
            else if (r.code === "ALREADY_EXISTS") rivalHeld = true;
          }),
        );
        if (rivalHeld && (await this.lostToRival(id, record))) {
          this.acked.delete(key);
          this.metrics.dropped += 1;
          await replica.finishHandoff(partition, id, owners, record, primaries.includes(sender.self));
          finished += owners.length;
          return;
        }
        const held = this.options.bugs?.handoffDropEarly
          ? owners.some((o) => holders.has(o))
          : targets.every((t) => holders.has(t));
        if (!held) return;
        this.acked.delete(key);
        this.metrics.delivered += 1;
        await replica.finishHandoff(partition, id, owners, record, primaries.includes(sender.self));
        finished += owners.length;
      }),
    );
    this.metrics.held = hints.length - finished;
  }

  /** Settles `id` and tells whether the version it keeps is another one than this copy's. */
  private async lostToRival(id: string, record: Uint8Array): Promise<boolean> {
    if (this.options.settle === undefined) return false;
    let kept: ReplicatedKey | null;
    try {
      kept = await this.options.settle(id);
    } catch {
      return false; // not settled yet: the next pass asks again
    }
    return kept !== null && !sameBody(kept, decodeReplicatedKey(record));
  }
}
