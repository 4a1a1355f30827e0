import type {
  StoredHint,
  ReplicaStore,
  ReplicaStoreOp,
  StoredRecord,
} from "../../../src/replication/replica-store.js";
import type { Prng } from "../prng.js";
import type { SimProcess } from "../sim-scheduler.js";
import type { Scheduler } from "../../../cluster/raft/driver/scheduler.js";
import { hintAtMs } from "./replication-checker.js";

/** Storage faults of one run. */
export interface DiskFaults {
  syncDelayMsMin: number;
  syncDelayMsMax: number;
  /** A sync fails (EIO) and every batch in it is refused. */
  eioRate: number;
}

/** A committed batch, as the checkers see it (before it is applied). */
export type BatchObserver = (
  peer: string,
  ops: readonly ReplicaStoreOp[],
  before: ReadonlyMap<string, Uint8Array>,
) => void;

function u64(n: number): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.floor(n / 2 ** 32), 0);
  b.writeUInt32BE(n >>> 0, 4);
  return new Uint8Array(b);
}

const recKey = (p: number, id: string): string => `r/${p.toString(16).padStart(4, "0")}/${id}`;
const hintKey = (p: number, id: string, owner: string): string =>
  `h/${p.toString(16).padStart(4, "0")}/${id}/${owner}`;
const quarantineKey = (p: number): string => `q/${p.toString(16).padStart(4, "0")}`;

/**
 * One peer's disk, surviving its crashes, with LevelDB's guarantees as the replica relies on them:
 * a batch becomes visible when its sync completes, atomically, in order; a crash loses every batch not
 * yet synced (a torn last batch is discarded whole, as LevelDB's log recovery does). `corrupt` flips a
 * byte of a synced record (bit rot), which the replica must detect by the record's checksum.
 */
export class SimReplicaDisk {
  /** What survives a crash (and what the running process reads: writes are visible once synced). */
  readonly durable = new Map<string, Uint8Array>();
  corrupted = 0;
  /** partition -> id -> record: the same values as `durable`, indexed for scans. */
  private readonly byPartition = new Map<number, Map<string, Uint8Array>>();

  constructor(
    readonly peer: string,
    private readonly observe: BatchObserver,
  ) {}

  /** Flips one byte of a random stored record; returns its key, or null when there is none. */
  corrupt(prng: Prng): string | null {
    const keys = [...this.durable.keys()].filter((k) => k.startsWith("r/")).sort();
    if (keys.length === 0) return null;
    const k = prng.pick(keys);
    const v = new Uint8Array(this.durable.get(k)!);
    v[prng.nextInt(v.length)]! ^= 1 << prng.nextInt(8);
    this.durable.set(k, v);
    this.index(Number.parseInt(k.slice(2, 6), 16), k.slice(7), v);
    this.corrupted += 1;
    return k;
  }

  apply(ops: readonly ReplicaStoreOp[]): void {
    this.observe(this.peer, ops, this.durable);
    for (const op of ops) {
      switch (op.type) {
        case "put-record":
          this.durable.set(recKey(op.partition, op.id), op.value);
          this.index(op.partition, op.id, op.value);
          break;
        case "del-record":
          this.durable.delete(recKey(op.partition, op.id));
          this.index(op.partition, op.id, undefined);
          break;
        case "put-hint":
          this.durable.set(hintKey(op.partition, op.id, op.owner), u64(op.atMs));
          break;
        case "del-hint":
          this.durable.delete(hintKey(op.partition, op.id, op.owner));
          break;
        case "put-quarantine":
          this.durable.set(quarantineKey(op.partition), new Uint8Array(0));
          break;
        case "del-quarantine":
          this.durable.delete(quarantineKey(op.partition));
          break;
      }
    }
  }

  private index(partition: number, id: string, value: Uint8Array | undefined): void {
    let m = this.byPartition.get(partition);
    if (m === undefined) {
      m = new Map();
      this.byPartition.set(partition, m);
    }
    if (value === undefined) m.delete(id);
    else m.set(id, value);
  }

