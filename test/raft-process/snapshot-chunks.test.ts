import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { createHash, randomBytes } from "node:crypto";
import { MessageType, type Message } from "../../cluster/raft/core/types.js";
import { GrpcPeerTransport, peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import {
  SnapshotAssembly,
  SnapshotChunkRefused,
  snapshotChunks,
  type SnapshotRefusal,
  type WireSnapshotChunk,
} from "../../src/raft/snapshot-chunks.js";
import { sleep } from "./control-cluster.js";
import { until } from "./mock-leader.js";
import { peerClientCredentials, peerServerCredentials, peerTls } from "./peer-tls.js";

const limits = { chunkBytesMax: 1024, snapshotBytesMax: 64 * 1024 };

function snapshotMessage(data: Uint8Array, from = "a", to = "b"): Message {
  return {
    type: MessageType.Snapshot,
    from,
    to,
    term: 3,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    rejectHintTerm: 0,
    snapshot: {
      metadata: { index: 40, term: 2, confState: { voters: ["a", "b", "c"], learners: [] } },
      data,
    },
    context: new Uint8Array(0),
  };
}

function refusal(f: () => unknown): SnapshotRefusal | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof SnapshotChunkRefused) return e.refusal;
    throw e;
  }
  return undefined;
}

test("snapshot chunks: split and reassembled, the image comes back byte for byte", (t) => {
  const data = randomBytes(10_000);
  const chunks = snapshotChunks("a", snapshotMessage(data), 1024);
  t.is(chunks.length, 10);
  t.true(chunks.every((c) => c.data.byteLength <= 1024));
  const a = new SnapshotAssembly(chunks[0], limits);
  for (const c of chunks.slice(1)) a.add(c);
  t.true(a.complete);
  const m = a.message();
  t.deepEqual(Buffer.from(m.snapshot!.data), data);
  t.is(m.snapshot!.metadata.index, 40);
  // An empty image is one chunk without data.
  const empty = snapshotChunks("a", snapshotMessage(new Uint8Array(0)), 1024);
  t.is(empty.length, 1);
  t.is(new SnapshotAssembly(empty[0], limits).message().snapshot!.data.byteLength, 0);
});

test("snapshot chunks: the receiver refuses out-of-order, repeated, oversized, empty, late and excess chunks as values naming the check", (t) => {
  const data = randomBytes(4096);
  const chunks = snapshotChunks("a", snapshotMessage(data), 1024);
  const started = (): SnapshotAssembly => new SnapshotAssembly(chunks[0], limits);
  t.is(
    refusal(() => started().add(chunks[2])),
    "out-of-order",
  );
  t.is(
    refusal(() => {
      const a = started();
      a.add(chunks[1]);
      a.add(chunks[1]);
    }),
    "duplicate",
  );
  t.is(
    refusal(() => started().add({ ...chunks[1]!, data: new Uint8Array(1025) })),
    "oversized",
  );
  t.is(
    refusal(() => started().add({ ...chunks[1]!, data: new Uint8Array(0) })),
    "empty",
  );
  t.is(
    refusal(() => started().add({ ...chunks[1]!, from: "c" })),
    "sender",
  );
  t.is(
    refusal(() => started().add({ ...chunks[1]!, header: chunks[0]!.header })),
    "header",
  );
  t.is(
    refusal(() => {
      const a = started();
      for (const c of chunks.slice(1)) a.add(c);
      a.add({ ...chunks[3]!, offset: 4096 });
    }),
    "past-end",
  );
  // Declared sizes: beyond the receiver's bound, or a last chunk running past the declared end.
  const header = chunks[0]!.header!;
  t.is(
    refusal(
      () =>
        new SnapshotAssembly({ ...chunks[0]!, header: { ...header, total_bytes: 64 * 1024 + 1 } }, limits),
    ),
    "too-large",
  );
  t.is(
    refusal(() => {
      const a = new SnapshotAssembly({ ...chunks[0]!, header: { ...header, total_bytes: 1500 } }, limits);
      a.add(chunks[1]);
    }),
    "past-end",
  );
  // A damaged byte anywhere: every chunk is accepted, the whole image is not.
  t.is(
    refusal(() => {
      const a = started();
      for (const c of chunks.slice(1, 3)) a.add(c);
      const bad = new Uint8Array(chunks[3]!.data);
      bad[7]! ^= 1;
      a.add({ ...chunks[3]!, data: bad });
      a.message();
    }),
    "digest",
  );
  // A first chunk without a header, or whose raft message is not an InstallSnapshot with empty data.
  t.is(
    refusal(() => new SnapshotAssembly(chunks[1], limits)),
    "header",
  );
  const append = { ...header.message, type: MessageType.Append };
  t.is(
    refusal(() => new SnapshotAssembly({ ...chunks[0]!, header: { ...header, message: append } }, limits)),
    "header",
  );
  t.is(
    refusal(
      () =>
        new SnapshotAssembly({ ...chunks[0]!, header: { ...header, sha256: new Uint8Array(31) } }, limits),
    ),
    "header",
  );
  t.is(
    refusal(() => new SnapshotAssembly(null, limits)),
    "header",
  );
});

