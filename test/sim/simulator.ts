/**
 * The deterministic simulator (TigerBeetle VOPR style): N PRODUCTION RaftDrivers (cluster/raft/driver) over
 * virtual time (SimScheduler), simulated disks holding the production storage records (SimRaftDisk), and
 * an in-memory network (SimNetwork) whose every message goes through the production wire codec; every
 * choice is drawn from ONE seeded Prng, so `--seed N` replays a run exactly. A run has two phases:
 *  1. faults (faultTicks): drops, duplicates, delays/reordering, symmetric, one-way, flapping and long
 *     one-way partitions; crashes (random, of the leader, just before or after a write, after a hard-state
 *     change left, between a snapshot's write and the state machine's restore) that keep the durable
 *     records plus a random prefix of the unsynced ones, sometimes with a flipped bit; EIO and ENOSPC on
 *     write (the driver stops; the node restarts later); process pauses (a paused leader resumes with stale
 *     state); per-node tick skew; membership changes (add learner, promote, remove a voter including the
 *     leader; a removed node may stay up and keep sending; a node may return with a wiped disk under a new
 *     id); leadership transfers; client writes and ReadIndex reads through the driver's API; compaction;
 *  2. liveness: faults stop, the network heals, crashed nodes restart; a leader must be elected and a write
 *     committed within LIVENESS_TICKS_MAX ticks, and every member must apply it within CONVERGENCE_TICKS_MAX.
 * Checkers (safety-checker.ts, sim-raft-disk.ts, linearizability.ts): election safety, log matching,
 * leader completeness, state machine safety, durable term/vote monotonic, committed entries durable on a
 * quorum, snapshot content, one uncommitted membership change, acknowledged writes applied, corruption
 * detected, linearizable reads and writes (an inconclusive search fails the seed); core asserts too.
 */
import {
  ConfChangeType,
  MessageType,
  RaftError,
  RaftInvariantError,
  type ConfChange,
  type ConfState,
  type Message,
  type RaftBugs,
  type SoftState,
} from "../../cluster/raft/core/index.js";
import { Busy, InvalidArgument, NotLeader, RaftDriver, Rejected } from "../../cluster/raft/driver/index.js";
import type { PeerTransport, SnapshotOutcome } from "../../cluster/raft/driver/peer-transport.js";
import type { RaftStorageUpdate } from "../../cluster/raft/driver/raft-storage.js";
import { RaftStorageCorrupt } from "../../cluster/raft/driver/raft-records.js";
import type { StateMachine } from "../../cluster/raft/driver/state-machine.js";
import type { Ticker } from "../../cluster/raft/driver/ticker.js";
import { decodeMessage, encodeMessage, WireMessageInvalid } from "../../src/raft/raft-wire-codec.js";
import { checkRegisterHistory, type RegisterOp } from "./linearizability.js";
import { Prng } from "./prng.js";
import { ELECTION_TICKS, drawPlan, type FaultPlan } from "./profiles.js";
import { SafetyChecker, SimViolation } from "./safety-checker.js";
import { SimRaftDisk, SimStorageFault, type WriteFault } from "./sim-raft-disk.js";
import { SimNetwork } from "./sim-network.js";
import { SimProcess, SimScheduler } from "./sim-scheduler.js";
import { TraceHash } from "./trace-hash.js";

/** After faults stop, a leader must be elected and a write committed within this many ticks. */
export const LIVENESS_TICKS_MAX = 30 * ELECTION_TICKS;
/** ...and then every live member must have applied it within this many more, plus 2 per entry it lags. */
export const CONVERGENCE_TICKS_MAX = 20 * ELECTION_TICKS;
/** Virtual milliseconds per tick (client deadlines are in ms, raft timeouts in ticks). */
const TICK_MS = 100;
const PROPOSE_TIMEOUT_MS = 40 * TICK_MS;
const READ_TIMEOUT_MS = 30 * TICK_MS;
const READ_RETRY_MS = 3 * TICK_MS;
/** Node ids that may ever exist in one run (founders plus learners added later). */
const NODE_IDS_MAX = 12;
/** Bound on the linearizability search per key; past it the seed FAILS ("linearizability-unknown"). */
const LINEARIZABILITY_STEPS_MAX = 5_000_000;
const KEYS = ["a", "b", "c", "d", "e"];
const WRITES_OUTSTANDING_MAX = 4;
/** Delivery rounds per tick (messages sent with zero delay arrive in the same tick). */
const DELIVERY_ROUNDS_MAX = 8;

export interface SimOptions {
  seed: number;
  profile?: string;
  bugs?: RaftBugs;
  /** Keep the full event trace (for printing); the hash is always computed. */
  keepTrace?: boolean;
}

export interface SimResult {
  seed: number;
  profile: string;
  ok: boolean;
  violation: { checker: string; detail: string } | null;
  traceHash: string;
  trace: string[] | null;
  ticks: number;
  stats: {
    writesAcked: number;
    writesUnknown: number;
    readsDone: number;
    leaders: number;
    crashes: number;
    storageFaults: number;
    corruptionsDetected: number;
    unsyncedLost: number;
    pauses: number;
    confChanges: number;
    snapshotsSent: number;
    messages: number;
    dropped: number;
    linearizability: "ok" | "unknown";
  };
}

/** Thrown out of a driver's IO (disk, transport, state machine) to kill its process right there. */
class SimCrash extends Error {
  constructor(readonly why: string) {
    super(`simulated crash: ${why}`);
  }
}

type NodeState = "up" | "down" | "removed" | "lost";

