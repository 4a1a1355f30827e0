/**
 * Replicas on real gRPC: each peer has its own LevelDB (PeerStore + LevelReplicaStore), the real
 * Replica behind a ReplicationPeerService on its own gRPC server (127.0.0.1, free port, peer mTLS with
 * certificates of a real cluster CA, test/raft-process/peer-tls.ts), and a GrpcPeerLink + LinkBatcher +
 * Coordinator that reach the others over sockets.
 *
 * The one test hook: `hold(id)` makes peer id's service wait before the real replica handles a batch
 * (a peer that received a batch and has not answered yet), `release(id)` lets the held batches go on.
 */
import * as grpc from "@grpc/grpc-js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ExecutionContext } from "ava";
import { nodeScheduler } from "../../cluster/raft/driver/scheduler.js";
import type { HlcStamp, ReplicatedKey } from "../../cluster/replication/index.js";
import { placedKeyId, RingBuilder, scopeHash32 } from "../../cluster/ring/index.js";
import { peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { Coordinator } from "../../src/replication/coordinator.js";
import { GrpcPeerLink, type GrpcPeerLinkOptions } from "../../src/replication/grpc-peer-link.js";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { LinkBatcher } from "../../src/replication/link-batcher.js";
import type { ReplicaBatch } from "../../src/replication/peer-link.js";
import { RingPlacement } from "../../src/replication/placement-view.js";
import { Replica } from "../../src/replication/replica.js";
import { ReplicationPeerService } from "../../src/replication/replication-peer-service.js";
import { loadReplicationService } from "../../src/replication/replication-proto.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";
import { peerServerCredentials, peerTls } from "../raft-process/peer-tls.js";

export const SALT = new Uint8Array([9, 8, 7, 6]);
export const PART_POWER = 4;

export interface GrpcTestPeer {
  id: string;
  store: PeerStore;
  replicaStore: LevelReplicaStore;
  replica: Replica;
  service: ReplicationPeerService;
  server: grpc.Server;
  port: number;
  link: GrpcPeerLink;
  batcher: LinkBatcher;
  coordinator: Coordinator;
}

export interface ClusterOptions {
  link?: Partial<GrpcPeerLinkOptions>;
  writeDeadlineMs?: number;
  batchTimeoutMs?: number;
  /** Peers of the ring served elsewhere (a child process): id -> port on 127.0.0.1. */
  external?: ReadonlyMap<string, number>;
  /** Which authenticated peers each service admits (default: the cluster's ids). */
  admit?: (peerId: string) => string | null;
}

export class GrpcReplicaCluster {
  readonly peers = new Map<string, GrpcTestPeer>();
  readonly placement: RingPlacement;
  private readonly held = new Map<string, { release: () => void; gate: Promise<void> }>();
  private keySeq = 0;

  private constructor(
    readonly ids: readonly string[],
    private readonly options: ClusterOptions,
  ) {
    this.placement = placementFor(ids);
  }

  static async start(
    t: ExecutionContext,
    ids: readonly string[],
    options: ClusterOptions = {},
  ): Promise<GrpcReplicaCluster> {
    const c = new GrpcReplicaCluster(ids, options);
    t.teardown(() => c.close());
    for (const id of ids) {
      if (options.external?.has(id) === true) continue;
      const dir = await mkdtemp(join(tmpdir(), `lockbox-grpc-repl-${id}-`));
      t.teardown(() => rm(dir, { recursive: true, force: true }));
      await c.openPeer(id, dir);
    }
    for (const p of c.peers.values())
      for (const q of c.peers.values()) p.link.setPeerAddress(q.id, `127.0.0.1:${q.port}`);
    for (const p of c.peers.values())
      for (const [id, port] of options.external ?? []) p.link.setPeerAddress(id, `127.0.0.1:${port}`);
    return c;
  }

  private async openPeer(id: string, dir: string): Promise<void> {
    const store = await openPeerStore(dir);
    const replicaStore = new LevelReplicaStore(store, PART_POWER);
    const replica = new Replica({
      self: id,
      store: replicaStore,
      partitionOfKey: (k) => this.placement.partitionOfKey(k),
      partitions: this.placement.partitions,
      nowMs: () => Date.now(),
      reclaimAgeMs: 3_600_000,
      bucketBits: 4,
    });
    await replica.open();
    const tls = await peerTls(id);
    const service = new ReplicationPeerService({
      self: id,
      caCertificatePem: tls.caCertificatePem,
      replica: {
        handle: async (batch: ReplicaBatch) => {
          await this.held.get(id)?.gate;
          return replica.handle(batch);
        },
      },
      admitPeer: ({ peerId }) =>
        this.options.admit?.(peerId) ?? (this.ids.includes(peerId) ? null : `${peerId} is not a member`),
    });
    const { server, port } = await serve(service, id);
    const link = new GrpcPeerLink({ self: id, tls, ...this.options.link });
    const batcher = new LinkBatcher({
      self: id,
      link,
      scheduler: nodeScheduler,
      local: (batch) => replica.handleLocal(batch),
      batchTimeoutMs: this.options.batchTimeoutMs ?? 10_000,
    });
    const coordinator = new Coordinator({
      sender: batcher,
      placement: this.placement,
      scheduler: nodeScheduler,
      writeDeadlineMs: this.options.writeDeadlineMs ?? 10_000,
      readDeadlineMs: 10_000,
    });
    this.peers.set(id, {
      id,
      store,
      replicaStore,
      replica,
      service,
      server,
      port,
      link,
      batcher,
      coordinator,
    });
  }

  peer(id: string): GrpcTestPeer {
    const p = this.peers.get(id);
    if (p === undefined) throw new Error(`no peer ${id}`);
    return p;
  }

  /** Peer id's service waits before handing batches to its replica, until release(id). */
  hold(id: string): void {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    this.held.set(id, { release, gate });
  }

  release(id: string): void {
    this.held.get(id)?.release();
    this.held.delete(id);
  }

  /** Closes peer id's gRPC server at once (its calls end), as a crashed peer's would. */
  killServer(id: string): void {
    this.peer(id).server.forceShutdown();
  }

  /** Serves peer id's replica again on the same port. */
  async restartServer(id: string): Promise<void> {
    const p = this.peer(id);
    const { server } = await serve(p.service, id, p.port);
    p.server = server;
  }

  async recordOn(id: string, k: ReplicatedKey): Promise<Uint8Array | undefined> {
    return this.peer(id).replicaStore.getRecord(this.placement.partitionOfKey(k.fields.id), k.fields.id);
  }

  newKey(scope = "vol-1"): ReplicatedKey {
    const n = this.keySeq++;
    const random = new Uint8Array(16).map((_, i) => (n * 31 + i * 7 + (n >> 8)) & 0xff);
    const id = placedKeyId(scopeHash32(SALT, "proj", scope), random);
    const now = Date.now();
    const stamp: HlcStamp = { wallMs: now, logical: n, peer: "a" };
    return {
      fields: {
        id,
        project: "proj",
        scope,
        name: `k${n}`,
        algorithm: "AES",
        bitLength: 256,
        createdAtMs: now,
        parentId: "",
      },
      created: stamp,
      wrappedMaterial: new Uint8Array(32).fill((n % 250) + 1),
      state: { value: "active", stamp },
      tombstone: null,
      grants: [],
      consumers: [],
    };
  }

  async close(): Promise<void> {
    for (const id of [...this.held.keys()]) this.release(id);
    for (const p of this.peers.values()) {
      await p.link.close();
      p.server.forceShutdown();
      await p.store.close();
    }
  }
}

/** The ring every test peer (in process or child) places keys by: N = 3, one zone per peer. */
export function placementFor(ids: readonly string[]): RingPlacement {
  const b = RingBuilder.create({ partPower: PART_POWER, replicas: 3, minPartHours: 1 });
  ids.forEach((id, i) => b.addPeer({ id, zone: `z${i}`, weight: 100 }));
  b.rebalance(0);
  return new RingPlacement(b.ring(), SALT, () => true);
}

async function serve(
  service: ReplicationPeerService,
  id: string,
  port = 0,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadReplicationService().service, service.handlers());
  const credentials = await peerServerCredentials(id);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { server, port: bound };
}