/** Transport `id` served by a real gRPC server (mTLS); resolves with its address. */
async function served(
  t: { teardown(fn: () => unknown): void },
  transport: GrpcPeerTransport,
): Promise<string> {
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadPeerProto().PeerService.service, transport.serviceHandlers());
  t.teardown(() => server.forceShutdown());
  const credentials = await peerServerCredentials(transport.id);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return `127.0.0.1:${port}`;
}

test("transport: a 5 MB snapshot crosses real gRPC (mTLS) in bounded chunks and arrives intact", async (t) => {
  const b = new GrpcPeerTransport({ id: "b", tls: await peerTls("b") });
  t.teardown(() => b.close());
  const received: Message[] = [];
  b.start((m) => received.push(m));
  const address = await served(t, b);
  const a = new GrpcPeerTransport({ id: "a", tls: await peerTls("a"), peers: new Map([["b", address]]) });
  t.teardown(() => a.close());
  const reports: [string, string][] = [];
  a.start(
    () => {},
    (to, outcome) => reports.push([to, outcome]),
  );

  const data = randomBytes(5 * 1024 * 1024);
  a.send([snapshotMessage(data)]);
  // A second snapshot while the first is under way is skipped, not queued: raft sends it again.
  a.send([snapshotMessage(randomBytes(10))]);
  await until(() => received.length === 1, "the snapshot", 30_000);
  const got = received[0]!.snapshot!.data;
  t.is(createHash("sha256").update(got).digest("hex"), createHash("sha256").update(data).digest("hex"));
  const chunks = Math.ceil(data.byteLength / (32 * 1024));
  t.like(b.counters(), { snapshotsReceived: 1, snapshotChunksReceived: chunks });
  await until(() => a.counters().snapshotsSent === 1, "the sender to see the transfer finish");
  t.like(a.counters(), { snapshotChunksSent: chunks, snapshotsSkippedBusy: 1, snapshotsSendFailed: 0 });
  t.deepEqual(reports, [["b", "delivered"]], "the transfer is reported once; the skipped one not at all");
});

test("transport: a snapshot send that fails is reported failed (refused by the receiver, or no address)", async (t) => {
  const b = new GrpcPeerTransport({ id: "b", tls: await peerTls("b"), snapshotBytesMax: 1024 });
  t.teardown(() => b.close());
  b.start(() => {});
  const address = await served(t, b);
  const a = new GrpcPeerTransport({ id: "a", tls: await peerTls("a"), peers: new Map([["b", address]]) });
  t.teardown(() => a.close());
  const reports: [string, string][] = [];
  a.start(
    () => {},
    (to, outcome) => reports.push([to, outcome]),
  );
  a.send([snapshotMessage(randomBytes(64 * 1024))]); // beyond b's snapshotBytesMax
  await until(() => reports.length === 1, "the refused transfer's report");
  t.deepEqual(reports, [["b", "failed"]]);
  t.is(a.counters().snapshotsSendFailed, 1);
  a.send([snapshotMessage(randomBytes(10), "a", "c")]); // no address for c
  t.deepEqual(reports, [
    ["b", "failed"],
    ["c", "failed"],
  ]);
});

test("transport: the sender keeps at most chunksInFlightMax chunks unacknowledged", async (t) => {
  // A receiver that records chunks and acknowledges only when the test says so.
  const got: WireSnapshotChunk[] = [];
  let call: grpc.ServerDuplexStream<WireSnapshotChunk, object> | undefined;
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadPeerProto().PeerService.service, {
    Raft: (_c: unknown, cb: grpc.sendUnaryData<object>) => cb(null, {}),
    Snapshot: (c: grpc.ServerDuplexStream<WireSnapshotChunk, object>) => {
      call = c;
      c.on("data", (chunk: WireSnapshotChunk) => got.push(chunk));
      c.on("error", () => {});
    },
  });
  t.teardown(() => server.forceShutdown());
  const credentials = await peerServerCredentials("b");
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  const a = new GrpcPeerTransport({
    id: "a",
    tls: await peerTls("a"),
    peers: new Map([["b", `127.0.0.1:${port}`]]),
    chunkBytes: 1024,
    chunksInFlightMax: 4,
  });
  t.teardown(() => a.close());
  a.start(() => {});
  a.send([snapshotMessage(randomBytes(20 * 1024))]);
  await until(() => got.length === 4, "the first window");
  await sleep(300);
  t.is(got.length, 4, "nothing more before an acknowledgement");
  call!.write({ received_bytes: 2 * 1024 });
  await until(() => got.length === 6, "two more chunks for two acknowledged");
  await sleep(300);
  t.is(got.length, 6);
  t.deepEqual(
    got.map((c) => c.offset),
    [0, 1, 2, 3, 4, 5].map((i) => i * 1024),
  );
});