class SimNode {
  state: NodeState = "down";
  driver: RaftDriver<string> | null = null;
  proc: SimProcess | null = null;
  sm: SimKv | null = null;
  transport: SimTransport | null = null;
  ticker: SimTicker | null = null;
  /** Removed from the configuration but left running (it keeps sending). */
  removedAlive = false;
  pausedUntil = 0;
  held: Message[] = [];
  tickRate = 1;
  tickAcc = 0;
  /** The last crash flipped a bit on this disk: the next start must refuse it. */
  flipped: string | null = null;
  /** Crash once the current Ready's messages have left (after a hard-state change). */
  crashAfterSend = false;
  outstanding = { writes: 0, reads: 0 };
  /** Role and term as of the last soft-state change this incarnation reported (cheap to poll). */
  role: SoftState["role"] = "follower";
  roleTerm = 0;
  constructor(
    readonly id: string,
    readonly disk: SimRaftDisk,
    readonly founder: boolean,
  ) {}
}

class SimTicker implements Ticker {
  private cb: (() => void) | null = null;
  start(onTick: () => void): void {
    this.cb = onTick;
  }
  stop(): void {
    this.cb = null;
  }
  fire(): void {
    this.cb?.();
  }
}

class SimTransport implements PeerTransport {
  private onMessage: ((m: Message) => void) | null = null;
  private onSnapshotSent: ((to: string, outcome: SnapshotOutcome) => void) | null = null;
  constructor(private readonly out: (messages: Message[]) => void) {}
  start(
    onMessage: (message: Message) => void,
    onSnapshotSent?: (to: string, outcome: SnapshotOutcome) => void,
  ): void {
    this.onMessage = onMessage;
    this.onSnapshotSent = onSnapshotSent ?? null;
  }
  send(messages: Message[]): void {
    this.out(messages);
  }
  deliver(m: Message): void {
    this.onMessage?.(m);
  }
  /** How a snapshot this node sent ended (reportSnapshot): delivered, or its peer was down. */
  snapshotSent(to: string, outcome: SnapshotOutcome): void {
    this.onSnapshotSent?.(to, outcome);
  }
  setPeerAddress(): void {}
  removePeer(): void {}
  async close(): Promise<void> {}
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The simulated application: a key-value register map; snapshots carry their log index. */
class SimKv implements StateMachine<string> {
  kv = new Map<string, string>();
  constructor(
    private readonly sim: Simulation,
    private readonly node: SimNode,
  ) {}
  apply(data: Uint8Array, index: number): string {
    const text = dec.decode(data);
    const eq = text.indexOf("=");
    this.kv.set(text.slice(0, eq), text.slice(eq + 1));
    this.sim.onApplied(this.node, index, text);
    return text;
  }
  snapshot(): Uint8Array {
    const index = this.node.driver!.appliedIndex;
    return enc.encode(JSON.stringify({ index, kv: [...this.kv.entries()].sort() }));
  }
  restore(bytes: Uint8Array): void {
    const img = parseImage(bytes);
    this.sim.onRestore(this.node, img.index, img.kv);
    this.kv = new Map(img.kv);
  }
  checkSnapshot(bytes: Uint8Array, index: number): void {
    const img = parseImage(bytes);
    if (img.index !== index) throw new Error(`image of ${img.index} offered as ${index}`);
  }
}

function parseImage(bytes: Uint8Array): { index: number; kv: [string, string][] } {
  return JSON.parse(dec.decode(bytes)) as { index: number; kv: [string, string][] };
}

/** One deterministic run: production drivers on simulated peers, faults from the seed, then the checks. */
export class Simulation {
  readonly plan: FaultPlan;
  private readonly rng: Prng;
  private readonly net: SimNetwork;
  private readonly sched = new SimScheduler();
  private readonly nodes = new Map<string, SimNode>();
  private readonly founders: string[];
  private readonly safety: SafetyChecker;
  private readonly trace: TraceHash;
  private readonly history: RegisterOp[] = [];
  /** Writes known never to take effect (refused, or overwritten by another leader). */
  private readonly voided = new Set<RegisterOp>();
  private tickNow = 0;
  /** Logical time for the linearizability history: bumped at every invocation and response. */
  private clock = 0;
  private nextValue = 0;
  private nextNodeId: number;
  private crashes = 0;
  private storageFaults = 0;
  private corruptionsDetected = 0;
  private unsyncedLost = 0;
  private pauses = 0;
  private confChanges = 0;
  private snapshotsSent = 0;
  private readsDone = 0;
  private isolateAt: { tick: number; id: string }[] = [];
  /** Logical time at which each written value was first applied anywhere (it took effect by then). */
  private readonly firstApplied = new Map<string, number>();
  /** A violation raised inside a driver's callback, rethrown at the next step of the simulation. */
  private pendingViolation: SimViolation | null = null;
  /** Processes to stop once the loop that decided it has finished its round. */
  private toStop: { node: SimNode; why: string }[] = [];
  private linearizabilityOutcome: "ok" | "unknown" = "ok";
  /** Client calls whose promise has not settled (their continuations need a microtask flush). */
  private get clientCalls(): number {
    let calls = 0;
    for (const n of this.nodes.values())
      if (n.state === "up") calls += n.outstanding.writes + n.outstanding.reads;
    return calls;
  }
  /** False once the liveness phase starts: no more faults of any kind. */
  private faultsOn = true;

  constructor(private readonly opts: SimOptions) {
    this.rng = new Prng(opts.seed);
    this.plan = drawPlan(this.rng, opts.profile ?? "mixed");
    this.trace = new TraceHash(opts.keepTrace === true);
    this.net = new SimNetwork(this.rng.fork(), {
      dropRate: this.plan.dropRate,
      duplicateRate: this.plan.duplicateRate,
      delayTicksMin: 0,
      delayTicksMax: this.plan.delayTicksMax,
    });
    this.net.hook((m) => {
      if (m.snapshot !== null) this.snapshotsSent++;
      return true;
    });
    this.founders = Array.from({ length: this.plan.voters }, (_, i) => `n${i + 1}`);
    this.safety = new SafetyChecker(this.founders);
    this.nextNodeId = this.founders.length + 1;
    this.trace.add(`plan ${JSON.stringify(this.plan)}`);
  }

