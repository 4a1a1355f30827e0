import test, { type ExecutionContext } from "ava";
import * as grpc from "@grpc/grpc-js";
import { encodeReplicatedKey } from "../../cluster/replication/index.js";
import {
  createClusterCa,
  issueClientCertificate,
  issuePeerCertificate,
  type CertifiedKey,
} from "../../src/pki/certificate-authority.js";
import { BATCH_ITEMS_MAX } from "../../src/replication/peer-link.js";
import type { WireReplyFrame } from "../../src/replication/replica-wire-codec.js";
import { loadReplicationService } from "../../src/replication/replication-proto.js";
import { peerClientCredentials, testCa } from "../raft-process/peer-tls.js";
import { GrpcReplicaCluster } from "./grpc-replication-cluster.js";

const IDS = ["a", "b", "c"];
const METHOD = "/lockbox.v1.ReplicationService/Replicate";

interface CallOutcome {
  replies: WireReplyFrame[];
  status: grpc.StatusObject;
}

/**
 * Opens Replicate on `port` with `credentials`, writes `frames` (objects the proto serializer encodes,
 * or raw Buffers sent as they are), half-closes, and collects the replies and the final status.
 */
async function call(
  t: ExecutionContext,
  port: number,
  credentials: grpc.ChannelCredentials,
  frames: (object | Buffer)[],
  settleMs = 0,
): Promise<CallOutcome> {
  const Service = loadReplicationService();
  const method = (Service.service as grpc.ServiceDefinition).Replicate!;
  const client = new grpc.Client(`127.0.0.1:${port}`, credentials, {
    // Larger than the server's bound, so the server (not this client) refuses an oversized frame.
    "grpc.max_send_message_length": 1024 * 1024,
  });
  t.teardown(() => client.close());
  const stream = client.makeBidiStreamRequest(
    METHOD,
    (x: object | Buffer) => (Buffer.isBuffer(x) ? x : method.requestSerialize(x)),
    (b: Buffer) => method.responseDeserialize(b) as WireReplyFrame,
  );
  const replies: WireReplyFrame[] = [];
  stream.on("data", (r: WireReplyFrame) => replies.push(r));
  stream.on("error", () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
  for (const f of frames) stream.write(f);
  if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
  stream.end();
  return { replies, status: await status };
}

async function credentialsOf(leaf: CertifiedKey, ca: CertifiedKey): Promise<grpc.ChannelCredentials> {
  return grpc.credentials.createSsl(
    Buffer.from(ca.certificatePem),
    Buffer.from(leaf.privateKeyPem),
    Buffer.from(leaf.certificatePem),
  );
}

async function recordCount(c: GrpcReplicaCluster, id: string): Promise<number> {
  let n = 0;
  for (let p = 0; p < c.placement.partitions; p++)
    n += (await c.peer(id).replicaStore.scanPartition(p, 1_000)).length;
  return n;
}

test("a frame whose `from` names another peer than its certificate's ends the call PERMISSION_DENIED and reaches no replica", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS);
  const k = c.newKey();
  const partition = c.placement.partitionOfKey(k.fields.id);
  const out = await call(t, c.peer("c").port, await peerClientCredentials("a"), [
    {
      request_id: 1,
      from: "b",
      items: [{ partition, put: { record: encodeReplicatedKey(k), hint_for: "" } }],
    },
  ]);
  t.is(out.status.code, grpc.status.PERMISSION_DENIED, out.status.details);
  t.regex(out.status.details, /peer a may send only as itself/);
  t.deepEqual(out.replies, []);
  t.is(c.peer("c").service.counters.refusedSenderMismatch, 1);
  t.is(c.peer("c").replica.metrics.puts, 0);
  t.is(await c.recordOn("c", k), undefined);
});

