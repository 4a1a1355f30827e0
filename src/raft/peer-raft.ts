/**
 * The raft node inside a lockbox peer (DESIGN.md §3): the production RaftDriver, its storage on the
 * peer's LevelDB `raft` sublevel written through the store's group commit (one process, one database),
 * and its transport served as lockbox.v1.PeerService on the peer's own gRPC server, behind the peer's
 * mTLS (grpc-peer-transport.ts). `lockbox init` makes the peer a raft group of one (bootstrapPeerRaft);
 * a peer whose raft sublevel is empty (one that will join a cluster) starts with no configuration and
 * waits to be added.
 *
 * The group's state machine is the control state (src/controlplane), which supplies members and their
 * addresses (transport setPeerAddress / removePeer), admits peers (admitPeer), and serves forwarded
 * proposals (PeerService.Propose). Without one (tools and tests of the raft node alone) it holds nothing
 * (empty-control-state.ts).
 */
import { randomInt } from "node:crypto";
import { bootstrapSnapshot, type NodeId, type RaftConfig } from "../../cluster/raft/core/types.js";
import { RaftDriver } from "../../cluster/raft/driver/raft-driver.js";
import { IntervalTicker } from "../../cluster/raft/driver/ticker.js";
import type { StateMachine } from "../../cluster/raft/driver/state-machine.js";
import type { PeerDialOverrides } from "../net/peer-dial.js";
import type { PeerIdentity } from "../pki/peer-certificate-verifier.js";
import type { PeerStore } from "../store/peer-store.js";
import { EmptyControlState } from "./empty-control-state.js";
import {
  GrpcPeerTransport,
  SNAPSHOT_TIMEOUT_MS_DEFAULT,
  type PeerTlsMaterial,
  type PeerTransportCounters,
} from "./grpc-peer-transport.js";
import { LevelDbRaftStorage, type RaftStoreOp } from "./leveldb-raft-storage.js";
import { PEER_RAFT_LIMITS_DEFAULT, type PeerRaftLimits } from "./peer-raft-limits.js";
import { loadPeerProto } from "./peer-proto.js";
import type { PeerRefusal, PeerRefusalCode } from "../pki/peer-refusal.js";
import type * as grpc from "@grpc/grpc-js";

export interface PeerRaftOptions {
  /** This peer's id: its raft id, and the common name of its certificate. */
  peerId: NodeId;
  store: PeerStore;
  tls: PeerTlsMaterial;
  log: (line: string) => void;
  /** Called once if the driver stops on an error it cannot continue from (storage failure, broken core). */
  onFatal: (error: unknown) => void;
  tickMs?: number;
  /** Byte and lag bounds (config.json `raft`); each unset one takes its default. */
  limits?: Partial<PeerRaftLimits>;
  /** The replicated state machine (the control state); EmptyControlState when unset. */
  stateMachine?: StateMachine<unknown>;
  /** Which authenticated peers may call (GrpcPeerTransportOptions.admitPeer). */
  admitPeer?: (peer: PeerIdentity) => string | PeerRefusal | null;
  /** Another peer refused this one's call, with a structured refusal (GrpcPeerTransportOptions.onRefusedByPeer). */
  onRefusedByPeer?: (peer: NodeId, code: PeerRefusalCode, details: string) => void;
  /** Peers dialled at another address than their member address (config.json `peerDialOverrides`). */
  dialOverrides?: PeerDialOverrides;
  /** More PeerService methods, served beside Raft and Snapshot (the control plane's Propose). */
  extraHandlers?: (transport: GrpcPeerTransport) => grpc.UntypedServiceImplementation;
}

/** What `lockbox status` shows of the peer's raft node. */
export interface PeerRaftStatus {
  /** "leader", "follower", "candidate", "preCandidate", or "stopped". */
  role: string;
  term: number;
  /** "" when no leader is known. */
  leader: string;
  commit: number;
  applied: number;
  snapshotIndex: number;
  voters: string[];
  learners: string[];
}

export interface PeerRaft<R = unknown> {
  readonly driver: RaftDriver<R>;
  readonly transport: GrpcPeerTransport;
  /** lockbox.v1.PeerService, to register on the peer's gRPC server. */
  readonly service: { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation };
  status(): PeerRaftStatus;
  counters(): PeerTransportCounters;
  /** Stops the driver (nothing is written after this resolves) and the transport. Idempotent. */
  stop(): Promise<void>;
}

