/**
 * Key services on the ring, in this process: three peer cores (openPeerCore, as serving peers build
 * them) on three real ReplicationNodes (real gRPC with peer mTLS, real LevelDB), one CMK and one
 * project-KEK store shared as the control state shares them, and one ring (N = 3) over the three.
 * Everything is closed and removed in the test's teardown.
 */
import type { ExecutionContext } from "ava";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RingBuilder } from "../../cluster/ring/index.js";
import { DevelopmentFileProtector } from "../../src/crypto/development-file-protector.js";
import type { KeyReplication } from "../../src/keys/key-replication.js";
import type { KekStore } from "../../src/keys/project-keks.js";
import { openPeerCore, type PeerCore } from "../../src/peer/peer-core.js";
import { ManualClock } from "../keys/key-service-fixture.js";
import { closeNodes, ringRecord, startNode, type TestNode } from "../replication/replication-nodes.js";

export type RingKeys = PeerCore["keys"];

export interface RingKeyCores {
  /** The key service of members a, b and c. */
  keys: [RingKeys, RingKeys, RingKeys];
  cores: PeerCore[];
  nodes: TestNode[];
  /** The clock every core reads; advance it to expire what has a lifetime. */
  clock: ManualClock;
}

export async function startRingKeyCores(
  t: ExecutionContext,
  options: { salt: Uint8Array; partitionPower: number; dirPrefix: string },
): Promise<RingKeyCores> {
  const { salt, partitionPower: power } = options;
  const dir = await mkdtemp(join(tmpdir(), `${options.dirPrefix}-`));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const protector = await DevelopmentFileProtector.create(join(dir, "master.key"), { log: () => {} });
  const keks = new Map<string, Uint8Array>();
  const kekStore: KekStore = {
    get: async (project) => keks.get(project),
    createIfAbsent: async (project, wrapped) => {
      if (!keks.has(project)) keks.set(project, wrapped);
      return keks.get(project)!;
    },
  };
  const clock = new ManualClock(Date.now());
  const members = ["a", "b", "c"];
  const cores: PeerCore[] = [];
  const nodes: TestNode[] = [];
  t.teardown(async () => {
    await closeNodes(nodes, false);
    for (const c of cores) await c.close();
  });
  for (const id of members) {
    const at = nodes.length;
    const replication: KeyReplication = {
      read: (k) => nodes[at]!.node.keys.read(k),
      write: (k) => nodes[at]!.node.keys.write(k),
      readPartition: (p) => nodes[at]!.node.keys.readPartition(p),
      stamp: () => nodes[at]!.node.keys.stamp(),
      settle: (k) => nodes[at]!.node.keys.settle(k),
    };
    const core = await openPeerCore({
      dataDir: join(dir, id),
      masterKey: protector,
      clusterSalt: salt,
      partitionPower: power,
      kekStore,
      replication,
      clock,
    });
    cores.push(core);
    nodes.push(await startNode(t, id, members, { salt, power, store: core.store }));
  }
  const builder = RingBuilder.create({ partPower: power, replicas: 3, minPartHours: 0 });
  for (const id of members) builder.addPeer({ id, zone: `z-${id}`, weight: 1 });
  builder.rebalance(0);
  const addresses = new Map(nodes.map((n) => [n.id, n.address]));
  for (const n of nodes) n.node.sync({ ring: ringRecord(builder), addresses });
  return { keys: cores.map((x) => x.keys) as [RingKeys, RingKeys, RingKeys], cores, nodes, clock };
}