  async run(): Promise<SimResult> {
    let violation: SimResult["violation"] = null;
    try {
      for (const id of this.founders) await this.startNode(this.newNode(id, true));
      await this.faultPhase();
      await this.livenessPhase();
      this.finalChecks();
    } catch (e) {
      const v = this.pendingViolation ?? e;
      if (v instanceof SimViolation) violation = { checker: v.checker, detail: v.message };
      else if (v instanceof RaftInvariantError) violation = { checker: "core-invariant", detail: v.message };
      else if (v instanceof RaftError) violation = { checker: `core-error-${v.code}`, detail: v.message };
      else throw e;
    } finally {
      for (const n of this.nodes.values()) if (n.proc !== null) n.proc.alive = false;
    }
    const writes = this.history.filter((o) => o.kind === "write" && !this.voided.has(o));
    return {
      seed: this.opts.seed,
      profile: this.plan.profile,
      ok: violation === null,
      violation,
      traceHash: this.trace.digest(),
      trace: this.trace.lines,
      ticks: this.tickNow,
      stats: {
        writesAcked: writes.filter((o) => o.respondedAt !== Infinity).length,
        writesUnknown: writes.filter((o) => o.respondedAt === Infinity).length,
        readsDone: this.readsDone,
        leaders: this.safety.leaderCount(),
        crashes: this.crashes,
        storageFaults: this.storageFaults,
        corruptionsDetected: this.corruptionsDetected,
        unsyncedLost: this.unsyncedLost,
        pauses: this.pauses,
        confChanges: this.confChanges,
        snapshotsSent: this.snapshotsSent,
        messages: this.net.sent,
        dropped: this.net.dropped,
        linearizability: this.linearizabilityOutcome,
      },
    };
  }

  // ------------------------------------------------------------------ phases

  private async faultPhase(): Promise<void> {
    const p = this.plan;
    for (let t = 0; t < p.faultTicks; t++) {
      await this.tick();
      const r = this.rng;
      for (const iso of this.isolateAt.filter((x) => x.tick <= this.tickNow)) {
        this.net.isolate(iso.id, [...this.nodes.keys()]);
        this.trace.add(`isolate-leader ${iso.id}`);
      }
      this.isolateAt = this.isolateAt.filter((x) => x.tick > this.tickNow);
      if (r.chance(p.crashRate)) this.crashRandom();
      if (r.chance(p.leaderCrashRate)) {
        const leader = this.leader();
        if (leader !== undefined) this.crash(leader, "leader");
      }
      if (r.chance(p.restartRate)) await this.restartRandom();
      if (r.chance(p.partitionRate)) this.partitionRandom();
      if (r.chance(p.longCutRate)) this.longCut();
      if (r.chance(p.healRate)) {
        this.net.heal();
        this.trace.add("heal");
      }
      if (r.chance(p.pauseRate)) this.pauseRandom();
      if (r.chance(p.wipeRate)) await this.wipeRandom();
      if (r.chance(p.proposeRate)) this.clientWrite();
      if (r.chance(p.readRate)) this.clientRead();
      if (r.chance(p.confChangeRate)) await this.membershipChange();
      if (r.chance(p.transferRate)) this.transfer();
      await this.settle();
      if (t % 50 === 49) this.checkLogs();
    }
  }

  private async livenessPhase(): Promise<void> {
    this.trace.add("liveness");
    this.faultsOn = false;
    this.net.healAll();
    this.net.faults = { dropRate: 0, duplicateRate: 0, delayTicksMin: 0, delayTicksMax: 1 };
    for (const n of this.nodes.values()) {
      n.crashAfterSend = false;
      if (n.proc?.paused) this.resume(n);
      // The operator finally shuts down removed nodes that were left running.
      if (n.removedAlive && n.state === "up") this.stop(n, "removed-shutdown", "removed");
    }
    for (const n of [...this.nodes.values()]) if (n.state === "down") await this.restart(n);
    // A leader is elected and a write commits (any of the writes tried, one per election timeout).
    const tried: RegisterOp[] = [];
    const deadline0 = this.tickNow + LIVENESS_TICKS_MAX;
    while (!tried.some((op) => op.respondedAt !== Infinity)) {
      if (this.tickNow >= deadline0) {
        throw new SimViolation(
          "liveness",
          `no leader elected and write committed within ${LIVENESS_TICKS_MAX} ticks of faults stopping; ${this.describeNodes()}`,
        );
      }
      await this.tick();
      if (tried.length === 0 || this.tickNow % ELECTION_TICKS === 0) {
        const op = this.clientWrite(true);
        if (op !== null) tried.push(op);
        await this.settle();
      }
    }
    // Every member that still has its disk applies everything up to that write.
    const target = this.leader()?.driver?.status().commit ?? 0;
    // Catching up costs at most two ticks per entry (one entry per append, round trip <= 2 ticks).
    const behind = Math.max(
      0,
      ...[...this.nodes.values()]
        .filter((n) => n.driver !== null)
        .map((n) => target - n.driver!.appliedIndex),
    );
    const deadline = this.tickNow + CONVERGENCE_TICKS_MAX + 2 * behind;
    for (;;) {
      const leader = this.leader();
      const members = leader?.driver?.status().confState;
      const lagging =
        members === undefined
          ? ["(no leader)"]
          : [...members.voters, ...members.learners].filter((id) => {
              const n = this.nodes.get(id);
              if (n?.state === "lost") return false; // its disk is gone: the operator replaces it
              return n === undefined || (n.driver?.appliedIndex ?? 0) < target;
            });
      if (lagging.length === 0) break;
      if (this.tickNow >= deadline) {
        throw new SimViolation(
          "liveness",
          `members ${lagging.join(",")} did not apply ${target} within bound; ${this.describeNodes()}`,
        );
      }
      await this.tick();
    }
  }

