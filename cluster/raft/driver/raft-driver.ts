/**
 * The driver: runs one pure RaftNode against real IO. It owns the only loop that touches the core, and
 * handles each Ready in the order written on the `Ready` type (cluster/raft/core/types.ts):
 *
 *   1. persist snapshot + entries + hard state in one atomic write, synced exactly when `Ready.mustSync`
 *      says (the durability rule lives on `Ready`, nowhere else), and restore an installed snapshot,
 *   2. then send the messages (a vote or an append ack never leaves before what it promises is durable),
 *   3. then apply committed entries and serve read states,
 *   4. then advance().
 *
 * Inputs (ticks, received messages, client calls) that arrive while a Ready is being handled wait in an
 * inbox and are fed to the core before the next ready(), so the core is never touched between ready()
 * and advance(); this also batches everything that arrived during one fsync into the next round.
 *
 * Time enters only through the injected Scheduler and Ticker, randomness only through `config.random`,
 * IO only through RaftStorage and PeerTransport: the simulator (test/sim) runs this very class on virtual
 * time, simulated disks and a simulated network, and the raft unit tests' cluster (test/raft) runs it
 * over in-memory disks, so there is one Ready loop in the codebase.
 *
 * A storage failure or a core invariant violation is fatal: the driver stops (fail-stop, never limps on
 * with state it could not persist) and reports through `onFatal`.
 */
import { RaftNode } from "../core/raft-node.js";
import {
  bootstrapSnapshot,
  ConfChangeType,
  EntryType,
  MessageType,
  RaftError,
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type RaftStatus,
  type PersistedState,
  type Ready,
  type SoftState,
} from "../core/types.js";
import { Busy, InvalidArgument, NotLeader, Rejected, Stopped, Timeout } from "./errors.js";
import type { PeerTransport } from "./peer-transport.js";
import type { RaftStorage, RaftStorageUpdate } from "./raft-storage.js";
import { nodeScheduler, type Cancel, type Scheduler } from "./scheduler.js";
import type { StateMachine } from "./state-machine.js";
import type { Ticker } from "./ticker.js";

export interface RaftDriverOptions<R> {
  /** The core's configuration (id, timeouts in ticks, batching limits, pre-vote, check-quorum, random). */
  config: RaftConfig;
  storage: RaftStorage;
  transport: PeerTransport;
  stateMachine: StateMachine<R>;
  ticker: Ticker;
  /** Deferred calls and deadlines (default: Node's timers). The simulator injects virtual time. */
  scheduler?: Scheduler;
  /**
   * Founding voters of a new cluster. Used only when the storage is empty: the driver then stores
   * bootstrapSnapshot(voters) before the first start. Leave unset on a node that joins as a learner.
   */
  bootstrapVoters?: NodeId[];
  /** Take a state machine snapshot and compact the log once this many entries were applied since the last. */
  snapshotEntries?: number;
  /** Default deadline of propose() and membership changes. */
  proposeTimeoutMs?: number;
  /** Default deadline of read(). */
  readTimeoutMs?: number;
  /** How often a read re-asks for a read index while it has no answer (requests may be dropped). */
  readRetryMs?: number;
  /** Largest proposal accepted, in bytes. */
  proposalBytesMax?: number;
  /** Client calls (proposals, membership changes, reads, transfers) waiting at once at most; more get Busy. */
  pendingMax?: number;
  /**
   * Messages from peers waiting for the loop at most (e.g. while a write is being synced); more are
   * dropped, as etcd's transport does when its receive buffer is full: raft tolerates loss, and a
   * peer that floods must not grow this process's memory without bound.
   */
  receivedMax?: number;
  /** Called for every committed membership change, in log order (also when replayed after a restart). */
  onConfChange?: (change: ConfChange, confState: ConfState, index: number) => void;
  /** Called with every Ready before it is handled (tracing; the raft unit tests inspect them). */
  onReady?: (ready: Ready) => void;
  /** Called after every Ready that changed the role or the known leader (for logs, metrics, checkers). */
  onSoftState?: (soft: SoftState) => void;
  /** Called once when the driver stops because of an error it cannot continue from. */
  onFatal?: (error: unknown) => void;
  /** Diagnostic lines (never entry data). */
  log?: (line: string) => void;
}

export interface Applied<R> {
  index: number;
  result: R;
}

export interface DriverStatus extends RaftStatus {
  /** Index of the last entry applied to the state machine by this driver. */
  appliedIndex: number;
  /** Index of the latest snapshot (stored or installed). */
  snapshotIndex: number;
  /** Messages from peers dropped because `receivedMax` of them were already waiting for the loop. */
  receivedDropped: number;
}