test("a caller without a member peer certificate is refused before any frame is read: no certificate, another CA's peer certificate, a client (non-peer) certificate of the cluster CA, a peer the admission hook refuses", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS);
  const k = c.newKey();
  const frames = [
    {
      request_id: 1,
      from: "x",
      items: [
        {
          partition: c.placement.partitionOfKey(k.fields.id),
          put: { record: encodeReplicatedKey(k), hint_for: "" },
        },
      ],
    },
  ];
  const clusterCa = await testCa();
  const otherCa = await createClusterCa({ clusterId: "other" });
  const foreignPeer = await issuePeerCertificate(otherCa, { peerId: "x" });
  const cases: [string, grpc.ChannelCredentials, grpc.status][] = [
    [
      "no certificate",
      grpc.credentials.createSsl(Buffer.from(clusterCa.certificatePem)),
      grpc.status.UNAUTHENTICATED,
    ],
    [
      "another CA's peer certificate",
      grpc.credentials.createSsl(
        Buffer.from(clusterCa.certificatePem),
        Buffer.from(foreignPeer.privateKeyPem),
        Buffer.from(foreignPeer.certificatePem),
      ),
      grpc.status.UNAUTHENTICATED,
    ],
    [
      "a client certificate of the cluster CA",
      await credentialsOf(
        await issueClientCertificate(clusterCa, { identity: "x", role: "admin", projects: ["proj"] }),
        clusterCa,
      ),
      grpc.status.UNAUTHENTICATED,
    ],
    [
      "a peer of the cluster CA that is no member",
      await peerClientCredentials("x"),
      grpc.status.PERMISSION_DENIED,
    ],
  ];
  for (const [what, credentials, code] of cases) {
    const out = await call(t, c.peer("c").port, credentials, frames);
    // A handshake the TLS layer itself rejects ends UNAVAILABLE; otherwise the service says why.
    t.true(
      out.status.code === code ||
        (code === grpc.status.UNAUTHENTICATED && out.status.code === grpc.status.UNAVAILABLE),
      `${what}: ${grpc.status[out.status.code]} ${out.status.details}`,
    );
    t.deepEqual(out.replies, [], what);
  }
  t.is(c.peer("c").service.counters.callsAccepted, 0);
  t.is(c.peer("c").service.counters.framesReceived, 0);
  t.is(c.peer("c").service.counters.refusedNotAdmitted, 1);
  t.true(c.peer("c").service.counters.refusedUnauthenticated >= 1);
  t.is(c.peer("c").replica.metrics.puts, 0);
  t.is(await recordCount(c, "c"), 0);
});

