/**
 * The replication simulator: the production coordinator, replica, hinted handoff and anti-entropy
 * (src/replication) on five simulated peers (N = 3 over a ring of 8 partitions), driven by one seed:
 * virtual time (the raft simulator's SimScheduler), a network that drops, delays, reorders, duplicates
 * and cuts (sim-peer-network.ts), disks that lose unsynced batches on a crash, fail syncs and rot
 * records (sim-replica-disk.ts), crashes and restarts, clock skew. A client issues creates, reads,
 * deletes and consumer updates through the coordinator of a random live peer.
 *
 * Phases: faults for FAULT_MS; then every peer is restarted, the network healed and the disks made
 * reliable, and the cluster runs QUIET_MS (the stated convergence bound) before the final checks.
 * Checkers (replication-checker.ts) run online on every read and every dropped hint, and at the end.
 */
import type { ReplicaStoreOp } from "../../../src/replication/replica-store.js";
import { RingBuilder } from "../../../cluster/ring/index.js";
import { placedKeyId, scopeHash32 } from "../../../cluster/ring/index.js";
import { HybridClock, type ReplicatedKey } from "../../../cluster/replication/index.js";
import { AntiEntropy } from "../../../src/replication/anti-entropy.js";
import { Coordinator } from "../../../src/replication/coordinator.js";
import { HandoffRunner } from "../../../src/replication/hinted-handoff.js";
import { LinkBatcher } from "../../../src/replication/link-batcher.js";
import { RingPlacement } from "../../../src/replication/placement-view.js";
import { Replica } from "../../../src/replication/replica.js";
import type { ReplicationBugs } from "../../../src/replication/replication-bugs.js";
import { Prng } from "../prng.js";
import { SimProcess } from "../sim-scheduler.js";
import { ReplicationChecker, type Violation } from "./replication-checker.js";
import { SimReplicaDisk, SimReplicaStore, type DiskFaults } from "./sim-replica-disk.js";
import { SimLoop } from "./sim-loop.js";
import { SimPeerNetwork, type NetFaults } from "./sim-peer-network.js";

export const PEERS = ["p1", "p2", "p3", "p4", "p5"] as const;
export const PART_POWER = 3;
export const REPLICAS = 3;
export const FAULT_MS = 7_000;
/** The convergence bound the checker holds the code to: faults stopped, every peer up. */
export const QUIET_MS = 4_000;
const FINAL_READS_MS = 3_000;
/** Longest single outage (crash or cut); reclaim age exceeds two of them plus the convergence bound. */
const OUTAGE_MS_MAX = 1_200;
export const RECLAIM_AGE_MS = 6_000;
/** Handoff copies not written for this long are dropped undelivered (hinted-handoff.ts). */
export const HINT_MAX_AGE_MS = 3_000;
const AE_INTERVAL_MS = 1_000;
const HANDOFF_INTERVAL_MS = 500;
const BATCH_TIMEOUT_MS = 300;
const DEADLINE_MS = 1_000;
/** How late the cluster learns that a peer crashed or came back. */
const HEALTH_LAG_MS_MAX = 400;
const BUCKET_BITS = 4;
const SALT = new Uint8Array([7, 7, 7, 7]);

export interface SimOptions {
  seed: number;
  bugs?: ReplicationBugs;
  trace?: boolean;
}

export interface SimStats {
  creates: number;
  createsAcked: number;
  deletesAcked: number;
  reads: number;
  readsOk: number;
  crashes: number;
  cuts: number;
  corruptions: number;
  quarantines: number;
  handoffCopies: number;
  hintsDelivered: number;
  reclaimed: number;
  messages: number;
  dropped: number;
  /** Steps of the simulation loop (each drains the microtasks once). */
  steps: number;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  violation?: Violation;
  plan: string;
  stats: SimStats;
  trace: string[];
}

interface Plan {
  net: NetFaults;
  disk: DiskFaults;
  crashes: number;
  cuts: number;
  corrupt: boolean;
  skewMsMax: number;
  opGapMsMax: number;
}

function drawPlan(prng: Prng): Plan {
  return {
    net: {
      dropRate: prng.pick([0, 0, 0.01, 0.05, 0.15]),
      duplicateRate: prng.pick([0, 0.02, 0.1]),
      delayMsMin: 1,
      delayMsMax: prng.pick([5, 20, 80]),
    },
    disk: {
      syncDelayMsMin: 1,
      syncDelayMsMax: prng.pick([2, 10, 30]),
      eioRate: prng.pick([0, 0, 0.01, 0.05]),
    },
    crashes: prng.range(0, 6),
    cuts: prng.range(0, 6),
    corrupt: prng.chance(0.4),
    skewMsMax: prng.pick([0, 50, 200]),
    opGapMsMax: prng.pick([150, 300, 600]),
  };
}

