import {
  EntryType,
  RaftNode,
  bootstrapSnapshot,
  type Entry,
  type Message,
  type RaftConfig,
  type ReadState,
  type Ready,
} from "../../cluster/raft/core/index.js";
import { Prng } from "../sim/prng.js";
import { SimDisk } from "../sim/sim-disk.js";

/** Bound on delivery rounds in one pump (a livelock guard for tests). */
const PUMP_ROUNDS_MAX = 1000;

export interface HarnessNode {
  id: string;
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
 * A synchronous cluster of real cores for unit tests (etcd raft_test.go `network`): messages are delivered
 * until the cluster is quiet; `cut`, `isolate` and `heal` control links; `filter` can drop or inspect.
 */
export class Cluster {
  readonly nodes = new Map<string, HarnessNode>();
  private readonly cuts = new Set<string>();
  filter: ((m: Message) => boolean) | null = null;
  /** Messages handed to the network, in order (after cuts and filter). */
  readonly delivered: Message[] = [];
  private readonly prng: Prng;

  constructor(
    voters: string[],
    readonly config: Partial<Omit<RaftConfig, "id" | "random">> = {},
    seed = 1,
  ) {
    this.prng = new Prng(seed);
    for (const id of voters) this.add(id, new SimDisk(bootstrapSnapshot(voters)));
  }

  add(id: string, disk: SimDisk): HarnessNode {
    const core = new RaftNode(this.cfg(id), disk.load());
    const n: HarnessNode = { id, core, disk, applied: [], readStates: [], readies: [] };
    this.nodes.set(id, n);
    return n;
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
    const core = new RaftNode(this.cfg(id), old.disk.load());
    const n: HarnessNode = { ...old, core, applied: [], readStates: [], readies: [] };
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

  /** Handle one node's Ready per the contract; returns its messages. */
  drainOne(n: HarnessNode): Message[] {
    const out: Message[] = [];
    for (let i = 0; i < 100 && n.core.hasReady(); i++) {
      const rd = n.core.ready()!;
      n.readies.push(rd);
      n.disk.persistSnapshot(rd);
      n.disk.persistEntries(rd);
      n.disk.persistHardState(rd);
      out.push(...rd.messages);
      n.applied.push(...rd.committedEntries);
      n.readStates.push(...rd.readStates);
      n.core.advance(rd);
    }
    return out;
  }

  /** Deliver messages until no node has anything left to say. */
  pump(): void {
    for (let round = 0; round < PUMP_ROUNDS_MAX; round++) {
      const msgs: Message[] = [];
      for (const n of this.nodes.values()) msgs.push(...this.drainOne(n));
      if (msgs.length === 0) return;
      for (const m of msgs) {
        if (this.cuts.has(`${m.from}->${m.to}`)) continue;
        if (this.filter !== null && !this.filter(m)) continue;
        const to = this.nodes.get(m.to);
        if (to === undefined) continue;
        this.delivered.push(m);
        to.core.step(m);
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