  private finalChecks(): void {
    this.checkLogs();
    const history = this.history.filter((o) => !this.voided.has(o));
    this.safety.checkAckedWritesApplied(history);
    // A write whose ack was lost took effect by the time anyone applied it, or (never applied after the
    // cluster converged) not at all: bound it accordingly, which keeps the search small.
    const bounded: RegisterOp[] = [];
    for (const op of history) {
      if (op.kind !== "write" || op.respondedAt !== Infinity) {
        bounded.push(op);
        continue;
      }
      const at = this.firstApplied.get(`${op.key}=${op.value}`);
      if (at !== undefined) bounded.push({ ...op, respondedAt: Math.max(at, op.invokedAt + 0.5) });
    }
    const lin = checkRegisterHistory(bounded, LINEARIZABILITY_STEPS_MAX);
    if (lin.outcome === "violation") {
      const shown = lin.ops
        .slice(0, 24)
        .map((o) => `${o.kind}(${o.value})@[${o.invokedAt},${o.respondedAt}]`);
      const ops = shown.join(" ") + (lin.ops.length > shown.length ? ` … (${lin.ops.length} ops)` : "");
      throw new SimViolation("linearizability", `key ${lin.key}: no linearization of ${ops}`);
    }
    this.linearizabilityOutcome = lin.outcome;
    if (lin.outcome === "unknown") {
      throw new SimViolation(
        "linearizability-unknown",
        `key ${lin.key}: search bound of ${LINEARIZABILITY_STEPS_MAX} steps hit; the seed proves nothing`,
      );
    }
  }

  // ------------------------------------------------------------------ time and delivery

  private async tick(): Promise<void> {
    this.tickNow++;
    this.sched.advanceTo(this.tickNow * TICK_MS);
    for (const n of this.nodes.values()) {
      if (n.proc?.paused && n.pausedUntil <= this.tickNow) this.resume(n);
    }
    for (const n of this.nodes.values()) {
      if (n.state !== "up" || n.proc!.paused) continue;
      // Skewed clocks: a node ticks at its own rate.
      n.tickAcc += n.tickRate;
      for (; n.tickAcc >= 1; n.tickAcc--) n.ticker!.fire();
    }
    await this.settle();
    // A tick is long next to a round trip: messages sent with no delay arrive within the same tick.
    for (let round = 0; round < DELIVERY_ROUNDS_MAX; round++) {
      const due = this.net.takeDue(this.tickNow);
      if (due.length === 0) break;
      for (const m of due) this.deliver(m);
      await this.settle();
    }
    this.checkMembershipChanges();
  }

  /**
   * Runs every driver round that is due, lets the promise continuations they caused run (client acks
   * and read results are taken right when the driver settles them), then stops what those rounds
   * decided to stop.
   */
  private async settle(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if (this.sched.runSoon() > 0 && this.clientCalls > 0) await flushMicrotasks();
      this.raisePending();
      if (this.toStop.length === 0) return;
      for (const s of this.toStop.splice(0)) this.stop(s.node, s.why, "removed");
    }
  }

  private raisePending(): void {
    if (this.pendingViolation !== null) throw this.pendingViolation;
  }

  private deliver(m: Message): void {
    const n = this.nodes.get(m.to);
    if (n === undefined || n.state !== "up") {
      if (m.type === MessageType.Snapshot) this.snapshotSent(m, "failed");
      return;
    }
    if (n.proc!.paused) {
      n.held.push(m);
      return;
    }
    this.trace.add(`d ${m.type} ${m.from}>${m.to} t${m.term} i${m.index} c${m.commit} n${m.entries.length}`);
    let received: Message;
    try {
      // The production wire codec, both ways: what a peer would put on and take off the wire.
      received = decodeMessage(encodeMessage(m));
    } catch (e) {
      if (e instanceof WireMessageInvalid)
        throw new SimViolation("wire-codec", `an honest message failed to decode: ${e.message}`);
      throw e;
    }
    n.transport!.deliver(received);
    // Like the gRPC transport, which learns that the receiver took the whole image (not that it
    // installed it). Snapshots the network drops go unreported: the core's timeout covers those.
    if (m.type === MessageType.Snapshot) this.snapshotSent(m, "delivered");
  }

  private snapshotSent(m: Message, outcome: SnapshotOutcome): void {
    const from = this.nodes.get(m.from);
    // A paused process hears nothing (its report would be lost with the connection's state).
    if (from?.state === "up" && from.driver !== null && !from.proc!.paused)
      from.transport!.snapshotSent(m.to, outcome);
  }

  private send(from: SimNode, messages: Message[]): void {
    for (const m of messages) {
      this.checkPromiseDurable(from, m);
      this.net.send(m, this.tickNow);
    }
    if (from.crashAfterSend) {
      from.crashAfterSend = false;
      throw new SimCrash("after-hard-state");
    }
  }

  // ------------------------------------------------------------------ driver callbacks (checkers)

