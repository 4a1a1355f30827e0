/**
 * One peer's replication, assembled (DESIGN §4): its Replica over the peer's store, the
 * ReplicationPeerService other peers stream to, a GrpcPeerLink + LinkBatcher to reach them, the
 * Coordinator the key service writes and reads through, and the HandoffRunner and AntiEntropy
 * passes. Where partitions live comes from the ring version committed in the control state; member
 * addresses from the same place. The composition root (src/peer) hands in both as a `ClusterView`
 * and calls `sync()` whenever the control state changes (and on a timer), so this module knows
 * nothing of raft.
 *
 * Before the first ring is committed, every key call fails UNAVAILABLE (retryable): the leader builds
 * the ring as soon as it holds its own member record (src/controlplane/ring-duty.ts).
 */
import type * as grpc from "@grpc/grpc-js";
import { nodeScheduler, type Scheduler } from "../../cluster/raft/driver/scheduler.js";
import {
  HybridClock,
  latestStamp,
  ReplicationError,
  type HlcStamp,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import {
  decodeRing,
  formatRingShow,
  partitionCount,
  partitionMoves,
  partitionOfKeyId,
  Ring,
} from "../../cluster/ring/index.js";
import { LockboxError } from "../errors.js";
import type { PeerDialOverrides } from "../net/peer-dial.js";
import type { PeerIdentity } from "../pki/peer-certificate-verifier.js";
import type { PeerTlsMaterial } from "../raft/grpc-peer-transport.js";
import type { PeerStore } from "../store/peer-store.js";
import { AntiEntropy } from "./anti-entropy.js";
import { Coordinator } from "./coordinator.js";
import { GrpcPeerLink } from "./grpc-peer-link.js";
import { HandoffRunner } from "./hinted-handoff.js";
import { HlcLease } from "./hlc-lease.js";
import { LevelReplicaStore } from "./leveldb-replica-store.js";
import { LinkBatcher } from "./link-batcher.js";
import { RingPlacement, type PlacementView } from "./placement-view.js";
import { Replica } from "./replica.js";
import { PartitionHandover } from "./partition-handover.js";
import { PartitionReceiver } from "./partition-receiver.js";
import { ReplicationPeerService } from "./replication-peer-service.js";
import { loadReplicationService } from "./replication-proto.js";

/** What the control state says, as replication needs it. */
export interface ClusterView {
  /** The committed ring (codec bytes, base64), or null before the first. */
  ring: { version: number; bytes: string } | null;
  /** Members that may hold or serve data: id -> HOST:PORT. */
  addresses: ReadonlyMap<string, string>;
}

export interface ReplicationTunables {
  writeDeadlineMs: number;
  readDeadlineMs: number;
  antiEntropyIntervalMs: number;
  handoffIntervalMs: number;
  reclaimAgeMs: number;
  hintMaxAgeMs: number;
}

export interface ReplicationNodeOptions {
  self: string;
  store: PeerStore;
  clusterSalt: Uint8Array;
  partitionPower: number;
  tls: PeerTlsMaterial;
  /** As the raft transport's: null admits a peer, a string says why not (membership, revocation). */
  admitPeer: (peer: PeerIdentity) => string | null;
  tunables: ReplicationTunables;
  nowMs: () => number;
  log: (line: string) => void;
  scheduler?: Scheduler;
  /** Peers dialled at another address than their member address (config.json `peerDialOverrides`). */
  dialOverrides?: PeerDialOverrides;
  /** How long a ring change settles before this peer gives away partitions it no longer owns (5 s). */
  handoverSettleMs?: number;
  /** How far ahead the clock's high-water mark is written (hlc-lease.ts; 10 s). */
  hlcLeaseMs?: number;
}

/** Digest buckets per partition: every peer must use the same number, so it is not a tunable. */
export const BUCKET_BITS = 8;

export class ReplicationNode {
  readonly replica: Replica;
  /** The replica's LevelDB records, with its id filter (its counters are read by the metrics). */
  readonly replicaStore: LevelReplicaStore;
  readonly service: ReplicationPeerService;
  readonly link: GrpcPeerLink;
  readonly batcher: LinkBatcher;
  readonly coordinator: Coordinator;
  readonly handoff: HandoffRunner;
  readonly antiEntropy: AntiEntropy;
  readonly placement: LivePlacement;
  readonly receiver: PartitionReceiver;
  readonly handover: PartitionHandover;
  /** Partition-replicas that moved in the last ring change this peer applied. */
  private lastMoved = 0;
  private readonly hlc: HybridClock;
  private readonly addresses = new Map<string, string>();

  private constructor(
    private readonly options: ReplicationNodeOptions,
    private readonly lease: HlcLease,
  ) {
    const { self, store, partitionPower, tunables } = options;
    const scheduler = options.scheduler ?? nodeScheduler;
    this.placement = new LivePlacement(options.clusterSalt, partitionPower, (peer) => this.isUp(peer));
    this.replicaStore = new LevelReplicaStore(store, partitionPower, { log: options.log });
    this.replica = new Replica({
      self,
      store: this.replicaStore,
      partitionOfKey: (id) => this.placement.partitionOfKey(id),
      partitions: partitionCount(partitionPower),
      nowMs: options.nowMs,
      reclaimAgeMs: tunables.reclaimAgeMs,
      bucketBits: BUCKET_BITS,
    });
    this.service = new ReplicationPeerService({
      self,
      caCertificatePem: options.tls.caCertificatePem,
      replica: this.replica,
      admitPeer: options.admitPeer,
      log: options.log,
    });
    this.link = new GrpcPeerLink({
      self,
      tls: options.tls,
      log: options.log,
      ...(options.dialOverrides !== undefined ? { dialOverrides: options.dialOverrides } : {}),
    });
    this.batcher = new LinkBatcher({
      self,
      link: this.link,
      scheduler,
      local: (batch) => this.replica.handleLocal(batch),
      batchTimeoutMs: Math.max(tunables.writeDeadlineMs, tunables.readDeadlineMs),
    });
    this.coordinator = new Coordinator({
      sender: this.batcher,
      placement: this.placement,
      scheduler,
      writeDeadlineMs: tunables.writeDeadlineMs,
      readDeadlineMs: tunables.readDeadlineMs,
      bucketBits: BUCKET_BITS,
    });
    this.handoff = new HandoffRunner({
      replica: this.replica,
      store: this.replicaStore,
      placement: this.placement,
      sender: this.batcher,
      scheduler,
      nowMs: options.nowMs,
      hintMaxAgeMs: tunables.hintMaxAgeMs,
      intervalMs: tunables.handoffIntervalMs,
      settle: (id) => this.coordinator.settle(id),
    });
    this.antiEntropy = new AntiEntropy({
      replica: this.replica,
      placement: this.placement,
      sender: this.batcher,
      scheduler,
      intervalMs: tunables.antiEntropyIntervalMs,
      onRival: (id) => void this.coordinator.settle(id).catch(() => {}),
    });
    this.receiver = new PartitionReceiver({
      self,
      replica: this.replica,
      sender: this.batcher,
      bucketBits: BUCKET_BITS,
      nowMs: options.nowMs,
      log: options.log,
    });
    this.handover = new PartitionHandover({
      self,
      replica: this.replica,
      sender: this.batcher,
      placement: this.placement,
      log: options.log,
      heldPartitions: () => this.replicaStore.partitions(),
      ...(options.handoverSettleMs !== undefined ? { settleMs: options.handoverSettleMs } : {}),
    });
    // The clock resumes above every stamp this peer sent before it stopped (hlc-lease.ts).
    const resumeFrom = lease.resumeFrom(self);
    this.hlc = new HybridClock({
      peer: self,
      physicalNowMs: options.nowMs,
      ...(resumeFrom !== undefined ? { resumeFrom } : {}),
    });
  }

  /** Opens the replica (its quarantine marks); passes start with `start`. */
  static async open(options: ReplicationNodeOptions): Promise<ReplicationNode> {
    if (options.tunables.hintMaxAgeMs >= options.tunables.reclaimAgeMs) {
      throw new RangeError("replication.hintMaxAgeMs must be below replication.reclaimAgeMs");
    }
    const node = new ReplicationNode(
      options,
      await HlcLease.open(options.store, options.hlcLeaseMs, options.nowMs),
    );
    await node.replica.open();
    return node;
  }

  /** The gRPC service to add to the peer's server (peer certificates only). */
  peerService(): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
    return { definition: loadReplicationService().service, implementation: this.service.handlers() };
  }

  start(): void {
    this.handoff.start();
    this.antiEntropy.start();
  }

  /** Brings the ring and the peer addresses in line with the control state. Cheap when nothing changed. */
  sync(view: ClusterView): void {
    for (const [id, address] of view.addresses) {
      if (id === this.options.self || this.addresses.get(id) === address) continue;
      this.addresses.set(id, address);
      this.link.setPeerAddress(id, address);
    }
    for (const id of [...this.addresses.keys()]) {
      if (view.addresses.has(id)) continue;
      this.addresses.delete(id);
      this.link.removePeer(id);
    }
    if (view.ring !== null && view.ring.version !== this.placement.version) {
      try {
        const state = decodeRing(new Uint8Array(Buffer.from(view.ring.bytes, "base64")));
        if (state.partPower !== this.options.partitionPower) {
          throw new Error(
            `its partition power ${state.partPower} is not this peer's ${this.options.partitionPower}`,
          );
        }
        const before = this.placement.ring;
        const after = new Ring(state);
        this.placement.use(after);
        if (before !== undefined) {
          const moves = partitionMoves(before, after);
          this.lastMoved = moves.reduce((n, m) => n + m.receivers.length, 0);
          this.receiver.receive(moves);
        }
        this.handover.ringChanged();
      } catch (e) {
        this.options.log(
          `replication: ring version ${view.ring.version} not used: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    }
  }

  /** The key service's view of replication (src/keys/key-replication.ts's KeyReplication). */
  readonly keys = {
    read: async (id: string): Promise<ReplicatedKey | null> => {
      this.requireRing();
      const k = await this.coordinator.read(id);
      if (k !== null) this.observe(latestStamp(k));
      return k;
    },
    write: (record: ReplicatedKey): Promise<void> => {
      // Not an async function: once per create, and the mark is nearly always covered already.
      try {
        this.requireRing();
        // No stamp leaves this peer before the high-water mark on disk covers it (hlc-lease.ts).
        const covered = this.lease.cover(this.hlc.last().wallMs);
        if (covered === undefined) return this.coordinator.write(record);
        return covered.then(() => this.coordinator.write(record));
      } catch (e) {
        return Promise.reject(e);
      }
    },
    readPartition: async (partition: number): Promise<ReplicatedKey[]> => {
      this.requireRing();
      const records = await this.coordinator.readPartition(partition);
      for (const k of records) this.observe(latestStamp(k));
      return records;
    },
    stamp: (): HlcStamp => this.hlc.now(),
    settle: async (id: string): Promise<ReplicatedKey | null> => {
      this.requireRing();
      const k = await this.coordinator.settle(id);
      if (k !== null) this.observe(latestStamp(k));
      return k;
    },
  };

  /**
   * `lockbox ring show|status` (admin.proto GetRingResponse, wire field names): the committed ring's
   * shape and reports, and this peer's view and counters.
   */
  ringView(
    committed: { version: number; bytes: string } | null,
    minPartHours: number,
  ): Record<string, unknown> {
    const local = {
      local_version: this.placement.version,
      ...this.progressFields(),
    };
    if (committed === null) return { version: 0, show: [], peers: [], ...local };
    const ring = new Ring(decodeRing(new Uint8Array(Buffer.from(committed.bytes, "base64"))));
    const balance = ring.balanceReport();
    const dispersion = ring.dispersionReport();
    return {
      version: ring.version,
      partition_power: ring.partPower,
      replicas: ring.replicas,
      min_part_hours: minPartHours,
      balance: balance.balance,
      dispersion: dispersion.dispersion,
      peers: balance.peers.map((p) => ({
        peer_id: p.id,
        zone: p.zone,
        weight: p.weight,
        partitions: p.parts,
        wanted: p.wanted,
        balance: p.balance,
      })),
      show: formatRingShow(ring, minPartHours),
      ...local,
    };
  }

  private progressFields(): Record<string, number> {
    const p = this.receiver.progress();
    const h = this.handover.progress();
    return {
      partitions_giving: h.partitions,
      partitions_given: h.dropped,
      records_given: h.records,
      bytes_given: h.bytes,
      partitions_receiving: p.partitions,
      partitions_received: p.received,
      records_received: p.records,
      bytes_received: p.bytes,
      bytes_per_second: p.bytesPerSecond,
      partition_replicas_moved: this.lastMoved,
      partitions_quarantined: this.replica.quarantinedPartitions().length,
      anti_entropy_passes: this.antiEntropy.metrics.passes,
      anti_entropy_records_pushed: this.antiEntropy.metrics.recordsPushed,
      handoff_delivered: this.handoff.metrics.delivered,
      writes_acked: this.coordinator.metrics.writesAcked,
      writes_unavailable: this.coordinator.metrics.writesUnavailable,
      reads: this.coordinator.metrics.reads,
      reads_unavailable: this.coordinator.metrics.readsUnavailable,
    };
  }

  async close(): Promise<void> {
    this.receiver.stop();
    this.handover.stop();
    this.handoff.stop();
    this.antiEntropy.stop();
    this.service.close();
    await this.link.close();
  }

  /** The clock's high-water mark on disk, and how often it was raised (tests, status). */
  hlcHighWater(): { highWaterMs: number; raises: number; last: HlcStamp } {
    return { highWaterMs: this.lease.highWaterMs, raises: this.lease.raises, last: this.hlc.last() };
  }

  private observe(stamp: HlcStamp): void {
    try {
      this.hlc.observe(stamp);
    } catch (e) {
      // A stamp far ahead of this clock is not adopted (hlc.ts); the record is still served.
      if (!(e instanceof ReplicationError)) throw e;
    }
  }

  private requireRing(): void {
    if (this.placement.version === 0) {
      throw new LockboxError("UNAVAILABLE", "the cluster has no ring yet; retry shortly");
    }
  }

  private isUp(peer: string): boolean {
    return peer === this.options.self || this.addresses.has(peer);
  }
}

/** A PlacementView over whichever ring version is current; empty before the first. */
export class LivePlacement implements PlacementView {
  readonly partitions: number;
  private current: RingPlacement | undefined;
  private currentRing: Ring | undefined;

  constructor(
    private readonly clusterSalt: Uint8Array,
    private readonly partitionPower: number,
    readonly isUp: (peer: string) => boolean,
  ) {
    this.partitions = partitionCount(partitionPower);
  }

  /** The ring version in use; 0 before the first. */
  get version(): number {
    return this.currentRing?.version ?? 0;
  }

  get ring(): Ring | undefined {
    return this.currentRing;
  }

  use(ring: Ring): void {
    this.currentRing = ring;
    this.current = new RingPlacement(ring, this.clusterSalt, this.isUp);
  }

  partitionOfKey(id: string): number {
    return partitionOfKeyId(this.clusterSalt, id, this.partitionPower);
  }

  primaries(partition: number): readonly string[] {
    return this.current?.primaries(partition) ?? [];
  }

  handoffs(partition: number): readonly string[] {
    return this.current?.handoffs(partition) ?? [];
  }

  partitionsOf(peer: string): readonly number[] {
    return this.current?.partitionsOf(peer) ?? [];
  }
}
