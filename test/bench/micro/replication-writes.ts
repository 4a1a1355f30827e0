/**
 * Replicated writes in one process, for profiling the replication path alone: three real
 * ReplicationNodes (each its own LevelDB and gRPC server on 127.0.0.1, peer mTLS), N = 3, and
 * `--concurrency` writers calling node a's `keys.write` (the coordinator) with new records for
 * `--seconds`. Prints writes per second and main-thread CPU µs per write (all three nodes share
 * this thread, so it is the whole replication cost of a create, key service excluded).
 *
 *   node [--cpu-prof] dist/test/bench/micro/replication-writes.js [--seconds 5] [--concurrency 64]
 */
import type { ExecutionContext } from "ava";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import type { ReplicatedKey } from "../../../cluster/replication/index.js";
import { placedKeyId, RingBuilder, scopeHash32 } from "../../../cluster/ring/index.js";
import { closeNodes, ringRecord, startNode, type TestNode } from "../../replication/replication-nodes.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    concurrency: { type: "string", default: "64" },
  },
});
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const SALT = new Uint8Array(16).fill(9);
const POWER = 8;

const teardowns: (() => unknown)[] = [];
const t = { teardown: (f: () => unknown) => teardowns.push(f) } as unknown as ExecutionContext;

const members = ["a", "b", "c"];
const nodes: TestNode[] = [];
for (const id of members) nodes.push(await startNode(t, id, members, { salt: SALT, power: POWER }));
const builder = RingBuilder.create({ partPower: POWER, replicas: 3, minPartHours: 0 });
for (const id of members) builder.addPeer({ id, zone: `z-${id}`, weight: 1 });
builder.rebalance(0);
const addresses = new Map(nodes.map((n) => [n.id, n.address]));
for (const n of nodes) n.node.sync({ ring: ringRecord(builder), addresses });

const coordinator = nodes[0]!.node;
// Ids and material from one random draw and 100 scope hashes: the profile shows replication, not this.
const scopes = Array.from({ length: 100 }, (_, i) => `volume-${i}`);
const scopeHashes = scopes.map((s) => scopeHash32(SALT, "bench", s));
const entropy = randomBytes(16 + 65);
function newKey(n: number): ReplicatedKey {
  const stamp = coordinator.keys.stamp();
  const random = entropy.subarray(0, 16);
  random.writeUInt32BE(n, 12);
  return {
    fields: {
      id: placedKeyId(scopeHashes[n % 100]!, random),
      project: "bench",
      scope: scopes[n % 100]!,
      name: `key-${n}`,
      algorithm: "AES",
      bitLength: 256,
      createdAtMs: stamp.wallMs,
      parentId: "",
    },
    created: stamp,
    wrappedMaterial: new Uint8Array(entropy.subarray(16)),
    state: { value: "active", stamp },
    tombstone: null,
    grants: [],
    consumers: [],
  };
}

let next = 0;
let done = 0;
async function writer(until: number): Promise<void> {
  while (Date.now() < until) {
    await coordinator.keys.write(newKey(next++));
    done += 1;
  }
}
await Promise.all(Array.from({ length: CONCURRENCY }, () => writer(Date.now() + 1_000))); // warm up
done = 0;
const cpu0 = process.cpuUsage();
const t0 = Date.now();
await Promise.all(Array.from({ length: CONCURRENCY }, () => writer(t0 + SECONDS * 1000)));
const elapsed = (Date.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
console.log(
  `${done} writes in ${elapsed.toFixed(1)} s: ${Math.round(done / elapsed)}/s, ` +
    `${((cpu.user + cpu.system) / done).toFixed(1)} µs CPU per write (process, all threads)`,
);
console.log(
  JSON.stringify({ writesPerSecond: done / elapsed, cpuUsPerWrite: (cpu.user + cpu.system) / done }),
);
await closeNodes(nodes);
for (const f of teardowns.reverse()) await f();
