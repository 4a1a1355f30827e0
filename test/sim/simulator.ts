/**
 * The deterministic simulator (TigerBeetle VOPR style): N real RaftNode cores over an in-memory network
 * (SimNetwork) and disks (SimDisk), every choice drawn from ONE seeded Prng, so `--seed N` replays a run
 * exactly. A run has two phases:
 *  1. faults (faultTicks): drops, duplicates, delays/reordering, symmetric, one-way and flapping partitions,
 *     crashes (random, of the leader, part-way through persisting a Ready, right after a hard-state change)
 *     that keep only what the driver persisted, restarts, membership changes (add learner, promote, remove a
 *     voter including the leader), leadership transfers, client writes (unique values, 3 keys) and ReadIndex
 *     reads on any node, log compaction;
 *  2. liveness: faults stop, the network heals, crashed nodes restart; a leader must be elected and a write
 *     committed within LIVENESS_TICKS_MAX ticks, and every member must apply it within CONVERGENCE_TICKS_MAX.
 * Checkers (safety-checker.ts, linearizability.ts): election safety, log matching, leader completeness,
 * state machine safety, acknowledged writes applied, linearizable reads and writes; core asserts too.
 */
import {
  ConfChangeType,
  EntryType,
  RaftError,
  RaftInvariantError,
  RaftNode,
  bootstrapSnapshot,
  type Entry,
  type Message,
  type RaftBugs,
  type Ready,
} from "../../cluster/raft/core/index.js";
import { checkRegisterHistory, type RegisterOp } from "./linearizability.js";
import { Prng } from "./prng.js";
import { ELECTION_TICKS, drawPlan, type FaultPlan } from "./profiles.js";
import { SafetyChecker, SimViolation } from "./safety-checker.js";
import { SimDisk } from "./sim-disk.js";
import { SimNetwork } from "./sim-network.js";
import { TraceHash } from "./trace-hash.js";

/** After faults stop, a leader must be elected and a write committed within this many ticks. */
export const LIVENESS_TICKS_MAX = 30 * ELECTION_TICKS;
/** ...and then every live member must have applied it within this many more, plus 2 per entry it lags. */
export const CONVERGENCE_TICKS_MAX = 20 * ELECTION_TICKS;
/** Bound on Ready rounds after one input (a livelock guard). */
const READY_ROUNDS_MAX = 64;
/** Node ids that may ever exist in one run (founders plus learners added later). */
const NODE_IDS_MAX = 9;
/** Bound on the linearizability search per key (past it the seed reports "unknown", not a violation). */
const LINEARIZABILITY_STEPS_MAX = 5_000_000;
const KEYS = ["a", "b", "c"];
const WRITES_OUTSTANDING_MAX = 16;
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
    confChanges: number;
    snapshotsSent: number;
    messages: number;
    dropped: number;
    linearizability: "ok" | "unknown";
    oldTermCommits: number;
  };
}

interface PendingWrite {
  op: RegisterOp;
  term: number;
}