const DEFAULTS = {
  snapshotEntries: 10_000,
  proposeTimeoutMs: 5_000,
  readTimeoutMs: 5_000,
  readRetryMs: 250,
  proposalBytesMax: 1024 * 1024,
  pendingMax: 4096,
  receivedMax: 4096,
};

interface PendingProposal {
  term: number;
  resolve(value: Applied<unknown>): void;
  reject(error: Error): void;
  timer: Cancel;
}

interface PendingRead {
  /** The read index once the leader answered; -1 until then. */
  index: number;
  resolve(index: number): void;
  reject(error: Error): void;
  timer: Cancel;
  retry: Cancel;
}

interface PendingTransfer {
  to: NodeId;
  resolve(): void;
  reject(error: Error): void;
  timer: Cancel;
}

export class RaftDriver<R = unknown> {
  readonly id: NodeId;
  readonly #core: RaftNode;
  readonly #opts: RaftDriverOptions<R> & typeof DEFAULTS;
  readonly #scheduler: Scheduler;
  /** Work for the core; `fail` settles the caller's promise if the driver stops before `run` ran. */
  readonly #inbox: Array<{ run: () => void; fail?: (e: Error) => void }> = [];
  /** Peer messages in #inbox (bounded by receivedMax). */
  #receivedWaiting = 0;
  #receivedDropped = 0;
  #ticksPending = 0;
  #loopRunning = false;
  /** Between ready() and advance(): the core must not be touched. */
  #inRound = false;
  #loopDone: Promise<void> = Promise.resolve();
  #stopped: Error | undefined;
  #applied: number;
  #snapshotIndex: number;
  readonly #proposals = new Map<number, PendingProposal>();
  readonly #reads = new Map<string, PendingRead>();
  readonly #transfers = new Set<PendingTransfer>();
  #readSeq = 0;
  /**
   * Makes read contexts unique across restarts of this node: a leader may still answer (or have queued
   * for us) a request of an earlier incarnation, and that answer's read index predates writes
   * acknowledged since; with a counter alone it would complete a new read with the same context.
   */
  readonly #readIncarnation: string;
  /** Proposals, membership changes, reads and transfers not settled yet (bounded by pendingMax). */
  #pending = 0;

  /** Loads persisted state (bootstrapping a new founding member), restores the state machine, starts. */
  static async start<R>(options: RaftDriverOptions<R>): Promise<RaftDriver<R>> {
    const opts = { ...DEFAULTS, ...options };
    let persisted = await opts.storage.load();
    const boot = RaftDriver.#bootstrap(opts, persisted);
    if (boot !== null) {
      await opts.storage.save(boot);
      persisted = await opts.storage.load();
    }
    return RaftDriver.#open(opts, persisted);
  }

  /**
   * start() for a storage whose load() and save() return no promises (the in-memory disks of the raft
   * unit tests): the driver is running when this returns.
   */
  static startSync<R>(options: RaftDriverOptions<R>): RaftDriver<R> {
    const opts = { ...DEFAULTS, ...options };
    const sync = <T>(v: T | Promise<T>): T => {
      if (v instanceof Promise) throw new InvalidArgument("storage", "startSync needs a synchronous storage");
      return v;
    };
    let persisted = sync(opts.storage.load());
    const boot = RaftDriver.#bootstrap(opts, persisted);
    if (boot !== null) {
      sync(opts.storage.save(boot));
      persisted = sync(opts.storage.load());
    }
    return RaftDriver.#open(opts, persisted);
  }