  /**
   * What a message promises is durable before it leaves (the Ready's durability rule): a granted vote is
   * the durable vote of its term (or the disk is already past that term), an append ack names an index
   * the durable log reaches.
   */
  private checkPromiseDurable(n: SimNode, m: Message): void {
    const d = n.disk.durableShadow;
    if (m.type === MessageType.VoteResp && !m.reject) {
      // A later term on disk also binds (the node can never vote in m.term again after a restart).
      const hs = d.hardState;
      if (hs.term < m.term || (hs.term === m.term && hs.vote !== m.to)) {
        throw new SimViolation(
          "vote-not-durable",
          `${n.id} granted ${m.to} its vote in term ${m.term}; durable: term ${d.hardState.term} vote ${d.hardState.vote}`,
        );
      }
    } else if (
      m.type === MessageType.AppendResp &&
      !m.reject &&
      // An ack of an older term than the disk's (the same Ready also moved to a newer leader and may have
      // truncated what it acked) can never count toward a commit: quorums of the two terms intersect.
      m.term === d.hardState.term &&
      m.index > Math.max(d.last, d.snapIndex)
    ) {
      throw new SimViolation(
        "ack-not-durable",
        `${n.id} acked ${m.index} to ${m.to}; its durable log ends at ${Math.max(d.last, d.snapIndex)}`,
      );
    }
  }

  onApplied(node: SimNode, index: number, text: string): void {
    const term = node.driver?.termAt(index) ?? -1;
    const first = this.safety.onApplied(node.id, index, term, `N:${text}`);
    if (first) {
      this.firstApplied.set(text, ++this.clock);
      this.checkDurableQuorum(node, index, term);
    }
  }

  onRestore(node: SimNode, index: number, kv: [string, string][]): void {
    const want = this.safety.stateAt(index);
    const got = new Map(kv);
    for (const [k, v] of want) {
      if (got.get(k) !== v)
        throw new SimViolation(
          "snapshot-content",
          `${node.id} restored a snapshot at ${index} with ${k}=${got.get(k)}; the log says ${k}=${v}`,
        );
    }
    for (const k of got.keys())
      if (!want.has(k))
        throw new SimViolation("snapshot-content", `${node.id}: snapshot at ${index} holds unknown key ${k}`);
    this.trace.add(`restore ${node.id} ${index}`);
    if (node.driver !== null && this.faultsOn && this.rng.chance(this.plan.restoreCrashRate)) {
      throw new SimCrash("between snapshot write and restore");
    }
  }

  private onConfChange(node: SimNode, change: ConfChange, cs: ConfState, index: number): void {
    const term = node.driver?.termAt(index) ?? -1;
    const first = this.safety.onApplied(node.id, index, term, `C:${change.type}:${change.nodeId}`);
    this.safety.onConfCommitted(index, cs);
    if (!first) return;
    this.checkDurableQuorum(node, index, term);
    if (change.type !== ConfChangeType.RemoveNode) return;
    const gone = this.nodes.get(change.nodeId);
    if (gone === undefined || gone.state !== "up") return;
    if (this.faultsOn && this.rng.chance(this.plan.removedStaysAliveRate)) {
      gone.removedAlive = true;
      this.trace.add(`removed-alive ${gone.id}`);
    } else {
      this.toStop.push({ node: gone, why: "decommission" });
    }
  }

  private onSoftState(node: SimNode, soft: SoftState): void {
    const d = node.driver;
    if (d === null) return;
    const st = d.status();
    node.role = soft.role;
    node.roleTerm = st.term;
    this.trace.add(`role ${node.id} ${soft.role} t${st.term}`);
    if (soft.role !== "leader") return;
    this.safety.onLeader(node.id, st.term, (i) => d.termAt(i), st.firstIndex - 1);
    if (this.faultsOn && this.rng.chance(this.plan.isolateNewLeaderRate)) {
      // Jepsen-style nemesis: cut a fresh leader off (now or a few ticks later), leaving a divergent tail.
      this.isolateAt.push({ tick: this.tickNow + this.rng.range(0, 3), id: node.id });
    }
  }

  private onFatal(node: SimNode, error: unknown): void {
    if (error instanceof SimCrash) {
      this.crash(node, error.why);
    } else if (error instanceof SimStorageFault) {
      // The driver stopped on a failed write, as it must; the process exits and restarts later.
      this.storageFaults++;
      this.crash(node, `storage ${error.code}`);
    } else if (error instanceof SimViolation) {
      this.pendingViolation ??= error;
    } else if (error instanceof RaftInvariantError) {
      this.pendingViolation ??= new SimViolation("core-invariant", `${node.id}: ${error.message}`);
    } else {
      const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      this.pendingViolation ??= new SimViolation("driver-stopped", `${node.id}: ${why}`);
    }
  }

  /** A committed entry must be durable on a majority of the voters that committed it. */
  private checkDurableQuorum(node: SimNode, index: number, term: number): void {
    const holders = new Set(
      [...this.nodes.values()].filter((n) => n.disk.durableShadow.holds(index, term)).map((n) => n.id),
    );
    const quorum = (voters: string[]): boolean =>
      voters.length > 0 && voters.filter((v) => holders.has(v)).length > voters.length / 2;
    const configs = [this.safety.committedVoters(index)];
    if (quorum(configs[0]!)) return;
    configs.push(node.driver?.status().confState.voters ?? []);
    if (!quorum(configs[1]!)) {
      throw new SimViolation(
        "committed-not-durable",
        `entry ${index} (term ${term}) committed but durable only on [${[...holders]}]; voters ${configs.map((c) => `[${c}]`).join(" or ")}`,
      );
    }
  }

