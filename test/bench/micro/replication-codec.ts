/**
 * Micro benchmark of what replication costs per record on the CreateKey path, in process:
 * encodeReplicatedKey (once per create, by the coordinator), decodeReplicatedKey (once per replica
 * put), validateKey, a write's PlaceQuorum, and a replica's put of a new record from a batch of 64
 * (over an in-memory store), remote (bytes only) and local (the coordinator's own copy).
 *
 *   node --expose-gc --min-semi-space-size=16 dist/test/bench/micro/replication-codec.js [--before DIR] [--calls N]
 *
 * `--before DIR`: the dist/ of another build (e.g. a checkout of main), timed side by side with this
 * one in the same run; without it, "before" is the reference codec the codec replaced
 * (test/replication/reference-key-codec.ts; replica puts are then timed for this build only).
 * Prints µs per call and bytes allocated per call (heap growth over a run without a scavenge).
 */
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type { ReplicatedKey } from "../../../cluster/replication/replicated-key.js";
import * as current from "../../../cluster/replication/index.js";
import { Replica } from "../../../src/replication/replica.js";
import type { ReplicaStore, ReplicaStoreOp } from "../../../src/replication/replica-store.js";
import { referenceDecode, referenceEncode } from "../../replication/reference-key-codec.js";

const { values } = parseArgs({
  options: { before: { type: "string" }, calls: { type: "string", default: "100000" } },
});
const CALLS = Number(values.calls);
const WARMUP = 20_000;
const gc = (globalThis as { gc?: () => void }).gc;

function sample(i: number): ReplicatedKey {
  const stamp = { wallMs: 1_764_000_000_000 + i, logical: i % 3, peer: "peer-2" };
  return {
    fields: {
      id: `0190a3b4-${String(i % 10000).padStart(4, "0")}-8000-8000-00000000000${i % 10}`,
      project: "7d1f0b6a2c3e4d5f8a9b0c1d2e3f4a5b",
      scope: "volume-0001",
      name: "bench-key",
      algorithm: "AES",
      bitLength: 256,
      createdAtMs: 1_764_000_000_000 + i,
      parentId: "",
    },
    created: stamp,
    wrappedMaterial: new Uint8Array(65).fill(i & 0xff),
    state: { value: "active", stamp },
    tombstone: null,
    grants: [],
    consumers: [],
  };
}

interface Row {
  name: string;
  beforeUs?: number;
  afterUs: number;
  beforeBytes?: number;
  /** Not measured for the asynchronous replica puts. */
  afterBytes?: number;
}

function time(fn: (i: number) => unknown, calls: number): number {
  for (let i = 0; i < WARMUP; i++) fn(i);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / 1000 / calls;
}

/**
 * Bytes allocated per call: heap (and array buffer) growth over short runs. A scavenge can only
 * shrink a run's growth, so the largest of a few runs is the one no scavenge cut short (run with
 * --min-semi-space-size=16 so most runs fit).
 */
function allocated(fn: (i: number) => unknown): number {
  const n = 1_000;
  let most = 0;
  for (let rep = 0; rep < 7; rep++) {
    gc?.();
    const m0 = process.memoryUsage();
    for (let i = 0; i < n; i++) fn(i);
    const m1 = process.memoryUsage();
    most = Math.max(most, m1.heapUsed - m0.heapUsed + (m1.arrayBuffers - m0.arrayBuffers));
  }
  return Math.round(most / n);
}

async function timeAsync(fn: (i: number) => Promise<unknown>, calls: number): Promise<number> {
  for (let i = 0; i < WARMUP / 64; i++) await fn(i);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) await fn(i);
  return Number(process.hrtime.bigint() - t0) / 1000 / calls;
}

class MemoryStore implements ReplicaStore {
  readonly records = new Map<string, Uint8Array>();
  getRecord(partition: number, id: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.records.get(`${partition}/${id}`));
  }
  scanPartition(): Promise<never[]> {
    return Promise.resolve([]);
  }
  partitions(): Promise<number[]> {
    return Promise.resolve([]);
  }
  hints(): Promise<never[]> {
    return Promise.resolve([]);
  }
  quarantined(): Promise<number[]> {
    return Promise.resolve([]);
  }
  write(ops: readonly ReplicaStoreOp[]): Promise<void> {
    for (const op of ops) {
      if (op.type === "put-record") this.records.set(`${op.partition}/${op.id}`, op.value);
      else if (op.type === "del-record") this.records.delete(`${op.partition}/${op.id}`);
    }
    return Promise.resolve();
  }
}

interface ReplicaLike {
  handle(batch: { from: string; items: unknown[] }): Promise<unknown>;
  handleLocal?(batch: { from: string; items: unknown[] }): Promise<unknown>;
}