  /** The write that makes an empty storage a founding member's (null when none is needed). */
  static #bootstrap<R>(opts: RaftDriverOptions<R>, persisted: PersistedState): RaftStorageUpdate | null {
    const fresh =
      persisted.snapshot === null && persisted.entries.length === 0 && persisted.hardState.term === 0;
    if (!fresh || opts.bootstrapVoters === undefined) return null;
    if (!opts.bootstrapVoters.includes(opts.config.id)) {
      throw new InvalidArgument("bootstrapVoters", `must include this node (${opts.config.id})`);
    }
    return {
      snapshot: bootstrapSnapshot(opts.bootstrapVoters),
      entries: [],
      hardState: persisted.hardState,
      sync: true,
    };
  }

  static #open<R>(opts: RaftDriverOptions<R> & typeof DEFAULTS, persisted: PersistedState): RaftDriver<R> {
    const snap = persisted.snapshot;
    if (snap !== null && snap.metadata.index > 0) opts.stateMachine.restore(snap.data);
    const core = new RaftNode(opts.config, persisted);
    return new RaftDriver<R>(core, opts, snap?.metadata.index ?? 0);
  }

  private constructor(core: RaftNode, opts: RaftDriverOptions<R> & typeof DEFAULTS, snapshotIndex: number) {
    this.id = opts.config.id;
    this.#core = core;
    this.#opts = opts;
    this.#scheduler = opts.scheduler ?? nodeScheduler;
    // 64 random bits from the injected source (crypto in production, the seed in the simulator).
    this.#readIncarnation = Array.from({ length: 4 }, () =>
      opts.config.random.nextInt(0x10000).toString(16).padStart(4, "0"),
    ).join("");
    this.#applied = snapshotIndex;
    this.#snapshotIndex = snapshotIndex;
    opts.transport.start(
      (m) => this.#receive(m),
      (to, outcome) => this.#enqueue(() => this.#core.reportSnapshot(to, outcome)),
    );
    opts.ticker.start(() => {
      this.#ticksPending++;
      this.#schedule();
    });
    this.#schedule();
  }

  get appliedIndex(): number {
    return this.#applied;
  }

  status(): DriverStatus {
    return {
      ...this.#core.status(),
      appliedIndex: this.#applied,
      snapshotIndex: this.#snapshotIndex,
      receivedDropped: this.#receivedDropped,
    };
  }

  /**
   * Calls `fn` with the core between rounds, then schedules a round for whatever it produced. For tests
   * and tools that drive the core directly (the raft unit tests' cluster); clients use propose(), read()
   * and the membership calls. Refused while a round waits for its storage write.
   */
  withCore<T>(fn: (core: RaftNode) => T): T {
    if (this.#stopped) throw this.#stopped;
    if (this.#inRound) {
      throw new InvalidArgument("withCore", "a Ready is being handled; wait for the round to finish");
    }
    try {
      return fn(this.#core);
    } finally {
      this.#schedule();
    }
  }

  /** Term of the entry at `index` in this node's log, if it holds it (diagnostics and checkers). */
  termAt(index: number): number | undefined {
    return this.#core.termAt(index);
  }

  /**
   * Replicates `data`; resolves with the state machine's result once the entry is committed and applied
   * here. Rejects with NotLeader (not leader now, or the entry was overwritten by a newer leader: it will
   * never apply) or Timeout (outcome unknown: it may still apply).
   */
  propose(data: Uint8Array, timeoutMs = this.#opts.proposeTimeoutMs): Promise<Applied<R>> {
    if (data.byteLength > this.#opts.proposalBytesMax) {
      return Promise.reject(new InvalidArgument("data", `longer than ${this.#opts.proposalBytesMax} bytes`));
    }
    return this.#submit("propose", timeoutMs, () => this.#core.propose(data)) as Promise<Applied<R>>;
  }

  /** Adds `id` as a learner; `context` (e.g. its address) rides in the log entry. Resolves once applied. */
  addLearner(
    id: NodeId,
    context: Uint8Array = new Uint8Array(0),
    timeoutMs?: number,
  ): Promise<{ index: number }> {
    return this.#confChange({ type: ConfChangeType.AddLearner, nodeId: id, context }, timeoutMs);
  }

  /** Turns learner `id` into a voter. */
  promote(id: NodeId, timeoutMs?: number): Promise<{ index: number }> {
    return this.#confChange(
      { type: ConfChangeType.PromoteLearner, nodeId: id, context: new Uint8Array(0) },
      timeoutMs,
    );
  }

  /** Removes voter (or learner) `id`, which may be this leader itself. */
  removeVoter(id: NodeId, timeoutMs?: number): Promise<{ index: number }> {
    return this.#confChange(
      { type: ConfChangeType.RemoveNode, nodeId: id, context: new Uint8Array(0) },
      timeoutMs,
    );
  }

  /**
   * Linearizable read barrier (ReadIndex): resolves with an index once this node has applied at least
   * the leader's commit index as of some moment after the call. The caller then reads its state machine.
   * Works on followers too (the core forwards the request to the leader).
   */
  read(timeoutMs = this.#opts.readTimeoutMs): Promise<number> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    if (this.#pending >= this.#opts.pendingMax)
      return Promise.reject(new Busy("read", this.#opts.pendingMax));
    this.#pending++;
    const key = `${this.id}:${this.#readIncarnation}:${++this.#readSeq}`;
    const context = new TextEncoder().encode(key);
    return new Promise<number>((resolve, reject) => {
      const ask = (): void => this.#enqueue(() => this.#core.readIndex(context));
      const retry = (): void => {
        if (pending.index < 0) ask();
        pending.retry = this.#scheduler.after(this.#opts.readRetryMs, retry);
      };
      const pending: PendingRead = {
        index: -1,
        resolve,
        reject,
        timer: this.#scheduler.after(timeoutMs, () => {
          this.#dropRead(key);
          reject(new Timeout("read", timeoutMs));
        }),
        retry: this.#scheduler.after(this.#opts.readRetryMs, retry),
      };
      this.#reads.set(key, pending);
      ask();
    }).finally(() => this.#pending--);
  }

  /**
   * Asks the leader (this node) to hand leadership to voter `to`; resolves once this node sees `to` as
   * leader. NotLeader if this node is not the leader.
   */
  transferLeadership(to: NodeId, timeoutMs = this.#opts.proposeTimeoutMs): Promise<void> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    if (this.#pending >= this.#opts.pendingMax)
      return Promise.reject(new Busy("transferLeadership", this.#opts.pendingMax));
    this.#pending++;
    return new Promise<void>((resolve, reject) => {
      const t: PendingTransfer = {
        to,
        resolve,
        reject,
        timer: this.#scheduler.after(timeoutMs, () => {
          this.#transfers.delete(t);
          reject(new Timeout("transferLeadership", timeoutMs));
        }),
      };
      this.#enqueue(
        () => {
          try {
            this.#core.transferLeadership(to);
          } catch (e) {
            t.timer();
            reject(this.#clientError("transferLeadership", e));
            return;
          }
          this.#transfers.add(t);
        },
        (e) => {
          t.timer();
          reject(e);
        },
      );
    }).finally(() => this.#pending--);
  }

  /**
   * Stops ticking and processing, waits for the Ready being handled to finish (so nothing is written
   * after this resolves), and rejects every pending call with Stopped. Does not close storage/transport.
   */
  async stop(reason = "stopped"): Promise<void> {
    if (!this.#stopped) this.#halt(new Stopped(reason));
    await this.#loopDone;
  }

  // ---- inputs -------------------------------------------------------------------------------------

  #receive(m: Message): void {
    if (m.to !== this.id) {
      this.#opts.log?.(`raft: dropped message for ${m.to} (type ${m.type} from ${m.from})`);
      return;
    }
    if (this.#receivedWaiting >= this.#opts.receivedMax) {
      if (this.#receivedDropped++ % 1000 === 0) {
        this.#opts.log?.(`raft: receive queue full (${this.#opts.receivedMax}); dropping peer messages`);
      }
      return;
    }
    this.#receivedWaiting++;
    this.#enqueue(() => {
      this.#receivedWaiting--;
      if (m.snapshot !== null && m.type === MessageType.Snapshot) {
        try {
          this.#opts.stateMachine.checkSnapshot?.(m.snapshot.data, m.snapshot.metadata.index);
        } catch (e) {
          const why = e instanceof Error ? e.message : String(e);
          this.#opts.log?.(`raft: dropped a snapshot from ${m.from} the state machine refuses: ${why}`);
          return;
        }
      }
      // The core refuses bad input from the network as a value (counted in status().refused); only a
      // broken core throws, and that is fatal.
      const refused = this.#core.step(m);
      if (refused !== null && this.#opts.log !== undefined) {
        // The first of each kind and every 1000th after: a flooding peer cannot grow the log without bound.
        const count = this.#core.status().refused[refused.kind];
        if (count === 1 || count % 1000 === 0) {
          this.#opts.log(
            `raft: refused message type ${m.type} from ${m.from}: ${refused.kind}: ${refused.detail} (${count} of this kind so far)`,
          );
        }
      }
    });
  }

  #confChange(change: ConfChange, timeoutMs = this.#opts.proposeTimeoutMs): Promise<{ index: number }> {
    return this.#submit("proposeConfChange", timeoutMs, () => this.#core.proposeConfChange(change)).then(
      (a) => ({
        index: a.index,
      }),
    );
  }

  /**
   * Runs `call` (which returns where the entry landed) on the loop and waits for that entry to apply.
   * The deadline runs from this call, not from when the loop gets to it: a loop held up (a storage
   * write that does not finish, a long round) must not leave the caller waiting for ever.
   */
  #submit(
    operation: string,
    timeoutMs: number,
    call: () => { index: number; term: number },
  ): Promise<Applied<unknown>> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    if (this.#pending >= this.#opts.pendingMax)
      return Promise.reject(new Busy(operation, this.#opts.pendingMax));
    this.#pending++;
    return new Promise<Applied<unknown>>((resolve, reject) => {
      /** Where the entry landed, once the loop proposed it. */
      let pos: { index: number; term: number } | undefined;
      let timedOut = false;
      const timer = this.#scheduler.after(timeoutMs, () => {
        timedOut = true;
        // Only our own slot: a later proposal may have taken this index since (see below).
        if (pos !== undefined && this.#proposals.get(pos.index)?.timer === timer) {
          this.#proposals.delete(pos.index);
        }
        reject(new Timeout(operation, timeoutMs));
      });
      this.#enqueue(
        () => {
          // The caller was told Timeout before the loop got here: nothing was proposed, nothing will be.
          if (timedOut) return;
          try {
            pos = call();
          } catch (e) {
            timer();
            reject(this.#clientError(operation, e));
            return;
          }
          if (pos.index <= this.#applied)
            throw new Error(`core placed ${operation} at applied index ${pos.index}`);
          // A proposal still waiting at this index was truncated away (this node lost and regained
          // leadership): it can never apply. Its timer goes too, or it would later evict the new one.
          const displaced = this.#proposals.get(pos.index);
          if (displaced !== undefined) {
            displaced.timer();
            displaced.reject(new NotLeader(this.#leaderHint()));
          }
          this.#proposals.set(pos.index, { term: pos.term, resolve, reject, timer });
        },
        (e) => {
          timer();
          reject(e);
        },
      );
    }).finally(() => this.#pending--);
  }

  /** Maps a core refusal of a client call to the driver's typed errors; anything else is a core bug. */
  #clientError(operation: string, e: unknown): Error {
    if (!(e instanceof RaftError)) return e instanceof Error ? e : new Error(String(e));
    switch (e.code) {
      case "NOT_LEADER":
        return new NotLeader(this.#leaderHint());
      case "INVARIANT":
        this.#halt(e);
        return e;
      default:
        return new Rejected(operation, e.reason ?? e.code, e.message);
    }
  }

  #leaderHint(): NodeId | "" {
    return this.#core.status().leader ?? "";
  }

  #enqueue(run: () => void, fail?: (e: Error) => void): void {
    if (this.#stopped) {
      fail?.(this.#stopped);
      return;
    }
    this.#inbox.push(fail === undefined ? { run } : { run, fail });
    this.#schedule();
  }

  // ---- the loop -----------------------------------------------------------------------------------

  #schedule(): void {
    if (this.#loopRunning || this.#stopped) return;
    this.#loopRunning = true;
    // Not a microtask: pending socket reads land first, so one round batches them.
    this.#loopDone = new Promise<void>((done) => this.#scheduler.soon(() => void this.#loop().finally(done)));
  }

  /**
   * Awaits only where a storage write returned a promise: with a synchronous storage (the simulator's),
   * a whole run of rounds completes within one call.
   */
  async #loop(): Promise<void> {
    try {
      while (!this.#stopped) {
        this.#drainInbox();
        const rd = this.#core.ready();
        if (rd !== null) {
          this.#inRound = true;
          this.#opts.onReady?.(rd);
          const written = this.#persist(rd);
          if (written !== undefined) await written;
          if (this.#stopped) return;
          this.#afterPersist(rd);
          this.#inRound = false;
        }
        // Checked after every round, not only when idle: under steady load there is always a Ready.
        if (this.#shouldSnapshot()) {
          const written = this.#takeSnapshot();
          if (written !== undefined) await written;
        } else if (rd === null) break;
      }
    } catch (e) {
      this.#halt(e);
    } finally {
      this.#loopRunning = false;
    }
    // Inputs that arrived after the last drain still need a round.
    if (!this.#stopped && (this.#inbox.length > 0 || this.#ticksPending > 0)) this.#schedule();
  }

  #drainInbox(): void {
    for (; this.#ticksPending > 0; this.#ticksPending--) this.#core.tick();
    // Inputs enqueued by the inputs themselves run in this same drain.
    for (let i = 0; i < this.#inbox.length; i++) this.#inbox[i]!.run();
    this.#inbox.length = 0;
    this.#receivedWaiting = 0;
  }

  /** Ready step 1: one atomic write, synced exactly when the Ready says so (its durability rule). */
  #persist(rd: Ready): Promise<void> | void {
    if (rd.snapshot === null && rd.entries.length === 0 && rd.hardState === null) return;
    return this.#opts.storage.save({
      snapshot: rd.snapshot,
      entries: rd.entries,
      hardState: rd.hardState,
      sync: rd.mustSync,
    });
  }

  /** Ready steps 1a (restore), 2 (send), 3 (apply, serve reads) and 4 (advance), once step 1 is done. */
  #afterPersist(rd: Ready): void {
    if (rd.snapshot !== null) {
      const idx = rd.snapshot.metadata.index;
      if (idx > 0) this.#opts.stateMachine.restore(rd.snapshot.data);
      this.#applied = Math.max(this.#applied, idx);
      this.#snapshotIndex = idx;
      this.#opts.log?.(`raft: installed snapshot at ${idx}`);
    }
    // 2. Send.
    if (rd.messages.length > 0) this.#opts.transport.send(rd.messages);
    // 3. Apply, then serve reads.
    for (const e of rd.committedEntries) this.#apply(e);
    for (const rs of rd.readStates) {
      const key = new TextDecoder().decode(rs.context);
      const pending = this.#reads.get(key);
      if (pending !== undefined && pending.index < 0) pending.index = rs.index;
    }
    this.#serveReads();
    // 4. Advance.
    this.#core.advance(rd);
    if (rd.softState !== null) {
      this.#onSoftState(rd.softState.leader);
      this.#opts.onSoftState?.(rd.softState);
    }
  }

  #apply(e: Entry): void {
    if (e.index <= this.#applied) return; // covered by a snapshot restored in this or an earlier round
    if (e.index !== this.#applied + 1) {
      throw new Error(`raft driver: committed entry ${e.index} does not follow applied ${this.#applied}`);
    }
    let result: unknown;
    if (e.type === EntryType.Normal) {
      if (e.data.byteLength > 0) result = this.#opts.stateMachine.apply(e.data, e.index);
    } else if (e.type === EntryType.ConfChange && e.confChange !== null && e.confState !== null) {
      this.#opts.onConfChange?.(e.confChange, e.confState, e.index);
    }
    this.#applied = e.index;
    const p = this.#proposals.get(e.index);
    if (p !== undefined) {
      this.#proposals.delete(e.index);
      p.timer();
      // Another leader's entry took our slot: ours can never apply.
      if (p.term === e.term) p.resolve({ index: e.index, result });
      else p.reject(new NotLeader(this.#leaderHint()));
    }
  }

  #serveReads(): void {
    for (const [key, r] of this.#reads) {
      if (r.index >= 0 && r.index <= this.#applied) {
        this.#dropRead(key);
        r.resolve(r.index);
      }
    }
  }

  #dropRead(key: string): void {
    const r = this.#reads.get(key);
    if (r === undefined) return;
    r.timer();
    r.retry();
    this.#reads.delete(key);
  }

  #onSoftState(leader: NodeId | null): void {
    for (const t of this.#transfers) {
      if (leader === t.to) {
        t.timer();
        this.#transfers.delete(t);
        t.resolve();
      }
    }
  }

  #shouldSnapshot(): boolean {
    return this.#applied - this.#snapshotIndex >= this.#opts.snapshotEntries;
  }

  #takeSnapshot(): Promise<void> | void {
    const index = this.#applied;
    const snap = this.#core.compact(index, this.#opts.stateMachine.snapshot());
    const done = (): void => {
      this.#snapshotIndex = index;
      this.#opts.log?.(`raft: snapshot at ${index}, log compacted`);
    };
    const written = this.#opts.storage.compact(snap);
    if (written === undefined) return done();
    return written.then(done);
  }

  #halt(error: unknown): void {
    if (this.#stopped) return;
    const stopped =
      error instanceof Stopped ? error : new Stopped(error instanceof Error ? error.message : String(error));
    this.#stopped = stopped;
    this.#opts.ticker.stop();
    for (const item of this.#inbox.splice(0)) item.fail?.(stopped);
    for (const p of this.#proposals.values()) {
      p.timer();
      p.reject(stopped);
    }
    this.#proposals.clear();
    for (const key of [...this.#reads.keys()]) {
      const r = this.#reads.get(key)!;
      this.#dropRead(key);
      r.reject(stopped);
    }
    for (const t of this.#transfers) {
      t.timer();
      t.reject(stopped);
    }
    this.#transfers.clear();
    if (!(error instanceof Stopped)) this.#opts.onFatal?.(error);
  }
}