  /**
   * Raft §5.4.2: a leader advances its commit index only onto an entry of its own term (older entries
   * commit indirectly, below it). Checked on every hard state the leader writes.
   */
  private checkLeaderCommit(n: SimNode, u: RaftStorageUpdate): void {
    const hs = u.hardState;
    if (hs === null || n.role !== "leader" || hs.term !== n.roleTerm) return;
    if (hs.commit <= n.disk.viewShadow.hardState.commit) return;
    const last = u.entries[u.entries.length - 1];
    const term =
      last !== undefined && last.index >= hs.commit
        ? u.entries.find((e) => e.index === hs.commit)?.term
        : hs.commit <= n.disk.viewShadow.snapIndex
          ? undefined
          : n.disk.viewShadow.terms.get(hs.commit);
    if (term !== undefined && term !== hs.term) {
      throw new SimViolation(
        "commit-old-term",
        `leader ${n.id} of term ${hs.term} moved commit to ${hs.commit}, an entry of term ${term}`,
      );
    }
  }

  /** A leader never holds more than one membership change it has not committed. */
  private checkMembershipChanges(): void {
    for (const n of this.nodes.values()) {
      if (n.state !== "up" || n.driver === null || n.role !== "leader") continue;
      const st = n.driver.status();
      const uncommitted = [...n.disk.viewShadow.confs.keys()].filter((i) => i > st.commit);
      if (uncommitted.length > 1) {
        throw new SimViolation(
          "membership-changes-pending",
          `leader ${n.id} holds ${uncommitted.length} uncommitted membership changes at [${uncommitted}]`,
        );
      }
    }
  }

  // ------------------------------------------------------------------ processes

  private newNode(id: string, founder: boolean): SimNode {
    const n = new SimNode(id, new SimRaftDisk(id), founder);
    const skew = this.plan.tickSkew;
    n.tickRate = 1 - skew + 2 * skew * this.rng.float();
    this.nodes.set(id, n);
    return n;
  }

  private async startNode(n: SimNode): Promise<void> {
    const proc = new SimProcess(n.id);
    n.proc = proc;
    n.sm = new SimKv(this, n);
    n.ticker = new SimTicker();
    n.transport = new SimTransport((ms) => this.send(n, ms));
    n.held = [];
    n.outstanding = { writes: 0, reads: 0 };
    n.crashAfterSend = false;
    n.role = "follower";
    n.roleTerm = 0;
    n.disk.fault = (kind, hardState) => this.writeFault(n, kind, hardState);
    n.disk.onSave = (u) => this.checkLeaderCommit(n, u);
    n.disk.onCrash = () => {
      throw new SimCrash("mid-write");
    };
    n.state = "up";
    const driver = await RaftDriver.start<string>({
      config: {
        id: n.id,
        electionTicks: ELECTION_TICKS,
        heartbeatTicks: this.plan.heartbeatTicks,
        inflightMax: this.plan.inflightMax,
        batchEntriesMax: this.plan.batchEntriesMax,
        batchBytesMax: this.plan.batchBytesMax,
        checkQuorum: this.plan.checkQuorum,
        preVote: this.plan.preVote,
        random: this.rng.fork(),
        ...(this.opts.bugs !== undefined ? { bugs: this.opts.bugs } : {}),
      },
      storage: n.disk,
      transport: n.transport,
      stateMachine: n.sm,
      ticker: n.ticker,
      scheduler: this.sched.for(proc),
      ...(n.founder ? { bootstrapVoters: this.founders } : {}),
      snapshotEntries: this.plan.compactEvery,
      proposeTimeoutMs: PROPOSE_TIMEOUT_MS,
      readTimeoutMs: READ_TIMEOUT_MS,
      readRetryMs: READ_RETRY_MS,
      onConfChange: (change, cs, index) => this.onConfChange(n, change, cs, index),
      onSoftState: (soft) => this.onSoftState(n, soft),
      onFatal: (e) => this.onFatal(n, e),
    });
    if (n.proc !== proc || !proc.alive) return; // crashed while starting (cannot happen: faults off)
    n.driver = driver;
  }

  private writeFault(n: SimNode, kind: "save" | "compact", hardState: boolean): WriteFault {
    if (!this.faultsOn || n.driver === null) return null; // no faults while a driver starts
    const p = this.plan;
    const r = this.rng;
    if (r.chance(p.writeErrorRate)) return r.chance(0.5) ? "EIO" : "ENOSPC";
    if (kind === "save" && r.chance(p.midReadyCrashRate))
      return r.chance(0.5) ? "crash-before" : "crash-after";
    if (r.chance(p.writeCrashRate)) return r.chance(0.5) ? "crash-before" : "crash-after";
    if (hardState && r.chance(p.crashAfterHardStateRate)) n.crashAfterSend = true;
    return null;
  }

  private crash(n: SimNode, why: string): void {
    if (n.state !== "up") return;
    this.crashes++;
    this.kill(n, "down");
    // Bit flips only where losing this node's disk keeps a live quorum (it will refuse to start).
    const flipRate = this.canLose(n.id) ? this.plan.bitFlipRate : 0;
    const r = n.disk.crash(this.rng, flipRate);
    this.unsyncedLost += r.lost;
    n.flipped = r.flipped;
    this.trace.add(
      `crash ${n.id} ${why} kept ${r.kept} lost ${r.lost}${r.flipped ? ` flip ${r.flipped}` : ""}`,
    );
    // Messages in flight to it are kept: one may arrive after a restart (stale delivery).
    this.net.dropFromCrashed(n.id, 0.5);
  }

  /** A clean stop (decommission): nothing more is written or sent. */
  private stop(n: SimNode, why: string, state: NodeState): void {
    if (n.state !== "up") return;
    this.trace.add(`${why} ${n.id}`);
    this.kill(n, state);
  }

  private kill(n: SimNode, state: NodeState): void {
    n.proc!.alive = false;
    n.proc!.paused = false;
    n.driver = null;
    n.state = state;
    n.held = [];
  }