test("hostile frames from a member get a clean refusal naming what is wrong and change nothing; good frames on the same call still work", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS);
  const port = c.peer("c").port;
  const creds = await peerClientCredentials("a");
  const k = c.newKey();
  const partition = c.placement.partitionOfKey(k.fields.id);
  const put = (record: Uint8Array, p = partition) => ({ partition: p, put: { record, hint_for: "" } });
  const good = encodeReplicatedKey(k);

  // Frames of bad shape are answered with an error under their request id; the call stays open.
  const shaped = await call(
    t,
    port,
    creds,
    [
      {
        request_id: 1,
        from: "a",
        items: Array.from({ length: BATCH_ITEMS_MAX + 1 }, () => ({ partition, digest: {} })),
      },
      { request_id: 2, from: "a", items: [] },
      { request_id: 3, from: "a", items: [{ partition }] },
      {
        request_id: 4,
        from: "a",
        items: [{ partition, pull: { buckets: Array.from({ length: 5000 }, () => 0) } }],
      },
      { request_id: 5, from: "a", items: [{ partition, get: { id: "" } }] },
      { request_id: 6, from: "a", items: [put(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))] },
      { request_id: 7, from: "a", items: [put(good, (partition + 1) % c.placement.partitions)] },
      { request_id: 8, from: "a", items: [put(good, 1 << 20)] },
      { request_id: 9, from: "a", items: [put(good)] },
    ],
    500,
  );
  t.is(shaped.status.code, grpc.status.OK, shaped.status.details);
  const byId = new Map(shaped.replies.map((r) => [r.request_id, r]));
  t.is(byId.size, 9, "every frame was answered");
  const refusal = (id: number) => byId.get(id)?.error;
  t.regex(refusal(1)?.message ?? "", /items: 513 items, at most 512/);
  t.regex(refusal(2)?.message ?? "", /items: empty/);
  t.regex(refusal(3)?.message ?? "", /items\[0\]\.kind: no item kind set/);
  t.regex(refusal(4)?.message ?? "", /items\[0\]\.pull\.buckets: more than 4096/);
  t.regex(refusal(5)?.message ?? "", /items\[0\]\.get\.id/);
  for (const id of [1, 2, 3, 4, 5]) {
    t.is(refusal(id)?.code, "INVALID_ARGUMENT");
    t.deepEqual(byId.get(id)?.results, []);
  }
  // Well-shaped frames with bad items: each item fails on its own.
  for (const id of [6, 7, 8]) {
    const r = byId.get(id)!;
    t.falsy(r.error);
    t.is(r.results.length, 1);
    t.is(r.results[0]?.failure?.code, "INVALID_ARGUMENT", `frame ${id}`);
  }
  t.deepEqual(Object.keys(byId.get(9)!.results[0]!).includes("put"), true);
  t.falsy(byId.get(9)!.results[0]!.failure, "the good put after them was accepted");

  // A frame above the server's 64 KiB request bound ends the call RESOURCE_EXHAUSTED.
  const big = await call(t, port, creds, [
    { request_id: 10, from: "a", items: [put(new Uint8Array(100 * 1024).fill(7))] },
  ]);
  t.is(big.status.code, grpc.status.RESOURCE_EXHAUSTED, big.status.details);
  // A frame without a request id cannot be answered: the call ends INVALID_ARGUMENT.
  const noId = await call(t, port, creds, [{ request_id: 0, from: "a", items: [put(good)] }]);
  t.is(noId.status.code, grpc.status.INVALID_ARGUMENT, noId.status.details);
  t.regex(noId.status.details, /request_id/);
  // Bytes that are no protobuf at all end the call with an error status.
  const garbage = await call(t, port, creds, [Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99])]);
  t.not(garbage.status.code, grpc.status.OK, garbage.status.details);

  // Nothing of it changed the replica: the one good record is all it holds.
  t.is(await recordCount(c, "c"), 1);
  t.truthy(await c.recordOn("c", k));
  t.is(c.peer("c").replica.metrics.writes, 1);
  // And the peer still serves: the link from b replicates to c as before.
  const k2 = c.newKey();
  await c.peer("b").coordinator.write(k2);
  const r = await c.peer("a").link.send("c", {
    from: "a",
    items: [{ kind: "get", partition: c.placement.partitionOfKey(k2.fields.id), id: k2.fields.id }],
  });
  t.true(r.results[0]?.ok);
});

test("a batch larger than one frame is cut into frames within the 64 KiB bound, and its answer, in parts within 64 KiB, gives results in item order", async (t) => {
  const c = await GrpcReplicaCluster.start(t, IDS);
  const a = c.peer("a");
  const keys = Array.from({ length: BATCH_ITEMS_MAX }, (_, i) => {
    const k = c.newKey(`vol-${i}`);
    return { ...k, fields: { ...k.fields, name: `k-${i}-${"n".repeat(100)}` } };
  });
  const items = keys.map((k) => ({
    kind: "put" as const,
    partition: c.placement.partitionOfKey(k.fields.id),
    record: encodeReplicatedKey(k),
  }));
  const bytes = items.reduce((n, i) => n + i.record.byteLength, 0);
  t.true(bytes > 64 * 1024, `${bytes} bytes of records: more than one frame`);
  const before = a.link.counters.framesSent;
  const puts = await a.link.send("b", { from: "a", items });
  t.true(puts.results.every((r) => r.ok));
  t.true(a.link.counters.framesSent - before >= 2);
  const repliesBefore = a.link.counters.repliesReceived;
  const gets = await a.link.send("b", {
    from: "a",
    items: keys.map((k) => ({
      kind: "get" as const,
      partition: c.placement.partitionOfKey(k.fields.id),
      id: k.fields.id,
    })),
  });
  gets.results.forEach((r, i) => {
    t.true(r.ok && r.kind === "get" && r.record !== null, `result ${i}`);
    if (r.ok && r.kind === "get") t.deepEqual(r.record, items[i]!.record, `result ${i} answers item ${i}`);
  });
  // The answer (over 64 KiB of records) came in parts, each within the server's 64 KiB send bound.
  t.true(a.link.counters.repliesReceived - repliesBefore >= 3);
  t.is(c.peer("b").service.counters.framesInvalid, 0);
});