class SimPeer {
  proc!: SimProcess;
  replica!: Replica;
  coordinator!: Coordinator;
  handoff!: HandoffRunner;
  antiEntropy!: AntiEntropy;
  clock!: HybridClock;
  ready = false;
  incarnation = 0;
  constructor(
    readonly id: string,
    readonly disk: SimReplicaDisk,
    readonly skewMs: number,
  ) {}
}

export async function runReplicationSeed(options: SimOptions): Promise<SimResult> {
  const prng = new Prng(options.seed);
  const plan = drawPlan(prng.fork());
  const trace: string[] = [];
  const loop = new SimLoop();
  const log = (m: string): void => {
    if (options.trace) trace.push(`${String(loop.nowMs).padStart(6)} ${m}`);
  };

  const builder = RingBuilder.create({ partPower: PART_POWER, replicas: REPLICAS, minPartHours: 1 });
  PEERS.forEach((id, i) => builder.addPeer({ id, zone: `z${i}`, weight: 100 }));
  builder.rebalance(0);
  const ring = builder.ring();
  const peers = new Map<string, SimPeer>();
  // Peer health as the cluster believes it: it learns of a crash or a return only after a drawn lag,
  // so coordinators send to peers already dead and skip peers already back.
  const believedUp = new Set<string>(PEERS);
  const placement = new RingPlacement(ring, SALT, (p) => believedUp.has(p));
  const healthPrng = prng.fork();
  const healthProc = new SimProcess("health");
  const health = loop.for(healthProc);
  const learn = (p: SimPeer, up: boolean): void => {
    const incarnation = p.incarnation;
    health.after(healthPrng.range(0, HEALTH_LAG_MS_MAX), () => {
      if (p.incarnation !== incarnation || p.ready !== up) return;
      if (up) believedUp.add(p.id);
      else believedUp.delete(p.id);
    });
  };

  const checker = new ReplicationChecker(
    placement,
    RECLAIM_AGE_MS,
    HINT_MAX_AGE_MS,
    () => loop.nowMs,
    (p) => peers.get(p)!.disk,
  );
  const netProc = new SimProcess("net");
  const net = new SimPeerNetwork(loop, prng.fork(), { ...plan.net }, netProc);
  const diskFaults = { ...plan.disk };
  const stats: SimStats = {
    creates: 0,
    createsAcked: 0,
    deletesAcked: 0,
    reads: 0,
    readsOk: 0,
    crashes: 0,
    cuts: 0,
    corruptions: 0,
    quarantines: 0,
    handoffCopies: 0,
    hintsDelivered: 0,
    reclaimed: 0,
    messages: 0,
    dropped: 0,
    steps: 0,
  };
  const diskPrng = prng.fork();
  const skewPrng = prng.fork();
  for (const id of PEERS) {
    const observe = (
      peer: string,
      ops: readonly ReplicaStoreOp[],
      before: ReadonlyMap<string, Uint8Array>,
    ): void => checker.onBatch(peer, ops, before);
    peers.set(id, new SimPeer(id, new SimReplicaDisk(id, observe), skewPrng.range(0, plan.skewMsMax)));
  }

  const gather = (p: SimPeer): void => {
    if (p.replica === undefined) return;
    stats.quarantines += p.replica.metrics.quarantines;
    stats.handoffCopies += p.coordinator.metrics.handoffCopies;
    stats.hintsDelivered += p.handoff.metrics.delivered;
    stats.reclaimed += p.replica.metrics.reclaimed;
  };

  const start = (p: SimPeer): void => {
    p.incarnation += 1;
    const proc = new SimProcess(`${p.id}#${p.incarnation}`);
    p.proc = proc;
    p.ready = false;
    const scheduler = loop.for(proc);
    const nowMs = (): number => loop.nowMs + p.skewMs;
    const store = new SimReplicaStore(p.disk, proc, scheduler, diskPrng.fork(), diskFaults);
    p.replica = new Replica({
      self: p.id,
      store,
      partitionOfKey: (id) => placement.partitionOfKey(id),
      partitions: placement.partitions,
      nowMs,
      reclaimAgeMs: RECLAIM_AGE_MS,
      bucketBits: BUCKET_BITS,
    });
    const replica = p.replica;
    const sender = new LinkBatcher({
      self: p.id,
      link: net.linkFor(p.id, proc),
      scheduler,
      local: (b) => replica.handleLocal(b),
      batchTimeoutMs: BATCH_TIMEOUT_MS,
    });
    p.coordinator = new Coordinator({
      sender,
      placement,
      scheduler,
      writeDeadlineMs: DEADLINE_MS,
      readDeadlineMs: DEADLINE_MS,
      bugs: options.bugs,
    });
    p.handoff = new HandoffRunner({
      nowMs,
      hintMaxAgeMs: HINT_MAX_AGE_MS,
      replica,
      store,
      placement,
      sender,
      scheduler,
      intervalMs: HANDOFF_INTERVAL_MS,
      bugs: options.bugs,
    });
    p.antiEntropy = new AntiEntropy({ replica, placement, sender, scheduler, intervalMs: AE_INTERVAL_MS });
    p.clock = new HybridClock({ peer: p.id, physicalNowMs: nowMs });
    void replica.open().then(() => {
      if (!proc.alive) return;
      net.attach(p.id, { proc, handle: (b) => replica.handle(b) });
      p.handoff.start();
      p.antiEntropy.start();
      p.ready = true;
      learn(p, true);
      log(`${p.id} up (incarnation ${p.incarnation})`);
    });
  };

  const crash = (p: SimPeer): void => {
    if (!p.proc.alive) return;
    gather(p);
    p.proc.alive = false;
    p.ready = false;
    learn(p, false);
    stats.crashes++;
    log(`${p.id} crashes`);
  };

  for (const p of peers.values()) start(p);

  // ---- the fault schedule, drawn up front
  const faultPrng = prng.fork();
  const faultProc = new SimProcess("faults");
  const faults = loop.for(faultProc);
  const victim = faultPrng.pick(PEERS); // the one peer whose disk may rot: W - 1 holders may lose a copy
  for (let i = 0; i < plan.crashes; i++) {
    const at = faultPrng.range(200, FAULT_MS - OUTAGE_MS_MAX);
    const who = peers.get(faultPrng.pick(PEERS))!;
    const downMs = faultPrng.range(50, OUTAGE_MS_MAX);
    const rot = plan.corrupt && who.id === victim;
    const rotPrng = faultPrng.fork();
    faults.after(at, () => {
      if (!who.proc.alive) return;
      crash(who);
      if (rot) {
        const k = who.disk.corrupt(rotPrng);
        if (k !== null) {
          stats.corruptions++;
          log(`${who.id} disk rots ${k}`);
        }
      }
      faults.after(downMs, () => {
        if (!who.proc.alive) start(who);
      });
    });
  }
  for (let i = 0; i < plan.cuts; i++) {
    const at = faultPrng.range(200, FAULT_MS - OUTAGE_MS_MAX);
    const a = faultPrng.pick(PEERS);
    const others = PEERS.filter((x) => x !== a);
    const isolate = faultPrng.chance(0.5);
    const bs = isolate ? others : [faultPrng.pick(others)];
    const forMs = faultPrng.range(50, OUTAGE_MS_MAX);
    faults.after(at, () => {
      stats.cuts++;
      log(`cut ${a} from ${bs.join(",")}`);
      for (const b of bs) net.cut(a, b);
      faults.after(forMs, () => {
        for (const b of bs) net.heal(a, b);
      });
    });
  }

  // ---- the client
  const clientPrng = prng.fork();
  const clientProc = new SimProcess("client");
  const client = loop.for(clientProc);
  let keySeq = 0;
  const keys: string[] = [];
  const liveCoordinator = (): SimPeer | undefined => {
    const up = PEERS.map((id) => peers.get(id)!).filter((p) => p.ready);
    return up.length === 0 ? undefined : clientPrng.pick(up);
  };
  const checkedRead = async (p: SimPeer, id: string): Promise<ReplicatedKey | null | undefined> => {
    const startedMs = loop.nowMs;
    stats.reads++;
    try {
      const r = await p.coordinator.read(id);
      stats.readsOk++;
      checker.onRead(id, startedMs, r, `read at ${p.id}`);
      return r;
    } catch {
      return undefined;
    }
  };
  const op = (): void => {
    if (loop.nowMs >= FAULT_MS) return;
    client.after(clientPrng.range(5, plan.opGapMsMax), op);
    const p = liveCoordinator();
    if (p === undefined) return;
    const dice = clientPrng.nextInt(100);
    if (dice < 40 || keys.length === 0) {
      const project = clientPrng.pick(["pa", "pb"]);
      const scope = `vol-${clientPrng.nextInt(8)}`;
      const random = new Uint8Array(16);
      for (let i = 0; i < 16; i++) random[i] = clientPrng.nextInt(256);
      const id = placedKeyId(scopeHash32(SALT, project, scope), random);
      const material = new Uint8Array(32);
      for (let i = 0; i < 32; i++) material[i] = clientPrng.nextInt(256);
      material[0] = keySeq & 0xff;
      material[1] = keySeq >> 8;
      const stamp = p.clock.now();
      const record: ReplicatedKey = {
        fields: {
          id,
          project,
          scope,
          name: `k${keySeq++}`,
          algorithm: "AES",
          bitLength: 256,
          createdAtMs: stamp.wallMs,
          parentId: "",
        },
        created: stamp,
        wrappedMaterial: material,
        state: { value: "active", stamp },
        tombstone: null,
        grants: [],
        consumers: [],
      };
      keys.push(id);
      checker.onCreateStart(id, material);
      stats.creates++;
      p.coordinator.write(record).then(
        () => {
          stats.createsAcked++;
          checker.onCreateAck(id, loop.nowMs);
          log(`create ${id} acked at ${p.id}`);
        },
        () => log(`create ${id} failed at ${p.id}`),
      );
    } else if (dice < 75) {
      void checkedRead(p, clientPrng.pick(keys));
    } else if (dice < 87) {
      const id = clientPrng.pick(keys);
      checker.onDeleteStart(id, loop.nowMs);
      void checkedRead(p, id).then((r) => {
        if (r === undefined || r === null || !p.ready) return;
        const deleted: ReplicatedKey = { ...r, wrappedMaterial: null, tombstone: p.clock.now() };
        return p.coordinator.write(deleted).then(
          () => {
            stats.deletesAcked++;
            checker.onDeleteAck(id, loop.nowMs);
            log(`delete ${id} acked at ${p.id}`);
          },
          () => undefined,
        );
      });
    } else {
      const id = clientPrng.pick(keys);
      const consumer = `c${clientPrng.nextInt(4)}`;
      void checkedRead(p, id).then((r) => {
        if (r === undefined || r === null || r.tombstone !== null || !p.ready) return;
        const rest = r.consumers.filter((c) => c.key !== consumer);
        const consumers = [
          ...rest,
          { key: consumer, present: clientPrng.chance(0.7), stamp: p.clock.now() },
        ].sort((a, b) => (a.key < b.key ? -1 : 1));
        return p.coordinator.write({ ...r, consumers }).then(
          () => undefined,
          () => undefined,
        );
      });
    }
  };
  client.after(10, op);

  const finish = (violation: Violation | undefined): SimResult => {
    for (const p of peers.values()) if (p.proc.alive) gather(p);
    stats.messages = net.sent;
    stats.steps = loop.steps;
    stats.dropped = net.dropped;
    const planText = `drop ${plan.net.dropRate} dup ${plan.net.duplicateRate} delay<=${plan.net.delayMsMax} crashes ${plan.crashes} cuts ${plan.cuts} rot ${plan.corrupt} eio ${plan.disk.eioRate} skew<=${plan.skewMsMax}`;
    return { seed: options.seed, ok: violation === undefined, violation, plan: planText, stats, trace };
  };

  // ---- phase 1: faults
  await loop.runUntil(FAULT_MS);
  if (checker.violation) return finish(checker.violation);
  // ---- phase 2: faults stop; the cluster must converge within QUIET_MS
  log("faults stop");
  net.healAll();
  net.faults = { dropRate: 0, duplicateRate: 0, delayMsMin: 1, delayMsMax: 5 };
  diskFaults.eioRate = 0;
  for (const p of peers.values()) if (!p.proc.alive) start(p);
  await loop.runUntil(FAULT_MS + QUIET_MS);
  if (checker.violation) return finish(checker.violation);
  const converged = checker.checkConverged(PEERS);
  if (converged !== undefined) return finish(converged);
  // ---- phase 3: every acknowledged create readable (through two peers each); every acknowledged delete stays
  const finals: Promise<unknown>[] = [];
  const finalPrng = prng.fork();
  for (const id of keys) {
    // Through two different peers per key (every peer over the run): enough to find a peer that
    // answers from a stale view, at a fraction of the cost of all five.
    const first = finalPrng.nextInt(PEERS.length);
    const through = [first, (first + 1 + finalPrng.nextInt(PEERS.length - 1)) % PEERS.length].map((i) =>
      peers.get(PEERS[i]!)!,
    );
    for (const p of through) {
      finals.push(
        p.coordinator.read(id).then(
          (r) => checker.onFinalRead(id, r, p.id),
          () => checker.onFinalReadFailed(id, p.id),
        ),
      );
    }
  }
  await loop.runUntil(FAULT_MS + QUIET_MS + FINAL_READS_MS);
  if (checker.violation === undefined && checker.finalReads !== finals.length)
    checker.violation = {
      checker: "final-reads",
      detail: `${finals.length - checker.finalReads} of ${finals.length} final reads did not finish`,
    };
  return finish(checker.violation);
}