  /** One partition's records, sorted by id. */
  partitionRecords(partition: number): { id: string; value: Uint8Array }[] {
    const m = this.byPartition.get(partition);
    if (m === undefined) return [];
    return [...m]
      .map(([id, value]) => ({ id, value }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  record(partition: number, id: string): Uint8Array | undefined {
    return this.durable.get(recKey(partition, id));
  }

  /** Every record as (partition, id, bytes). */
  records(): { partition: number; id: string; value: Uint8Array }[] {
    const out: { partition: number; id: string; value: Uint8Array }[] = [];
    for (const [k, v] of this.durable) {
      if (!k.startsWith("r/")) continue;
      out.push({ partition: Number.parseInt(k.slice(2, 6), 16), id: k.slice(7), value: v });
    }
    return out;
  }

  hintCount(): number {
    let n = 0;
    for (const k of this.durable.keys()) if (k.startsWith("h/")) n++;
    return n;
  }
}

/**
 * The ReplicaStore one process incarnation sees of its disk: writes group-commit (one sync after a
 * drawn delay takes every batch queued by then); once the process is dead nothing it started completes.
 */
export class SimReplicaStore implements ReplicaStore {
  private queued: { ops: ReplicaStoreOp[]; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private syncing = false;
  syncs = 0;

  constructor(
    private readonly disk: SimReplicaDisk,
    private readonly proc: SimProcess,
    private readonly scheduler: Scheduler,
    private readonly prng: Prng,
    private readonly faults: DiskFaults,
  ) {}

  private read<T>(fn: () => T): Promise<T> {
    if (!this.proc.alive) return new Promise<T>(() => {});
    return Promise.resolve(fn());
  }

  getRecord(partition: number, id: string): Promise<Uint8Array | undefined> {
    return this.read(() => {
      const v = this.disk.record(partition, id);
      return v === undefined ? undefined : new Uint8Array(v);
    });
  }

  scanPartition(partition: number, limit: number): Promise<StoredRecord[]> {
    return this.read(() =>
      this.disk
        .partitionRecords(partition)
        .slice(0, limit)
        .map((r) => ({ id: r.id, value: new Uint8Array(r.value) })),
    );
  }

  partitions(): Promise<number[]> {
    return this.read(() => [...new Set(this.disk.records().map((r) => r.partition))].sort((a, b) => a - b));
  }

  hints(limit: number): Promise<StoredHint[]> {
    return this.read(() => {
      const out: StoredHint[] = [];
      for (const k of [...this.disk.durable.keys()].sort()) {
        if (!k.startsWith("h/")) continue;
        const rest = k.slice(7);
        const slash = rest.indexOf("/");
        out.push({
          partition: Number.parseInt(k.slice(2, 6), 16),
          id: rest.slice(0, slash),
          owner: rest.slice(slash + 1),
          atMs: hintAtMs(this.disk.durable.get(k)!),
        });
        if (out.length >= limit) break;
      }
      return out;
    });
  }

  quarantined(): Promise<number[]> {
    return this.read(() =>
      [...this.disk.durable.keys()]
        .filter((k) => k.startsWith("q/"))
        .map((k) => Number.parseInt(k.slice(2), 16))
        .sort((a, b) => a - b),
    );
  }

  write(ops: readonly ReplicaStoreOp[]): Promise<void> {
    if (!this.proc.alive) return new Promise<void>(() => {});
    const copy = ops.map((op) =>
      op.type === "put-record" ? { ...op, value: new Uint8Array(op.value) } : { ...op },
    );
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ ops: copy, resolve, reject });
      if (!this.syncing) {
        this.syncing = true;
        this.scheduler.after(this.prng.range(this.faults.syncDelayMsMin, this.faults.syncDelayMsMax), () =>
          this.sync(),
        );
      }
    });
  }

  private sync(): void {
    this.syncing = false;
    const group = this.queued;
    this.queued = [];
    if (!this.proc.alive || group.length === 0) return;
    this.syncs += 1;
    if (this.prng.chance(this.faults.eioRate)) {
      for (const g of group) g.reject(new Error("simulated EIO"));
      return;
    }
    for (const g of group) this.disk.apply(g.ops);
    for (const g of group) g.resolve();
  }
}