  private async restart(n: SimNode): Promise<void> {
    if (n.state !== "down") return;
    this.trace.add(`restart ${n.id}`);
    try {
      await this.startNode(n);
    } catch (e) {
      if (!(e instanceof RaftStorageCorrupt)) throw e;
      if (n.flipped === null)
        throw new SimViolation("storage-corrupt", `${n.id}: an undamaged disk refused to load: ${e.message}`);
      // Detected, never served: the node stays down for good; the operator replaces it.
      this.corruptionsDetected++;
      this.trace.add(`corrupt ${n.id} refused: ${e.message}`);
      n.proc!.alive = false;
      n.state = "lost";
      return;
    }
    if (n.flipped !== null) {
      throw new SimViolation("corruption-undetected", `${n.id} started on a disk with ${n.flipped} flipped`);
    }
  }

  private crashRandom(): void {
    const live = [...this.nodes.values()].filter((n) => n.state === "up");
    if (live.length > 0) this.crash(this.rng.pick(live), "random");
  }

  private async restartRandom(): Promise<void> {
    const down = [...this.nodes.values()].filter((n) => n.state === "down");
    if (down.length > 0) await this.restart(this.rng.pick(down));
  }

  private pauseRandom(): void {
    const live = [...this.nodes.values()].filter((n) => n.state === "up" && !n.proc!.paused);
    if (live.length === 0) return;
    const leader = this.leader();
    const n = leader !== undefined && this.rng.chance(0.5) ? leader : this.rng.pick(live);
    n.proc!.paused = true;
    n.pausedUntil = this.tickNow + this.rng.range(1, Math.max(1, this.plan.pauseTicksMax));
    this.pauses++;
    this.trace.add(`pause ${n.id} until ${n.pausedUntil}`);
  }

  private resume(n: SimNode): void {
    n.proc!.paused = false;
    this.trace.add(`resume ${n.id}`);
    for (const m of n.held.splice(0)) this.deliver(m);
  }

  /** A down node's machine comes back with an empty disk: it rejoins only as a new member. */
  private async wipeRandom(): Promise<void> {
    const down = [...this.nodes.values()].filter((n) => n.state === "down" && this.canLose(n.id));
    if (down.length === 0) return;
    const n = this.rng.pick(down);
    n.disk.wipe();
    n.state = "lost";
    this.trace.add(`wipe ${n.id}`);
    await this.addLearner();
  }

  /**
   * Whether `id` may lose its disk for good: the voters of the current configuration still have a live
   * majority without it and the others already lost (so the run can stay live).
   */
  private canLose(id: string): boolean {
    return this.configsHeld().every((voters) => {
      if (!voters.includes(id)) return true;
      const lost = voters.filter((v) => v === id || this.gone(v)).length;
      return voters.length - lost > voters.length / 2;
    });
  }

  /**
   * Every configuration any node still holds (in its snapshot or its log, committed or not): any of them
   * may become the one a restarted group runs with, so none may lose its live majority.
   */
  private configsHeld(): string[][] {
    const out: string[][] = [this.founders];
    for (const n of this.nodes.values()) {
      if (n.state === "lost") continue;
      const sh = n.disk.viewShadow;
      if (sh.snapVoters !== null) out.push(sh.snapVoters);
      for (const v of sh.confs.values()) out.push(v);
    }
    return out;
  }

  /** Lost, or down with a flipped bit (it will refuse to start): either way gone for good. */
  private gone(id: string): boolean {
    const n = this.nodes.get(id);
    return n?.state === "lost" || (n?.state === "down" && n.flipped !== null);
  }

  private partitionRandom(): void {
    const ids = [...this.nodes.values()]
      .filter((n) => n.state === "up" || n.state === "down")
      .map((n) => n.id);
    if (ids.length < 2) return;
    if (this.plan.partitionFlap) this.net.heal();
    const kind = this.rng.nextInt(4);
    const leader = this.leader();
    if (kind === 3 && leader !== undefined) {
      // Jepsen-style: the leader ends up in a minority (alone or with one follower) as soon as it leads.
      const side = [leader.id, ...ids.filter((x) => x !== leader.id && this.rng.chance(0.3))].slice(
        0,
        Math.max(1, Math.floor((ids.length - 1) / 2)),
      );
      const other = ids.filter((x) => !side.includes(x));
      this.net.partition(side, other);
      this.trace.add(`minority ${side.join(",")}|${other.join(",")}`);
    } else if (kind === 0) {
      const id = this.rng.pick(ids);
      this.net.isolate(id, ids);
      this.trace.add(`isolate ${id}`);
    } else if (kind === 1) {
      const a = this.rng.pick(ids);
      const b = this.rng.pick(ids.filter((x) => x !== a));
      this.net.cutOneWay(a, b);
      this.trace.add(`cut1 ${a}>${b}`);
    } else {
      const side = ids.filter(() => this.rng.chance(0.5));
      const other = ids.filter((x) => !side.includes(x));
      this.net.partition(side, other);
      this.trace.add(`partition ${side.join(",")}|${other.join(",")}`);
    }
  }

  private longCut(): void {
    const ids = [...this.nodes.keys()];
    if (ids.length < 2) return;
    const a = this.rng.pick(ids);
    const b = this.rng.pick(ids.filter((x) => x !== a));
    const until = this.tickNow + this.plan.longCutTicks;
    this.net.cutOneWayUntil(a, b, until);
    this.trace.add(`long-cut ${a}>${b} until ${until}`);
  }

  // ------------------------------------------------------------------ clients and operators