/** Opens a raw Snapshot call to `address` as peer `as`; resolves with the call's final status. */
async function rawSnapshotCall(
  t: { teardown(fn: () => unknown): void },
  address: string,
  as: string,
  chunks: WireSnapshotChunk[],
  end = true,
): Promise<grpc.StatusObject> {
  const client = new (loadPeerProto().PeerService)(address, await peerClientCredentials(as));
  t.teardown(() => client.close());
  const call = (
    client as unknown as { Snapshot(): grpc.ClientDuplexStream<WireSnapshotChunk, object> }
  ).Snapshot();
  call.on("data", () => {});
  call.on("error", () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  for (const c of chunks) call.write(c);
  if (end) call.end();
  return status;
}

test("transport: refused snapshot chunks end the call with a status naming the check, are counted, and deliver nothing", async (t) => {
  const b = new GrpcPeerTransport({
    id: "b",
    tls: await peerTls("b"),
    chunkBytes: 1024,
    snapshotBytesMax: 64 * 1024,
    snapshotTimeoutMs: 500,
  });
  t.teardown(() => b.close());
  const received: Message[] = [];
  b.start((m) => received.push(m));
  const address = await served(t, b);
  const chunks = snapshotChunks("a", snapshotMessage(randomBytes(4096)), 1024);
  const header = chunks[0]!.header!;
  const flipped = new Uint8Array(chunks[3]!.data);
  flipped[0]! ^= 1;

  const cases: [string, WireSnapshotChunk[], grpc.status, string][] = [
    ["out-of-order", [chunks[0]!, chunks[2]!], grpc.status.INVALID_ARGUMENT, "out-of-order"],
    ["duplicate", [chunks[0]!, chunks[1]!, chunks[1]!], grpc.status.INVALID_ARGUMENT, "duplicate"],
    [
      "oversized",
      [chunks[0]!, { ...chunks[1]!, data: new Uint8Array(2048) }],
      grpc.status.RESOURCE_EXHAUSTED,
      "oversized",
    ],
    [
      "too-large",
      [{ ...chunks[0]!, header: { ...header, total_bytes: 1 << 20 } }],
      grpc.status.RESOURCE_EXHAUSTED,
      "too-large",
    ],
    ["digest", [...chunks.slice(0, 3), { ...chunks[3]!, data: flipped }], grpc.status.DATA_LOSS, "digest"],
    ["ended early", chunks.slice(0, 2), grpc.status.INVALID_ARGUMENT, "past-end"],
  ];
  for (const [name, sent, code, counted] of cases) {
    const status = await rawSnapshotCall(t, address, "a", sent);
    t.is(status.code, code, `${name}: ${status.details}`);
    t.regex(status.details, new RegExp(counted), name);
  }
  t.like(b.counters().snapshotsRefused, {
    "out-of-order": 1,
    duplicate: 1,
    oversized: 1,
    "too-large": 1,
    digest: 1,
    "past-end": 1,
  });

  // A transfer that stalls is cut at its timeout.
  const stalled = await rawSnapshotCall(t, address, "a", chunks.slice(0, 1), false);
  t.is(stalled.code, grpc.status.DEADLINE_EXCEEDED);
  t.is(b.counters().snapshotsRefused.timeout, 1);

  // A peer certificate of "a" cannot send chunks that name "c" as their sender.
  const forged = snapshotChunks("c", snapshotMessage(randomBytes(100), "c"), 1024);
  const mismatch = await rawSnapshotCall(t, address, "a", forged);
  t.is(mismatch.code, grpc.status.PERMISSION_DENIED);
  t.is(b.counters().refusedSenderMismatch, 1);

  t.deepEqual(received, [], "no refused image reached raft");
  // The receiver still takes a good transfer afterwards.
  const ok = await rawSnapshotCall(t, address, "a", chunks);
  t.is(ok.code, grpc.status.OK);
  await until(() => received.length === 1, "the good snapshot");
});
