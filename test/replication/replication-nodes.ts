/**
 * Real ReplicationNodes (src/replication/replication-node.ts) in this process, each on its own LevelDB
 * and its own gRPC server (127.0.0.1, free port, peer mTLS of a real test CA), for tests that hand the
 * nodes ring versions directly, as the control state would. `stopServer`/`startServer` close and reopen
 * a node's server on the same port (a peer that is down, then back).
 */
import * as grpc from "@grpc/grpc-js";
import type { ExecutionContext } from "ava";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeRing, type RingBuilder } from "../../cluster/ring/index.js";
import { peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { ReplicationNode, type ReplicationTunables } from "../../src/replication/replication-node.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";
import { peerServerCredentials, peerTls } from "../raft-process/peer-tls.js";

export const TEST_TUNABLES: ReplicationTunables = {
  writeDeadlineMs: 5_000,
  readDeadlineMs: 5_000,
  antiEntropyIntervalMs: 3_600_000, // off in effect unless a test runs a pass itself
  handoffIntervalMs: 3_600_000,
  reclaimAgeMs: 7 * 86_400_000,
  hintMaxAgeMs: 86_400_000,
};

export interface TestNode {
  id: string;
  node: ReplicationNode;
  store: PeerStore;
  server: grpc.Server;
  port: number;
  address: string;
}

export async function startNode(
  t: ExecutionContext,
  id: string,
  members: readonly string[],
  options: { salt: Uint8Array; power: number; store?: PeerStore },
): Promise<TestNode> {
  let store = options.store;
  if (store === undefined) {
    const dir = await mkdtemp(join(tmpdir(), `lockbox-node-${id}-`));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    store = await openPeerStore(dir);
  }
  const node = await ReplicationNode.open({
    self: id,
    store,
    clusterSalt: options.salt,
    partitionPower: options.power,
    tls: await peerTls(id),
    admitPeer: ({ peerId }) => (members.includes(peerId) ? null : "not a member"),
    tunables: TEST_TUNABLES,
    nowMs: () => Date.now(),
    log: () => {},
    // Every node gets each ring at once here: no need to wait for it to settle.
    handoverSettleMs: 10,
  });
  const n: TestNode = { id, node, store, server: new grpc.Server(), port: 0, address: "" };
  await startServer(n);
  n.address = `127.0.0.1:${n.port}`;
  return n;
}

/** Serves the node (again) on its port (a free one the first time). */
export async function startServer(n: TestNode): Promise<void> {
  const server = new grpc.Server(peerGrpcOptions());
  const svc = n.node.peerService();
  server.addService(svc.definition, svc.implementation);
  const credentials = await peerServerCredentials(n.id);
  n.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${n.port}`, credentials, (e, p) => (e ? reject(e) : resolve(p))),
  );
  n.server = server;
}

export function stopServer(n: TestNode): void {
  n.server.forceShutdown();
}

/** The ring record the control state would hold for `builder`'s current state. */
export function ringRecord(builder: RingBuilder): { version: number; bytes: string } {
  return { version: builder.version, bytes: Buffer.from(encodeRing(builder.toState())).toString("base64") };
}

export async function closeNodes(nodes: readonly TestNode[], closeStores = true): Promise<void> {
  for (const n of nodes) {
    await n.node.close();
    n.server.forceShutdown();
    if (closeStores) await n.store.close();
  }
}