/** Timing and batching of the peer's raft group; an append batch fits in one peer message. */
const TICK_MS = 100;
const RAFT_CONFIG = {
  electionTicks: 10,
  heartbeatTicks: 1,
  inflightMax: 256,
  batchEntriesMax: 512,
  batchBytesMax: 32 * 1024,
  checkQuorum: true,
  preVote: true,
} as const;
const PROPOSAL_BYTES_MAX = 16 * 1024;

export async function startPeerRaft<R = unknown>(options: PeerRaftOptions): Promise<PeerRaft<R>> {
  const { peerId, store, log } = options;
  const transport = new GrpcPeerTransport({
    id: peerId,
    tls: options.tls,
    log,
    ...(options.admitPeer !== undefined ? { admitPeer: options.admitPeer } : {}),
    ...(options.onRefusedByPeer !== undefined ? { onRefusedByPeer: options.onRefusedByPeer } : {}),
    ...(options.dialOverrides !== undefined ? { dialOverrides: options.dialOverrides } : {}),
  });
  const tickMs = options.tickMs ?? TICK_MS;
  const config: RaftConfig = {
    id: peerId,
    ...RAFT_CONFIG,
    ...PEER_RAFT_LIMITS_DEFAULT,
    ...options.limits,
    // The transport reports how every snapshot send ends (reportSnapshot) and gives a transfer at most
    // SNAPSHOT_TIMEOUT_MS_DEFAULT: the core's own timeout is only a backstop, long enough for a whole
    // chunked transfer of a large control state.
    snapshotTimeoutTicks: Math.ceil(SNAPSHOT_TIMEOUT_MS_DEFAULT / tickMs) + RAFT_CONFIG.electionTicks,
    random: { nextInt: (max) => randomInt(max) },
  };
  let driver: RaftDriver<R>;
  let fatal = false;
  try {
    driver = await RaftDriver.start<R>({
      config,
      storage: peerRaftStorage(store),
      transport,
      stateMachine: (options.stateMachine ?? new EmptyControlState()) as StateMachine<R>,
      ticker: new IntervalTicker(tickMs),
      proposalBytesMax: PROPOSAL_BYTES_MAX,
      onFatal: (e) => {
        fatal = true;
        options.onFatal(e);
      },
      log,
    });
  } catch (e) {
    await transport.close();
    throw e;
  }
  let stopping: Promise<void> | undefined;
  return {
    driver,
    transport,
    service: {
      definition: loadPeerProto().PeerService.service,
      implementation: { ...transport.serviceHandlers(), ...options.extraHandlers?.(transport) },
    },
    status: () => {
      const s = driver.status();
      return {
        role: fatal ? "stopped" : s.role,
        term: s.term,
        leader: s.leader ?? "",
        commit: s.commit,
        applied: s.appliedIndex,
        snapshotIndex: s.snapshotIndex,
        voters: [...s.confState.voters],
        learners: [...s.confState.learners],
      };
    },
    counters: () => transport.counters(),
    stop() {
      stopping ??= (async () => {
        await driver.stop("peer closing");
        await transport.close();
      })();
      return stopping;
    },
  };
}

/**
 * Makes `peerId` the one voter of a new raft group in `store` (`lockbox init`). Refuses a store that
 * already holds raft state: a group is founded once, and a second founding would fork its history.
 */
export async function bootstrapPeerRaft(store: PeerStore, peerId: NodeId): Promise<void> {
  const storage = peerRaftStorage(store);
  const persisted = await storage.load();
  if (persisted.snapshot !== null || persisted.entries.length > 0 || persisted.hardState.term !== 0) {
    throw new RaftAlreadyFounded();
  }
  await storage.save({ snapshot: bootstrapSnapshot([peerId]), entries: [], hardState: null, sync: true });
}

export class RaftAlreadyFounded extends Error {
  override readonly name = "RaftAlreadyFounded";
  readonly code = "RAFT_ALREADY_FOUNDED";
  constructor() {
    super("this store already holds raft state: a raft group is founded once");
  }
}

/** Raft storage on the store's `raft` sublevel, writing through its group commit (always synced). */
export function peerRaftStorage(store: PeerStore): LevelDbRaftStorage {
  return new LevelDbRaftStorage(store.sublevel("raft"), {
    write: (ops: RaftStoreOp[]) => store.write(ops.map((op) => ({ ...op, sublevel: "raft" }))),
  });
}
