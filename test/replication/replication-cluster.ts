/**
 * A small replication cluster for the src/replication tests: each peer has its own real LevelDB
 * (PeerStore + LevelReplicaStore) and the real Replica, Coordinator, HandoffRunner and AntiEntropy.
 * The link between peers is IN-PROCESS (a function call per batch, no gRPC: the peer streams are
 * built later); it can be cut per peer and counts messages and items, so tests can see batching.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { nodeScheduler } from "../../cluster/raft/driver/scheduler.js";
import { type HlcStamp, type ReplicatedKey } from "../../cluster/replication/index.js";
import { placedKeyId, RingBuilder, scopeHash32 } from "../../cluster/ring/index.js";
import { AntiEntropy } from "../../src/replication/anti-entropy.js";
import { Coordinator } from "../../src/replication/coordinator.js";
import { HandoffRunner } from "../../src/replication/hinted-handoff.js";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { LinkBatcher } from "../../src/replication/link-batcher.js";
import type { PeerLink, ReplicaBatch, ReplicaBatchReply } from "../../src/replication/peer-link.js";
import { RingPlacement } from "../../src/replication/placement-view.js";
import { Replica } from "../../src/replication/replica.js";
import type { ReplicationBugs } from "../../src/replication/replication-bugs.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";

export const SALT = new Uint8Array([1, 2, 3, 4]);
export const PART_POWER = 4;
export const RECLAIM_AGE_MS = 60_000;

export interface TestPeer {
  id: string;
  dir: string;
  store: PeerStore;
  replicaStore: LevelReplicaStore;
  replica: Replica;
  batcher: LinkBatcher;
  coordinator: Coordinator;
  handoff: HandoffRunner;
  antiEntropy: AntiEntropy;
}

export class TestCluster {
  readonly peers = new Map<string, TestPeer>();
  /** Peers whose link is cut (messages to and from them fail) and peers reported down. */
  readonly cut = new Set<string>();
  readonly down = new Set<string>();
  messages = 0;
  items = 0;
  nowMs = 1_700_000_000_000;
  placement!: RingPlacement;
  private keySeq = 0;

  static async start(
    t: ExecutionContext,
    ids: readonly string[],
    options: { bugs?: ReplicationBugs; batchTimeoutMs?: number } = {},
  ): Promise<TestCluster> {
    const c = new TestCluster();
    const b = RingBuilder.create({ partPower: PART_POWER, replicas: 3, minPartHours: 1 });
    ids.forEach((id, i) => b.addPeer({ id, zone: `z${i}`, weight: 100 }));
    b.rebalance(0);
    c.placement = new RingPlacement(b.ring(), SALT, (p) => !c.down.has(p));
    for (const id of ids) {
      const dir = await mkdtemp(join(tmpdir(), `lockbox-repl-${id}-`));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      await c.open(id, dir, options);
    }
    t.teardown(() => c.close());
    return c;
  }

  async open(
    id: string,
    dir: string,
    options: { bugs?: ReplicationBugs; batchTimeoutMs?: number } = {},
  ): Promise<TestPeer> {
    const store = await openPeerStore(dir);
    const replicaStore = new LevelReplicaStore(store, PART_POWER);
    const replica = new Replica({
      self: id,
      store: replicaStore,
      partitionOfKey: (k) => this.placement.partitionOfKey(k),
      partitions: this.placement.partitions,
      nowMs: () => this.nowMs,
      reclaimAgeMs: RECLAIM_AGE_MS,
      bucketBits: 4,
    });
    await replica.open();
    const batcher = new LinkBatcher({
      self: id,
      link: this.linkFrom(id),
      scheduler: nodeScheduler,
      local: (batch) => replica.handleLocal(batch),
      batchTimeoutMs: options.batchTimeoutMs ?? 2_000,
    });
    const common = { placement: this.placement, sender: batcher, scheduler: nodeScheduler };
    const peer: TestPeer = {
      id,
      dir,
      store,
      replicaStore,
      replica,
      batcher,
      coordinator: new Coordinator({
        ...common,
        writeDeadlineMs: 5_000,
        readDeadlineMs: 5_000,
        bucketBits: 4, // as the replicas': a partition pull names their buckets
        bugs: options.bugs,
      }),
      handoff: new HandoffRunner({
        ...common,
        replica,
        store: replicaStore,
        nowMs: () => this.nowMs,
        hintMaxAgeMs: RECLAIM_AGE_MS / 2,
        bugs: options.bugs,
      }),
      antiEntropy: new AntiEntropy({ ...common, replica }),
    };
    this.peers.set(id, peer);
    return peer;
  }

  peer(id: string): TestPeer {
    const p = this.peers.get(id);
    if (p === undefined) throw new Error(`no peer ${id}`);
    return p;
  }

  /** An in-process PeerLink: the batch is handed to the target replica, or fails when either end is cut. */
  private linkFrom(from: string): PeerLink {
    return {
      send: async (to: string, batch: ReplicaBatch): Promise<ReplicaBatchReply> => {
        this.messages += 1;
        this.items += batch.items.length;
        if (this.cut.has(from) || this.cut.has(to)) throw new Error("link cut");
        const target = this.peers.get(to);
        if (target === undefined) throw new Error(`unknown peer ${to}`);
        return target.replica.handle(structuredClone(batch));
      },
    };
  }

  /** A fresh live key record in `scope`, stamped by `peer`. */
  newKey(scope = "vol-1", peer = "a"): ReplicatedKey {
    const n = this.keySeq++;
    const random = new Uint8Array(16).map((_, i) => (n * 31 + i * 7) & 0xff);
    const id = placedKeyId(scopeHash32(SALT, "proj", scope), random);
    const stamp: HlcStamp = { wallMs: this.nowMs, logical: n, peer };
    return {
      fields: {
        id,
        project: "proj",
        scope,
        name: `k${n}`,
        algorithm: "AES",
        bitLength: 256,
        createdAtMs: this.nowMs,
        parentId: "",
      },
      created: stamp,
      wrappedMaterial: new Uint8Array(32).fill(n + 1),
      state: { value: "active", stamp },
      tombstone: null,
      grants: [],
      consumers: [],
    };
  }

  primariesOf(k: ReplicatedKey): readonly string[] {
    return this.placement.primaries(this.placement.partitionOfKey(k.fields.id));
  }

  handoffsOf(k: ReplicatedKey): readonly string[] {
    return this.placement.handoffs(this.placement.partitionOfKey(k.fields.id));
  }

  partitionOf(k: ReplicatedKey): number {
    return this.placement.partitionOfKey(k.fields.id);
  }

  async close(): Promise<void> {
    for (const p of this.peers.values()) await p.store.close();
  }
}

export const deleted = (k: ReplicatedKey, wallMs: number): ReplicatedKey => ({
  ...k,
  wrappedMaterial: null,
  tombstone: { wallMs, logical: 0, peer: "z" },
});
