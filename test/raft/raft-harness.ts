import {
  EntryType,
  bootstrapSnapshot,
  type Entry,
  type Message,
  type RaftConfig,
  type RaftNode,
  type ReadState,
  type Ready,
} from "../../cluster/raft/core/index.js";
import { RaftDriver } from "../../cluster/raft/driver/raft-driver.js";
import type { SnapshotOutcome } from "../../cluster/raft/driver/peer-transport.js";
import type { Scheduler } from "../../cluster/raft/driver/scheduler.js";
import { Prng } from "../sim/prng.js";
import { SimDisk } from "../sim/sim-disk.js";

/** Bound on delivery rounds in one pump (a livelock guard for tests). */
const PUMP_ROUNDS_MAX = 1000;

export interface HarnessNode {
  id: string;
  /** The production driver running this node (its Ready loop is the one under test). */
  driver: RaftDriver;
  /** The node's core, reached through driver.withCore(): every call is followed by a driver round. */
  core: RaftNode;
  disk: SimDisk;
  applied: Entry[];
  readStates: ReadState[];
  /** Every Ready handed out, for tests that inspect the IO contract. */
  readies: Ready[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();
export const bytes = (s: string): Uint8Array => enc.encode(s);
export const text = (b: Uint8Array): string => dec.decode(b);

/**
 * A synchronous cluster for unit tests (etcd raft_test.go `network`) of production RaftDrivers over
 * in-memory disks: the drivers' deferred calls and sent messages wait until pump(), which runs them and
 * delivers messages until the cluster is quiet; `cut`, `isolate` and `heal` control links; `filter` can
 * drop or inspect. Tests drive each core directly through `node.core` (driver.withCore).
 */
export class Cluster {
  readonly nodes = new Map<string, HarnessNode>();
  private readonly cuts = new Set<string>();
  filter: ((m: Message) => boolean) | null = null;
  /** Messages handed to the network, in order (after cuts and filter). */
  readonly delivered: Message[] = [];
  private readonly prng: Prng;
  /** The drivers' `soon` calls, run by pump(). Deadlines (`after`) never fire: tests count ticks. */
  private soonQueue: { id: string; fn: () => void }[] = [];
  private scheduler(id: string): Scheduler {
    return {
      soon: (fn) => {
        this.soonQueue.push({ id, fn });
      },
      after: () => () => {},
    };
  }
  private outbox: Message[] = [];

  constructor(
    voters: string[],
    readonly config: Partial<Omit<RaftConfig, "id" | "random">> = {},
    seed = 1,
  ) {
    this.prng = new Prng(seed);
    for (const id of voters) this.add(id, new SimDisk(bootstrapSnapshot(voters)));
  }

  add(id: string, disk: SimDisk): HarnessNode {
    const n = this.start(id, disk);
    this.nodes.set(id, n);
    return n;
  }

  private start(id: string, disk: SimDisk): HarnessNode {
    const n = { id, disk, applied: [], readStates: [], readies: [] } as unknown as HarnessNode;
    let deliver: (m: Message) => void = () => {};
    let snapshotSent: (to: string, outcome: SnapshotOutcome) => void = () => {};
    n.driver = RaftDriver.startSync({
      config: this.cfg(id),
      storage: disk,
      transport: {
        start: (onMessage, onSnapshotSent) => {
          deliver = onMessage;
          if (onSnapshotSent !== undefined) snapshotSent = onSnapshotSent;
        },
        send: (messages) => {
          this.outbox.push(...messages);
        },
        setPeerAddress: () => {},
        removePeer: () => {},
        close: async () => {},
      },
      stateMachine: { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: () => {} },
      ticker: { start: () => {}, stop: () => {} },
      scheduler: this.scheduler(id),
      onReady: (rd) => {
        n.readies.push(rd);
        n.applied.push(...rd.committedEntries);
        n.readStates.push(...rd.readStates);
      },
      onFatal: (e) => {
        throw e;
      },
    });
    const driver = n.driver;
    // The node's core itself (so tests can read its fields), with every method called through
    // driver.withCore: the driver runs a round for whatever the call produced at the next pump().
    const real = driver.withCore((core) => core);
    n.core = new Proxy(real, {
      get: (target, name, receiver) => {
        const v: unknown = Reflect.get(target, name, receiver);
        if (typeof v !== "function") return v;
        return (...args: unknown[]) =>
          driver.withCore((core) => (v as (...a: unknown[]) => unknown).apply(core, args));
      },
    });
    this.deliverTo.set(id, (m) => deliver(m));
    this.snapshotReports.set(id, (to, outcome) => snapshotSent(to, outcome));
    return n;
  }

  private readonly deliverTo = new Map<string, (m: Message) => void>();
  private readonly snapshotReports = new Map<string, (to: string, outcome: SnapshotOutcome) => void>();

  /** `from`'s transport reports how a snapshot send to `to` ended (the driver's onSnapshotSent). */
  reportSnapshotSent(from: string, to: string, outcome: SnapshotOutcome): void {
    this.snapshotReports.get(from)!(to, outcome);
  }

  cfg(id: string): RaftConfig {
    return {
      id,
      electionTicks: 10,
      heartbeatTicks: 1,
      inflightMax: 256,
      batchEntriesMax: 64,
      batchBytesMax: 1 << 20,
      checkQuorum: false,
      preVote: false,
      random: this.prng.fork(),
      ...this.config,
    };
  }

  node(id: string): HarnessNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** Restart `id` from what its disk holds (everything not persisted is lost). */
  restart(id: string): HarnessNode {
    const old = this.node(id);
    void old.driver.stop("restart");
    const n = this.start(id, old.disk);
    this.nodes.set(id, n);
    return n;
  }

  cut(a: string, b: string): void {
    this.cuts.add(`${a}->${b}`);
    this.cuts.add(`${b}->${a}`);
  }

  isolate(id: string): void {
    for (const o of this.nodes.keys()) if (o !== id) this.cut(id, o);
  }

  heal(): void {
    this.cuts.clear();
  }

  /** Run the pending rounds of the drivers (of `only`, when given); returns the messages they sent. */
  private runDrivers(only?: string): Message[] {
    for (let i = 0; i < 10_000; i++) {
      const due = this.soonQueue.filter((s) => only === undefined || s.id === only);
      if (due.length === 0) break;
      this.soonQueue = this.soonQueue.filter((s) => !due.includes(s));
      for (const s of due) s.fn();
    }
    const out = this.outbox.filter((m) => only === undefined || m.from === only);
    this.outbox = this.outbox.filter((m) => !out.includes(m));
    return out;
  }

  /** Run one node's pending driver rounds; returns the messages it sent (not delivered). */
  drainOne(n: HarnessNode): Message[] {
    return this.runDrivers(n.id);
  }

  /** Deliver messages until no node has anything left to say. */
  pump(): void {
    for (let round = 0; round < PUMP_ROUNDS_MAX; round++) {
      const msgs = this.runDrivers();
      if (msgs.length === 0) return;
      for (const m of msgs) {
        if (this.cuts.has(`${m.from}->${m.to}`)) continue;
        if (this.filter !== null && !this.filter(m)) continue;
        const deliver = this.deliverTo.get(m.to);
        if (deliver === undefined || !this.nodes.has(m.to)) continue;
        this.delivered.push(m);
        deliver(m);
      }
    }
    throw new Error("pump did not quiesce");
  }

  /** Tick only `id` until it starts campaigning, then let the election run. */
  campaign(id: string): void {
    const n = this.node(id);
    for (let i = 0; i < 40 && n.core.status().role === "follower"; i++) {
      n.core.tick();
      this.pump();
    }
    this.pump();
  }

  /** Tick only `id` until it is leader (bounded), letting elections run. */
  elect(id: string): void {
    const n = this.node(id);
    for (let i = 0; i < 200 && n.core.status().role !== "leader"; i++) {
      n.core.tick();
      this.pump();
    }
  }

  /** Tick every node `ticks` times, pumping after each tick. */
  tickAll(ticks: number): void {
    for (let t = 0; t < ticks; t++) {
      for (const n of this.nodes.values()) n.core.tick();
      this.pump();
    }
  }

  leader(): HarnessNode | undefined {
    return [...this.nodes.values()].find((n) => n.core.status().role === "leader");
  }

  /** Application data applied by `id`, in order (empty entries skipped). */
  appliedData(id: string): string[] {
    return this.node(id)
      .applied.filter((e) => e.type === EntryType.Normal && e.data.length > 0)
      .map((e) => text(e.data));
  }
}
