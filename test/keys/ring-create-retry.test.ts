/**
 * CreateKey with a client request id on the ring (src/keys/key-service.ts insertReplicated), with the
 * real key service of a peer core on a real ReplicationNode and two more nodes in this process (real
 * gRPC, real LevelDB): a create whose write quorum is lost (both other primaries down) fails
 * UNAVAILABLE after its own copy landed; retried with the same id once they are back, it sends the
 * same record again, so the partition holds exactly one key for that request (not an orphan plus a
 * second key), and a retry after success returns that key again.
 */
import test from "ava";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RingBuilder, scopePartition } from "../../cluster/ring/index.js";
import { DevelopmentFileProtector } from "../../src/crypto/development-file-protector.js";
import { LockboxError } from "../../src/errors.js";
import type { KeyReplication } from "../../src/keys/key-replication.js";
import { openPeerCore } from "../../src/peer/peer-core.js";
import type { ReplicationNode } from "../../src/replication/replication-node.js";
import {
  closeNodes,
  ringRecord,
  startNode,
  startServer,
  stopServer,
  type TestNode,
} from "../replication/replication-nodes.js";
import { admin } from "./key-service-fixture.js";

const SALT = new Uint8Array(32).fill(7);
const POWER = 4;

test("a create that lost its write quorum, retried with the same client request id, leaves one key", async (t) => {
  t.timeout(120_000);
  const dir = await mkdtemp(join(tmpdir(), "lockbox-ring-retry-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const protector = await DevelopmentFileProtector.create(join(dir, "master.key"), { log: () => {} });
  let nodeA: ReplicationNode | undefined;
  const replication: KeyReplication = {
    read: (id) => nodeA!.keys.read(id),
    write: (k) => nodeA!.keys.write(k),
    readPartition: (p) => nodeA!.keys.readPartition(p),
    stamp: () => nodeA!.keys.stamp(),
    settle: (id) => nodeA!.keys.settle(id),
  };
  const core = await openPeerCore({
    dataDir: join(dir, "db"),
    masterKey: protector,
    clusterSalt: SALT,
    partitionPower: POWER,
    replication,
  });
  const members = ["a", "b", "c"];
  const nodes: TestNode[] = [];
  t.teardown(async () => {
    await closeNodes(nodes.slice(1));
    await closeNodes(nodes.slice(0, 1), false);
    await core.close();
  });
  nodes.push(await startNode(t, "a", members, { salt: SALT, power: POWER, store: core.store }));
  nodes.push(await startNode(t, "b", members, { salt: SALT, power: POWER }));
  nodes.push(await startNode(t, "c", members, { salt: SALT, power: POWER }));
  nodeA = nodes[0]!.node;
  const builder = RingBuilder.create({ partPower: POWER, replicas: 3, minPartHours: 0 });
  for (const id of members) builder.addPeer({ id, zone: `z-${id}`, weight: 1 });
  builder.rebalance(0);
  const addresses = new Map(nodes.map((n) => [n.id, n.address]));
  for (const n of nodes) n.node.sync({ ring: ringRecord(builder), addresses });

  const request = (name: string, clientRequestId: string) => ({
    project: "p",
    scope: "vol",
    name,
    algorithm: "AES" as const,
    bitLength: 256,
    clientRequestId,
  });
  const first = await core.keys.createKey(admin, request("k1", "req-1"));
  t.is((await core.keys.createKey(admin, request("k1", "req-1"))).id, first.id, "a retry after success");

  stopServer(nodes[1]!);
  stopServer(nodes[2]!);
  const failed = await t.throwsAsync(core.keys.createKey(admin, request("k2", "req-2")));
  t.true(failed instanceof LockboxError && failed.code === "UNAVAILABLE", String(failed));
  await startServer(nodes[1]!);
  await startServer(nodes[2]!);

  let second: Awaited<ReturnType<typeof core.keys.createKey>> | undefined;
  const deadline = Date.now() + 60_000;
  while (second === undefined && Date.now() < deadline) {
    try {
      second = await core.keys.createKey(admin, request("k2", "req-2"));
    } catch (e) {
      if (!(e instanceof LockboxError && e.code === "UNAVAILABLE")) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  t.not(second, undefined, "the retry succeeded once the other primaries were back");
  const partition = scopePartition(SALT, "p", "vol", POWER);
  const k2 = (await nodeA.keys.readPartition(partition)).filter((k) => k.fields.name === "k2");
  t.deepEqual(
    k2.map((k) => k.fields.id),
    [second!.id],
    "one key for the request: the failed attempt's record was sent again, not a second key",
  );
  t.is((await core.keys.createKey(admin, request("k2", "req-2"))).id, second!.id);
  const got = await core.keys.getKey(admin, { id: second!.id });
  t.is(got.material.length, 32);
});
