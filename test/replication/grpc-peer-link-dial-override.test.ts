/**
 * config.json `peerDialOverrides` on the replication link, over real gRPC and the real cluster CA: the
 * link dials the override instead of the member address, and the peer's identity is still checked, by
 * peer id and by the member address's host name.
 */
import test from "ava";
import { isLockboxError } from "../../src/errors.js";
import { GrpcPeerLink } from "../../src/replication/grpc-peer-link.js";
import type { ReplicaBatch } from "../../src/replication/peer-link.js";
import { peerTls } from "../raft-process/peer-tls.js";
import { GrpcReplicaCluster } from "./grpc-replication-cluster.js";

const digest: ReplicaBatch = { from: "a", items: [{ kind: "digest", partition: 0 }] };

async function linkOf(
  t: import("ava").ExecutionContext,
  memberAddress: string,
  override: string,
): Promise<GrpcPeerLink> {
  const link = new GrpcPeerLink({
    self: "a",
    tls: await peerTls("a"),
    peers: new Map([["b", memberAddress]]),
    dialOverrides: { b: override },
    requestTimeoutMs: 3_000,
  });
  t.teardown(() => link.close());
  return link;
}

test("a link dials the override for a peer, not its member address, and the peer answers", async (t) => {
  const c = await GrpcReplicaCluster.start(t, ["a", "b", "c"]);
  // Nothing listens at the member address's port 1: only the override can reach b.
  const link = await linkOf(t, "localhost:1", `127.0.0.1:${c.peer("b").port}`);
  const reply = await link.send("b", digest);
  t.is(reply.results.length, 1);
  t.is(c.peer("b").service.counters.itemsReceived, 1);
});

test("an override that leads to another peer's server is refused: the certificate must be the target's", async (t) => {
  const c = await GrpcReplicaCluster.start(t, ["a", "b", "c"]);
  const link = await linkOf(t, "localhost:1", `127.0.0.1:${c.peer("c").port}`);
  const e = await t.throwsAsync(link.send("b", digest));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
  t.is(c.peer("c").service.counters.itemsReceived, 0, "nothing reached the wrong peer");
});

test("the TLS name check stays on the member address's host: a host the target's certificate does not name is refused through the override", async (t) => {
  const c = await GrpcReplicaCluster.start(t, ["a", "b", "c"]);
  const link = await linkOf(t, "elsewhere.example:1", `127.0.0.1:${c.peer("b").port}`);
  const e = await t.throwsAsync(link.send("b", digest));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
  t.is(c.peer("b").service.counters.itemsReceived, 0);
});
