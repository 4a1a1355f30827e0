/**
 * The replication simulator's checkers, fed by the simulator as things happen:
 *   exact-material       a read returning a live key returns the material its create wrote
 *   no-foreign-material  a read never returns another key's record
 *   acked-create-readable  a read begun after a create was acknowledged finds the key, unless a delete
 *                          of it was ever attempted
 *   delete-never-undone  a read begun after a delete was acknowledged never finds the key live
 *   handoff-kept         a handoff copy's hint is deleted only when every primary holds the copy (or a
 *                        newer version of it), checked on the disks at the moment the deletion is synced,
 *                        unless the copy expired (older than the hint max age: dropped on purpose)
 *   converged            after faults stop, within QUIET_MS: the primaries of every partition hold
 *                        equal digests, no hint or quarantine is left, and no non-primary holds records
 *   final-reads          then every acknowledged create reads back, with its material, through two
 *                        peers each, and every acknowledged delete reads as deleted
 */
import {
  decodeReplicatedKey,
  encodeReplicatedKey,
  mergeKeys,
  PartitionDigest,
  replicatedKeyVersion,
  type ReplicatedKey,
} from "../../../cluster/replication/index.js";
import type { PlacementView } from "../../../src/replication/placement-view.js";
import { bytesEqual } from "../../../src/replication/replica.js";
import type { ReplicaStoreOp } from "../../../src/replication/replica-store.js";
import type { SimReplicaDisk } from "./sim-replica-disk.js";

export const hintAtMs = (value: Uint8Array): number =>
  value.length === 8 ? Buffer.from(value).readUInt32BE(0) * 2 ** 32 + Buffer.from(value).readUInt32BE(4) : 0;

export interface Violation {
  checker: string;
  detail: string;
}

/** Slack for clock skew when deciding whether a tombstone was old enough to reclaim. */
const SKEW_SLACK_MS = 1_000;

export class ReplicationChecker {
  violation: Violation | undefined;
  private readonly material = new Map<string, Uint8Array>();
  private readonly createAckedMs = new Map<string, number>();
  private readonly deleteStartMs = new Map<string, number>();
  private readonly deleteAckedMs = new Map<string, number>();
  finalReads = 0;

  constructor(
    private readonly placement: PlacementView,
    private readonly reclaimAgeMs: number,
    private readonly hintMaxAgeMs: number,
    private readonly nowMs: () => number,
    private readonly disk: (peer: string) => SimReplicaDisk,
  ) {}

  private fail(checker: string, detail: string): void {
    this.violation ??= { checker, detail };
  }

  onCreateStart(id: string, material: Uint8Array): void {
    this.material.set(id, material);
  }
  onCreateAck(id: string, atMs: number): void {
    if (!this.createAckedMs.has(id)) this.createAckedMs.set(id, atMs);
  }
  onDeleteStart(id: string, atMs: number): void {
    if (!this.deleteStartMs.has(id)) this.deleteStartMs.set(id, atMs);
  }
  onDeleteAck(id: string, atMs: number): void {
    if (!this.deleteAckedMs.has(id)) this.deleteAckedMs.set(id, atMs);
  }

  onRead(id: string, startedMs: number, r: ReplicatedKey | null, where: string): void {
    const live = r !== null && r.tombstone === null;
    if (r !== null && r.fields.id !== id) {
      this.fail("no-foreign-material", `${where}: read of ${id} returned key ${r.fields.id}`);
      return;
    }
    if (live) {
      const want = this.material.get(id);
      if (want === undefined || r.wrappedMaterial === null || !bytesEqual(want, r.wrappedMaterial))
        this.fail(
          "exact-material",
          `${where}: read of ${id} returned material that its create did not write`,
        );
      const deleted = this.deleteAckedMs.get(id);
      if (deleted !== undefined && deleted < startedMs)
        this.fail(
          "delete-never-undone",
          `${where}: read begun at ${startedMs} found ${id} live; its delete was acknowledged at ${deleted}`,
        );
    } else {
      const acked = this.createAckedMs.get(id);
      if (acked !== undefined && acked < startedMs && !this.deleteStartMs.has(id))
        this.fail(
          "acked-create-readable",
          `${where}: read begun at ${startedMs} found ${r === null ? "no" : "a deleted"} ${id}; its create was acknowledged at ${acked} and never deleted`,
        );
    }
  }