  /** The running, unpaused leader with the highest term, if any. */
  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    let bestTerm = -1;
    for (const n of this.nodes.values()) {
      if (n.driver === null || n.proc!.paused || n.removedAlive) continue;
      if (n.role === "leader" && n.roleTerm > bestTerm) {
        best = n;
        bestTerm = n.roleTerm;
      }
    }
    return best;
  }

  private clientWrite(force = false): RegisterOp | null {
    const n = this.leader();
    if (n === undefined) return null;
    // Clients have bounded concurrency: at most WRITES_OUTSTANDING_MAX unacknowledged writes per leader.
    const outstanding = n.outstanding;
    if (!force && outstanding.writes >= WRITES_OUTSTANDING_MAX) return null;
    const key = this.rng.pick(KEYS);
    const value = `v${++this.nextValue}`;
    const op: RegisterOp = { kind: "write", key, value, invokedAt: ++this.clock, respondedAt: Infinity };
    this.history.push(op);
    outstanding.writes++;
    this.trace.add(`write ${n.id} ${key}=${value}`);
    n.driver!.propose(enc.encode(`${key}=${value}`)).then(
      () => {
        outstanding.writes--;
        op.respondedAt = ++this.clock;
      },
      (e: unknown) => {
        outstanding.writes--;
        // Refused, or its slot went to another leader's entry: it never takes effect. Anything else
        // (a timeout, the node stopping) leaves the outcome unknown.
        if (
          e instanceof NotLeader ||
          e instanceof Busy ||
          e instanceof Rejected ||
          e instanceof InvalidArgument
        )
          this.voided.add(op);
      },
    );
    return op;
  }

  private clientRead(): void {
    const live = [...this.nodes.values()].filter(
      (n) => n.driver !== null && !n.proc!.paused && !n.removedAlive,
    );
    if (live.length === 0) return;
    const n = this.rng.pick(live);
    const sm = n.sm!;
    const op: RegisterOp = {
      kind: "read",
      key: this.rng.pick(KEYS),
      value: null,
      invokedAt: ++this.clock,
      respondedAt: Infinity,
    };
    this.trace.add(`read ${n.id} ${op.key}`);
    const outstanding = n.outstanding;
    outstanding.reads++;
    // Only completed reads enter the history (an unanswered read has no effect).
    n.driver!.read().then(
      () => {
        outstanding.reads--;
        op.value = sm.kv.get(op.key) ?? null;
        op.respondedAt = ++this.clock;
        this.history.push(op);
        this.readsDone++;
      },
      () => {
        outstanding.reads--;
      },
    );
  }

  private async membershipChange(): Promise<void> {
    const leader = this.leader();
    if (leader === undefined) return;
    const cs = leader.driver!.status().confState;
    const lost = (id: string): boolean => this.gone(id);
    const voterCount = cs.voters.length;
    const liveVoters = cs.voters.filter((v) => !lost(v)).length;
    const choice = this.rng.nextInt(3);
    if (choice === 0) {
      await this.addLearner();
    } else if (choice === 1 && cs.learners.some((l) => !lost(l))) {
      const id = this.rng.pick(cs.learners.filter((l) => !lost(l)));
      this.confChanges++;
      this.trace.add(`promote ${leader.id} ${id}`);
      leader.driver!.promote(id).catch(() => {});
    } else if (choice === 2 && voterCount > 2) {
      // Lost voters go first; a live one only if the rest keep a live majority.
      const lostVoters = cs.voters.filter(lost);
      const id = lostVoters.length > 0 ? this.rng.pick(lostVoters) : this.rng.pick(cs.voters);
      if (!lost(id) && liveVoters - 1 <= (voterCount - 1) / 2) return;
      // ...and no configuration a node holds already counts on the others.
      if (
        !lost(id) &&
        !this.configsHeld().every((vs) => vs.filter((v) => v !== id && !lost(v)).length > vs.length / 2)
      )
        return;
      this.confChanges++;
      this.trace.add(`remove ${leader.id} ${id}`);
      leader.driver!.removeVoter(id).catch(() => {});
    }
  }

  private async addLearner(): Promise<void> {
    const leader = this.leader();
    if (leader === undefined || this.nextNodeId > NODE_IDS_MAX) return;
    const id = `n${this.nextNodeId++}`;
    this.confChanges++;
    this.trace.add(`add-learner ${leader.id} ${id}`);
    leader.driver!.addLearner(id).catch(() => {});
    await this.startNode(this.newNode(id, false));
  }

  private transfer(): void {
    const leader = this.leader();
    if (leader === undefined) return;
    const voters = leader.driver!.status().confState.voters.filter((v) => v !== leader.id);
    if (voters.length === 0) return;
    const to = this.rng.pick(voters);
    this.trace.add(`transfer ${leader.id}>${to}`);
    leader.driver!.transferLeadership(to).catch(() => {});
  }

  private describeNodes(): string {
    return [...this.nodes.values()]
      .map((n) => {
        if (n.driver === null) return `${n.id}:${n.state}`;
        const st = n.driver.status();
        const cs = st.confState;
        return `${n.id}:${st.role}/t${st.term}/vote=${st.vote}/lead=${st.leader}/commit=${st.commit}/applied=${n.driver.appliedIndex}/last=${st.lastIndex}/v=[${cs.voters}]/l=[${cs.learners}]${n.removedAlive ? "/removed" : ""}`;
      })
      .join(" ");
  }

  private checkLogs(): void {
    this.safety.checkLogMatching(
      [...this.nodes.values()]
        .filter((n) => n.driver !== null)
        .map((n) => {
          const d = n.driver!;
          const st = d.status();
          return {
            id: n.id,
            first: st.firstIndex - 1,
            last: st.lastIndex,
            termAt: (i: number) => d.termAt(i),
          };
        }),
    );
  }
}

/** Runs every pending promise continuation (they all run before the next macrotask). */
function flushMicrotasks(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

export function runSeed(opts: SimOptions): Promise<SimResult> {
  return new Simulation(opts).run();
}