class SimPeer {
  core: RaftNode | null = null;
  kv = new Map<string, string>();
  /** ReadStates waiting until the state machine catches up to their index. */
  readsWaiting: { index: number; context: string }[] = [];
  /** Writes this peer proposed, by log index, until applied. */
  writes = new Map<number, PendingWrite>();
  decommissioned = false;
  constructor(
    readonly id: string,
    readonly disk: SimDisk,
  ) {}
  get alive(): boolean {
    return this.core !== null;
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** One deterministic run: the real core on N simulated peers, faults from the seed, then the checks. */
export class Simulation {
  readonly plan: FaultPlan;
  private readonly rng: Prng;
  private readonly net: SimNetwork;
  private readonly peers = new Map<string, SimPeer>();
  private readonly safety: SafetyChecker;
  private readonly trace: TraceHash;
  private readonly history: RegisterOp[] = [];
  private readonly reads = new Map<string, { peer: string; op: RegisterOp; done: boolean }>();
  private tickNow = 0;
  /** Logical time for the linearizability history: bumped at every invocation and response. */
  private clock = 0;
  private nextValue = 0;
  private nextRead = 0;
  private crashes = 0;
  private confChanges = 0;
  private snapshotsSent = 0;
  private readsDone = 0;
  /** Leader commit indexes that landed on an entry of an older term (only a broken core does this). */
  private oldTermCommits = 0;
  private isolateAt: { tick: number; id: string }[] = [];
  /** Logical time at which each written value was first applied anywhere (it took effect by then). */
  private readonly firstApplied = new Map<string, number>();

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
    this.safety = new SafetyChecker();
    const founders = Array.from({ length: this.plan.voters }, (_, i) => `n${i + 1}`);
    for (const id of founders) {
      const peer = new SimPeer(id, new SimDisk(bootstrapSnapshot(founders)));
      this.peers.set(id, peer);
      this.start(peer);
    }
    this.trace.add(`plan ${JSON.stringify(this.plan)}`);
  }

  run(): SimResult {
    let violation: SimResult["violation"] = null;
    try {
      this.faultPhase();
      this.livenessPhase();
      this.finalChecks();
    } catch (e) {
      if (e instanceof SimViolation) violation = { checker: e.checker, detail: e.message };
      else if (e instanceof RaftInvariantError) violation = { checker: "core-invariant", detail: e.message };
      else if (e instanceof RaftError) violation = { checker: `core-error-${e.code}`, detail: e.message };
      else throw e;
    }
    const writes = this.history.filter((o) => o.kind === "write");
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
        confChanges: this.confChanges,
        snapshotsSent: this.snapshotsSent,
        messages: this.net.sent,
        dropped: this.net.dropped,
        linearizability: this.linearizabilityOutcome,
        oldTermCommits: this.oldTermCommits,
      },
    };
  }

  private linearizabilityOutcome: "ok" | "unknown" = "ok";
  /** False once the liveness phase starts: no more crashes of any kind. */
  private faultsOn = true;

  // ------------------------------------------------------------------ phases

  private faultPhase(): void {
    const p = this.plan;
    for (let t = 0; t < p.faultTicks; t++) {
      this.tickAll();
      const r = this.rng;
      for (const iso of this.isolateAt.filter((x) => x.tick <= this.tickNow)) {
        this.net.isolate(iso.id, [...this.peers.keys()]);
        this.trace.add(`isolate-leader ${iso.id}`);
      }
      this.isolateAt = this.isolateAt.filter((x) => x.tick > this.tickNow);
      if (r.chance(p.crashRate)) this.crashRandom();
      if (r.chance(p.leaderCrashRate)) {
        const leader = this.leader();
        if (leader !== undefined) this.crash(leader, "leader");
      }
      if (r.chance(p.restartRate)) this.restartRandom();
      if (r.chance(p.partitionRate)) this.partitionRandom();
      if (r.chance(p.healRate)) {
        this.net.heal();
        this.trace.add("heal");
      }
      if (r.chance(p.proposeRate)) this.clientWrite();
      if (r.chance(p.readRate)) this.clientRead();
      if (r.chance(p.confChangeRate)) this.membershipChange();
      if (r.chance(p.transferRate)) this.transfer();
      if (t % 50 === 49) this.checkLogs();
    }
  }

  private livenessPhase(): void {
    this.trace.add("liveness");
    this.faultsOn = false;
    this.net.heal();
    this.net.faults = { dropRate: 0, duplicateRate: 0, delayTicksMin: 0, delayTicksMax: 1 };
    for (const peer of this.livePeersAndCrashed()) if (!peer.alive) this.restart(peer);
    // A leader is elected and a write commits (any of the writes tried, one per election timeout).
    const tried: RegisterOp[] = [];
    const deadline0 = this.tickNow + LIVENESS_TICKS_MAX;
    while (!tried.some((op) => op.respondedAt !== Infinity)) {
      if (this.tickNow >= deadline0) {
        throw new SimViolation(
          "liveness",
          `no leader elected and write committed within ${LIVENESS_TICKS_MAX} ticks of faults stopping; ${this.describePeers()}`,
        );
      }
      this.tickAll();
      if (tried.length === 0 || this.tickNow % ELECTION_TICKS === 0) {
        const op = this.clientWrite(true);
        if (op !== null) tried.push(op);
      }
    }
    // Every live member applies everything up to that write.
    const target = this.leader()?.core?.status().commit ?? 0;
    // Catching up costs at most two ticks per entry (one entry per append, round trip <= 2 ticks).
    const behind = Math.max(
      0,
      ...[...this.peers.values()].filter((p) => p.alive).map((p) => target - p.core!.status().applied),
    );
    const deadline = this.tickNow + CONVERGENCE_TICKS_MAX + 2 * behind;
    for (;;) {
      const leader = this.leader();
      const members = leader?.core?.status().confState;
      const lagging =
        members === undefined
          ? ["(no leader)"]
          : [...members.voters, ...members.learners].filter((id) => {
              const peer = this.peers.get(id);
              return peer === undefined || (peer.core?.status().applied ?? 0) < target;
            });
      if (lagging.length === 0) break;
      if (this.tickNow >= deadline) {
        const detail = [this.describePeers()];

        throw new SimViolation(
          "liveness",
          `members ${lagging.join(",")} did not apply ${target} within bound; ${detail.join(" ")}`,
        );
      }
      this.tickAll();
    }
  }

  private finalChecks(): void {
    this.checkLogs();
    this.safety.checkAckedWritesApplied(this.history);
    // A write whose ack was lost took effect by the time anyone applied it, or (never applied after the
    // cluster converged) not at all: bound it accordingly, which keeps the search small.
    for (let i = this.history.length - 1; i >= 0; i--) {
      const op = this.history[i]!;
      if (op.kind !== "write" || op.respondedAt !== Infinity) continue;
      const at = this.firstApplied.get(op.value!);
      if (at === undefined) this.history.splice(i, 1);
      else op.respondedAt = Math.max(at, op.invokedAt + 0.5);
    }
    const lin = checkRegisterHistory(this.history, LINEARIZABILITY_STEPS_MAX);
    if (lin.outcome === "violation") {
      const shown = lin.ops
        .slice(0, 24)
        .map((o) => `${o.kind}(${o.value})@[${o.invokedAt},${o.respondedAt}]`);
      const ops = shown.join(" ") + (lin.ops.length > shown.length ? ` … (${lin.ops.length} ops)` : "");
      throw new SimViolation("linearizability", `key ${lin.key}: no linearization of ${ops}`);
    }
    this.linearizabilityOutcome = lin.outcome;
  }

  // ------------------------------------------------------------------ time and delivery

  private tickAll(): void {
    this.tickNow++;
    for (const peer of this.peers.values()) {
      if (!peer.alive) continue;
      peer.core!.tick();
      this.drain(peer);
    }
    // A tick is long next to a round trip: messages sent with no delay arrive within the same tick,
    // in bounded rounds.
    for (let round = 0; round < DELIVERY_ROUNDS_MAX; round++) {
      const due = this.net.takeDue(this.tickNow);
      if (due.length === 0) break;
      for (const m of due) {
        const peer = this.peers.get(m.to);
        if (peer === undefined || !peer.alive) continue;
        this.trace.add(
          `d ${m.type} ${m.from}>${m.to} t${m.term} i${m.index} c${m.commit} n${m.entries.length}`,
        );
        peer.core!.step(m);
        this.drain(peer);
      }
    }
  }

  /** The driver loop of the Ready contract, with crashes part-way through persisting. */
  private drain(peer: SimPeer): void {
    for (let round = 0; peer.alive && peer.core!.hasReady(); round++) {
      if (round >= READY_ROUNDS_MAX)
        throw new SimViolation("ready-livelock", `${peer.id} keeps producing Ready`);
      const core = peer.core!;
      const rd = core.ready()!;
      const crashAt =
        this.faultsOn && this.rng.chance(this.plan.midReadyCrashRate) ? this.rng.range(0, 3) : -1;
      // 1. persist: snapshot, entries, hard state (a crash keeps a prefix of these steps)
      if (crashAt === 0) return this.crash(peer, "mid-ready 0");
      peer.disk.persistSnapshot(rd);
      if (rd.snapshot !== null)
        this.restoreKv(peer, rd.snapshot.data, rd.snapshot.metadata.index, rd.snapshot.metadata.term);
      if (crashAt === 1) return this.crash(peer, "mid-ready 1");
      peer.disk.persistEntries(rd);
      this.safety.onPersisted(peer.id, rd.entries);
      if (crashAt === 2) return this.crash(peer, "mid-ready 2");
      peer.disk.persistHardState(rd);
      if (crashAt === 3) return this.crash(peer, "mid-ready 3");
      this.observeRoles(peer, rd);
      if (rd.hardState !== null && core.status().role === "leader") {
        const st = core.status();
        if ((core.termAt(st.commit) ?? st.term) < st.term) {
          this.oldTermCommits++;
        }
      }
      // 2. send
      for (const m of rd.messages) this.send(m);
      // 3. apply, serve reads
      for (const e of rd.committedEntries) this.apply(peer, e);
      for (const rs of rd.readStates) {
        const ctx = dec.decode(rs.context);
        const read = this.reads.get(ctx);
        if (read !== undefined && read.peer === peer.id && !read.done) {
          peer.readsWaiting.push({ index: rs.index, context: ctx });
        }
      }
      // 4. advance
      core.advance(rd);
      this.serveReads(peer);
      this.maybeCompact(peer);
      // Crash right after a hard-state change became durable and its messages left (after a vote, after
      // a commit advanced): the moments where persistence bugs show.
      if (rd.hardState !== null && this.faultsOn && this.rng.chance(this.plan.crashAfterHardStateRate)) {
        return this.crash(peer, "after-hard-state");
      }
    }
  }

  private send(m: Message): void {
    this.net.send(m, this.tickNow);
  }

  private observeRoles(peer: SimPeer, rd: Ready): void {
    if (rd.softState === null) return;
    const st = peer.core!.status();
    this.trace.add(`role ${peer.id} ${rd.softState.role} t${st.term}`);
    if (rd.softState.role === "leader") {
      this.safety.onLeader(peer.id, st.term, (i) => peer.core!.termAt(i), st.firstIndex - 1);
      if (this.faultsOn && this.rng.chance(this.plan.isolateNewLeaderRate)) {
        // Jepsen-style nemesis: cut a fresh leader off (now or a few ticks later), leaving a divergent tail.
        this.isolateAt.push({ tick: this.tickNow + this.rng.range(0, 3), id: peer.id });
      }
    }
  }

  private apply(peer: SimPeer, e: Entry): void {
    const first = this.safety.onApplied(peer.id, e);
    if (e.type === EntryType.Normal && e.data.length > 0) {
      const [key, value] = dec.decode(e.data).split("=") as [string, string];
      peer.kv.set(key, value);
      if (first) this.firstApplied.set(value, ++this.clock);
    }
    if (e.type === EntryType.ConfChange && e.confChange!.type === ConfChangeType.RemoveNode) {
      // The removal is committed: the operator shuts the removed peer down for good.
      const gone = this.peers.get(e.confChange!.nodeId);
      if (gone !== undefined && !gone.decommissioned) {
        gone.decommissioned = true;
        if (gone !== peer) this.stop(gone, "decommission");
      }
    }
    const w = peer.writes.get(e.index);
    if (w !== undefined) {
      peer.writes.delete(e.index);
      if (e.term === w.term) w.op.respondedAt = ++this.clock;
      else this.history.splice(this.history.indexOf(w.op), 1); // overwritten: it never took effect
    }
    if (peer.decommissioned && peer.alive) {
      // A removed peer applying its own removal: it stops after this Ready.
    }
  }

  private serveReads(peer: SimPeer): void {
    if (peer.decommissioned && peer.alive) {
      this.stop(peer, "decommission");
      return;
    }
    const applied = peer.core!.status().applied;
    peer.readsWaiting = peer.readsWaiting.filter((w) => {
      if (w.index > applied) return true;
      const read = this.reads.get(w.context)!;
      if (!read.done) {
        read.done = true;
        read.op.value = peer.kv.get(read.op.key) ?? null;
        read.op.respondedAt = ++this.clock;
        this.history.push(read.op);
        this.readsDone++;
      }
      return false;
    });
  }

  private maybeCompact(peer: SimPeer): void {
    if (!peer.alive) return;
    const st = peer.core!.status();
    if (st.applied - (st.firstIndex - 1) < this.plan.compactEvery) return;
    const snap = peer.core!.compact(st.applied, this.encodeKv(peer));
    peer.disk.persistCompaction(snap);
    this.trace.add(`compact ${peer.id} ${st.applied}`);
  }

  private encodeKv(peer: SimPeer): Uint8Array {
    return enc.encode(JSON.stringify([...peer.kv.entries()].sort()));
  }

  private restoreKv(peer: SimPeer, data: Uint8Array, index: number, term: number): void {
    peer.kv = new Map(data.length === 0 ? [] : (JSON.parse(dec.decode(data)) as [string, string][]));
    this.safety.onSnapshotRestored(peer.id, index, term);
  }

  // ------------------------------------------------------------------ crashes

  private start(peer: SimPeer): void {
    const st = peer.disk.load();
    peer.core = new RaftNode(
      {
        id: peer.id,
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
      st,
    );
    this.restoreKv(
      peer,
      st.snapshot?.data ?? new Uint8Array(0),
      st.snapshot?.metadata.index ?? 0,
      st.snapshot?.metadata.term ?? 0,
    );
  }

  private crash(peer: SimPeer, why: string): void {
    this.crashes++;
    this.stop(peer, `crash ${why}`);
  }

  private stop(peer: SimPeer, why: string): void {
    if (!peer.alive) return;
    this.trace.add(`${why} ${peer.id}`);
    peer.core = null;
    peer.readsWaiting = [];
    peer.writes.clear(); // their outcome is now unknown: they stay in the history with no response
    // Messages in flight to it are kept: one may arrive after a restart (stale delivery).
    if (why.startsWith("crash")) this.net.dropFromCrashed(peer.id, 0.5);
  }

  private restart(peer: SimPeer): void {
    if (peer.alive || peer.decommissioned) return;
    this.trace.add(`restart ${peer.id}`);
    this.start(peer);
  }

  private crashRandom(): void {
    const live = [...this.peers.values()].filter((p) => p.alive);
    if (live.length > 0) this.crash(this.rng.pick(live), "random");
  }

  private restartRandom(): void {
    const down = [...this.peers.values()].filter((p) => !p.alive && !p.decommissioned);
    if (down.length > 0) this.restart(this.rng.pick(down));
  }

  private livePeersAndCrashed(): SimPeer[] {
    return [...this.peers.values()].filter((p) => !p.decommissioned);
  }

  private partitionRandom(): void {
    const ids = this.livePeersAndCrashed().map((p) => p.id);
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

  // ------------------------------------------------------------------ clients and operators

  /** The live leader with the highest term, if any. */
  private leader(): SimPeer | undefined {
    let best: SimPeer | undefined;
    let bestTerm = -1;
    for (const p of this.peers.values()) {
      if (!p.alive) continue;
      const st = p.core!.status();
      if (st.role === "leader" && st.term > bestTerm) {
        best = p;
        bestTerm = st.term;
      }
    }
    return best;
  }

  private clientWrite(force = false): RegisterOp | null {
    const peer = this.leader();
    if (peer === undefined) return null;
    // Clients have bounded concurrency: at most WRITES_OUTSTANDING_MAX unacknowledged writes per leader.
    if (!force && peer.writes.size >= WRITES_OUTSTANDING_MAX) return null;
    const key = this.rng.pick(KEYS);
    const value = `v${++this.nextValue}`;
    let pos;
    try {
      pos = peer.core!.propose(enc.encode(`${key}=${value}`));
    } catch (e) {
      if (e instanceof RaftError && e.code !== "INVARIANT") return null;
      throw e;
    }
    const op: RegisterOp = { kind: "write", key, value, invokedAt: ++this.clock, respondedAt: Infinity };
    this.history.push(op);
    peer.writes.set(pos.index, { op, term: pos.term });
    this.trace.add(`write ${peer.id} ${key}=${value} @${pos.index}`);
    this.drain(peer);
    return op;
  }

  private clientRead(): void {
    const live = [...this.peers.values()].filter((p) => p.alive);
    if (live.length === 0) return;
    const peer = this.rng.pick(live);
    const context = `r${++this.nextRead}`;
    const op: RegisterOp = {
      kind: "read",
      key: this.rng.pick(KEYS),
      value: null,
      invokedAt: ++this.clock,
      respondedAt: Infinity,
    };
    // Only completed reads enter the history (an unanswered read has no effect).
    this.reads.set(context, { peer: peer.id, op, done: false });
    this.trace.add(`read ${peer.id} ${op.key} ${context}`);
    peer.core!.readIndex(enc.encode(context));
    this.drain(peer);
  }

  private membershipChange(): void {
    const peer = this.leader();
    if (peer === undefined) return;
    const cs = peer.core!.status().confState;
    const choices: (() => { type: ConfChangeType; nodeId: string } | null)[] = [
      () =>
        this.peers.size < NODE_IDS_MAX
          ? { type: ConfChangeType.AddLearner, nodeId: `n${this.peers.size + 1}` }
          : null,
      () =>
        cs.learners.length > 0
          ? { type: ConfChangeType.PromoteLearner, nodeId: this.rng.pick(cs.learners) }
          : null,
      () =>
        cs.voters.length > 2 ? { type: ConfChangeType.RemoveNode, nodeId: this.rng.pick(cs.voters) } : null,
    ];
    const change = this.rng.pick(choices)();
    if (change === null) return;
    try {
      peer.core!.proposeConfChange({ ...change, context: new Uint8Array(0) });
    } catch (e) {
      if (e instanceof RaftError && e.code !== "INVARIANT") return;
      throw e;
    }
    this.confChanges++;
    this.trace.add(`conf ${peer.id} ${change.type} ${change.nodeId}`);
    if (change.type === ConfChangeType.AddLearner) {
      const joiner = new SimPeer(change.nodeId, new SimDisk(null));
      this.peers.set(joiner.id, joiner);
      this.start(joiner);
    }
    this.drain(peer);
  }

  private transfer(): void {
    const peer = this.leader();
    if (peer === undefined) return;
    const voters = peer.core!.status().confState.voters.filter((v) => v !== peer.id);
    if (voters.length === 0) return;
    const to = this.rng.pick(voters);
    this.trace.add(`transfer ${peer.id}>${to}`);
    peer.core!.transferLeadership(to);
    this.drain(peer);
  }

  private describePeers(): string {
    return [...this.peers.values()]
      .map((p) => {
        if (!p.alive) return `${p.id}:${p.decommissioned ? "removed" : "down"}`;
        const st = p.core!.status();
        const cs = st.confState;
        return `${p.id}:${st.role}/t${st.term}/vote=${st.vote}/lead=${st.leader}/commit=${st.commit}/last=${st.lastIndex}/v=[${cs.voters}]/l=[${cs.learners}]`;
      })
      .join(" ");
  }

  private checkLogs(): void {
    const live = [...this.peers.values()].filter((p) => p.alive);
    this.safety.checkLogMatching(
      live.map((p) => {
        const st = p.core!.status();
        return {
          id: p.id,
          first: st.firstIndex - 1,
          last: st.lastIndex,
          termAt: (i: number) => p.core!.termAt(i),
        };
      }),
    );
  }
}

export function runSeed(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}