  onFinalRead(id: string, r: ReplicatedKey | null, peer: string): void {
    this.finalReads++;
    this.onRead(id, Number.MAX_SAFE_INTEGER, r, `final read at ${peer}`);
  }

  onFinalReadFailed(id: string, peer: string): void {
    this.finalReads++;
    this.fail("final-reads", `final read of ${id} at ${peer} failed after faults stopped`);
  }

  /** A batch is being synced on `peer`; `before` is its disk just before. */
  onBatch(peer: string, ops: readonly ReplicaStoreOp[], before: ReadonlyMap<string, Uint8Array>): void {
    for (const op of ops) {
      if (op.type !== "del-hint") continue;
      const hint = before.get(`h/${op.partition.toString(16).padStart(4, "0")}/${op.id}/${op.owner}`);
      // An expired copy is dropped undelivered on purpose (hinted-handoff.ts).
      if (hint !== undefined && this.nowMs() - hintAtMs(hint) > this.hintMaxAgeMs - SKEW_SLACK_MS) continue;
      const hinted = before.get(`r/${op.partition.toString(16).padStart(4, "0")}/${op.id}`);
      if (hinted === undefined) continue; // the copy was already gone (reclaimed, or removed as damaged)
      let copy: ReplicatedKey;
      try {
        copy = decodeReplicatedKey(hinted);
      } catch {
        continue;
      }
      for (const primary of this.placement.primaries(op.partition)) {
        if (primary === peer) continue;
        const held = this.holds(primary, op.partition, op.id, copy);
        if (!held)
          this.fail(
            "handoff-kept",
            `${peer} dropped its handoff copy of ${op.id} (hint for ${op.owner}) while primary ${primary} does not hold it`,
          );
      }
    }
  }

  private holds(primary: string, partition: number, id: string, copy: ReplicatedKey): boolean {
    const d = this.disk(primary);
    if (d.durable.has(`q/${partition.toString(16).padStart(4, "0")}`)) return true; // lost to rot: being repaired
    const bytes = d.record(partition, id);
    if (bytes === undefined)
      return (
        copy.tombstone !== null && this.nowMs() - copy.tombstone.wallMs > this.reclaimAgeMs - SKEW_SLACK_MS
      );
    try {
      const theirs = decodeReplicatedKey(bytes);
      return bytesEqual(encodeReplicatedKey(mergeKeys(theirs, copy)), bytes);
    } catch {
      return true; // rotted on that disk: its replica will find it; not this checker's business
    }
  }

  /** Every partition's primaries agree, and nothing is left in hints, quarantine or on non-primaries. */
  checkConverged(peers: readonly string[]): Violation | undefined {
    for (const peer of peers) {
      const d = this.disk(peer);
      const hints = d.hintCount();
      if (hints > 0)
        return { checker: "converged", detail: `${peer} still holds ${hints} hints after the quiet period` };
      for (const k of d.durable.keys())
        if (k.startsWith("q/"))
          return { checker: "converged", detail: `${peer} still quarantines partition ${k.slice(2)}` };
      for (const r of d.records()) {
        if (!this.placement.primaries(r.partition).includes(peer) && !this.reclaimable(r.value))
          return {
            checker: "converged",
            detail: `${peer} still holds ${r.id} of partition ${r.partition}, which it is no primary of`,
          };
      }
    }
    for (let p = 0; p < this.placement.partitions; p++) {
      let first: { peer: string; top: string } | undefined;
      for (const peer of this.placement.primaries(p)) {
        const digest = new PartitionDigest(p, 4);
        for (const r of this.disk(peer).partitionRecords(p)) {
          if (this.reclaimable(r.value)) continue;
          digest.add(r.id, replicatedKeyVersion(r.value));
        }
        const top = digest.top().toString("hex");
        if (first === undefined) first = { peer, top };
        else if (first.top !== top)
          return {
            checker: "converged",
            detail: `partition ${p}: ${first.peer} and ${peer} differ after the quiet period`,
          };
      }
    }
    return undefined;
  }

  /** A tombstone past the reclaim age (with skew slack) may be gone on one replica and not yet on another. */
  private reclaimable(bytes: Uint8Array): boolean {
    try {
      const k = decodeReplicatedKey(bytes);
      return k.tombstone !== null && this.nowMs() - k.tombstone.wallMs > this.reclaimAgeMs - SKEW_SLACK_MS;
    } catch {
      return false;
    }
  }
}