/** µs per put of a new record, in batches of 64 (records pre-encoded; ids fresh per round). */
async function replicaPuts(
  ReplicaCtor: new (o: object) => ReplicaLike,
  encode: (k: ReplicatedKey) => Uint8Array,
  local: boolean,
): Promise<number> {
  const store = new MemoryStore();
  const replica = new ReplicaCtor({
    self: "peer-1",
    store,
    partitionOfKey: () => 0,
    partitions: 1,
    nowMs: () => 1_764_000_000_000,
    reclaimAgeMs: 86_400_000,
  });
  const BATCH = 64;
  const records = Array.from({ length: BATCH * 4 }, (_, i) => sample(i));
  const encoded = records.map(encode);
  let round = 0;
  const batch = (): Promise<unknown> => {
    // Fresh ids each round: every put is a create (nothing stored under the id yet).
    store.records.clear();
    const base = (round++ % 4) * BATCH;
    const items = encoded.slice(base, base + BATCH).map((record, i) => ({
      kind: "put",
      partition: 0,
      record,
      ...(local ? { decoded: records[base + i] } : {}),
    }));
    const b = { from: local ? "peer-1" : "peer-2", items };
    return local && replica.handleLocal !== undefined ? replica.handleLocal(b) : replica.handle(b);
  };
  const rounds = Math.max(50, Math.round(CALLS / BATCH / 4));
  return (await timeAsync(batch, rounds)) / BATCH;
}

const rows: Row[] = [];
const records = Array.from({ length: 1024 }, (_, i) => sample(i));
const pick = (i: number): ReplicatedKey => records[i & 1023]!;

type Codec = { encode: (k: ReplicatedKey) => Uint8Array; decode: (b: Uint8Array) => ReplicatedKey };
let before:
  | (Codec & {
      validateKey?: (k: ReplicatedKey) => void;
      Replica?: unknown;
      PlaceQuorum?: new (primaries: readonly string[]) => unknown;
    })
  | undefined;
if (values.before !== undefined) {
  const root = pathToFileURL(values.before.replace(/\/?$/, "/")).href;
  const cluster = await import(`${root}cluster/replication/index.js`);
  const replica = await import(`${root}src/replication/replica.js`);
  before = {
    encode: cluster.encodeReplicatedKey,
    decode: cluster.decodeReplicatedKey,
    validateKey: cluster.validateKey,
    Replica: replica.Replica,
    PlaceQuorum: cluster.PlaceQuorum,
  };
} else {
  before = { encode: referenceEncode, decode: referenceDecode };
}
const after: Codec = { encode: current.encodeReplicatedKey, decode: current.decodeReplicatedKey };
const encodedAfter = records.map(after.encode);
for (let i = 0; i < records.length; i++)
  if (!Buffer.from(before.encode(records[i]!)).equals(encodedAfter[i]!))
    throw new Error("the two builds encode a record differently");

function compare(name: string, b: ((i: number) => unknown) | undefined, a: (i: number) => unknown): void {
  const row: Row = { name, afterUs: 0, afterBytes: 0 };
  // Interleaved, so machine load hits both alike.
  if (b !== undefined) row.beforeUs = time(b, CALLS);
  row.afterUs = time(a, CALLS);
  if (b !== undefined) row.beforeUs = Math.min(row.beforeUs!, time(b, CALLS));
  row.afterUs = Math.min(row.afterUs, time(a, CALLS));
  if (b !== undefined) row.beforeBytes = allocated(b);
  row.afterBytes = allocated(a);
  rows.push(row);
}

compare(
  "encodeReplicatedKey",
  (i) => before!.encode(pick(i)),
  (i) => after.encode(pick(i)),
);
compare(
  "decodeReplicatedKey",
  (i) => before!.decode(encodedAfter[i & 1023]!),
  (i) => after.decode(encodedAfter[i & 1023]!),
);
compare(
  "validateKey",
  before.validateKey === undefined ? undefined : (i) => before!.validateKey!(pick(i)),
  (i) => current.validateKey(pick(i)),
);
const PRIMARIES = ["peer-1", "peer-2", "peer-3"];
compare(
  "new PlaceQuorum (3 primaries)",
  before.PlaceQuorum === undefined ? undefined : () => new before!.PlaceQuorum!(PRIMARIES),
  () => new current.PlaceQuorum(PRIMARIES),
);
for (const local of [false, true]) {
  const name = `Replica put, new record (${local ? "local" : "remote"})`;
  const BeforeReplica = before.Replica as (new (o: object) => ReplicaLike) | undefined;
  const row: Row = { name, afterUs: 0 };
  for (let round = 0; round < 2; round++) {
    if (BeforeReplica !== undefined) {
      const us = await replicaPuts(BeforeReplica, before.encode, local);
      row.beforeUs = Math.min(row.beforeUs ?? Infinity, us);
    }
    const us = await replicaPuts(Replica as unknown as new (o: object) => ReplicaLike, after.encode, local);
    row.afterUs = round === 0 ? us : Math.min(row.afterUs, us);
  }
  rows.push(row);
}

const fmt = (x: number | undefined, digits: number): string => (x === undefined ? "-" : x.toFixed(digits));
console.log(
  `${"function".padEnd(40)} ${"before µs".padStart(10)} ${"after µs".padStart(10)} ${"before B".padStart(9)} ${"after B".padStart(9)}`,
);
for (const r of rows) {
  console.log(
    `${r.name.padEnd(40)} ${fmt(r.beforeUs, 2).padStart(10)} ${fmt(r.afterUs, 2).padStart(10)} ${fmt(r.beforeBytes, 0).padStart(9)} ${fmt(r.afterBytes, 0).padStart(9)}`,
  );
}
console.log(JSON.stringify({ calls: CALLS, before: values.before ?? "reference codec", rows }));
