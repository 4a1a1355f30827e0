import test from "ava";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { EntryType, MessageType, type Message } from "../../cluster/raft/core/types.js";
import { GrpcPeerTransport, peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import { decodeMessage, encodeMessage, WireMessageInvalid } from "../../src/raft/raft-wire-codec.js";
import { ControlCluster, freePort, sleep } from "./control-cluster.js";
import { peerClientCredentials, peerServerCredentials, peerTls } from "./peer-tls.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

const sample: Message = {
  type: MessageType.Append,
  from: "1",
  to: "2",
  term: 3,
  logTerm: 2,
  index: 7,
  entries: [
    { index: 8, term: 3, type: EntryType.Normal, data: enc("x"), confChange: null, confState: null },
    {
      index: 9,
      term: 3,
      type: EntryType.ConfChange,
      data: new Uint8Array(0),
      confChange: { type: 1, nodeId: "4", context: enc("127.0.0.1:1") },
      confState: { voters: ["1", "2", "3"], learners: ["4"] },
    },
  ],
  commit: 7,
  reject: false,
  rejectHint: 0,
  rejectHintTerm: 0,
  snapshot: {
    metadata: { index: 5, term: 2, confState: { voters: ["1"], learners: [] } },
    data: enc("snap"),
  },
  context: enc("ctx"),
};

/** What the message looks like after protobuf encoding and decoding, as the receiver sees it. */
function throughProtobuf(m: Message): unknown {
  const { PeerService } = loadPeerProto();
  const method = (PeerService.service as grpc.ServiceDefinition).Raft!;
  const bytes = method.requestSerialize({ from: m.from, messages: [encodeMessage(m)] });
  return (method.requestDeserialize(bytes) as { messages: unknown[] }).messages[0];
}

test("a raft message survives protobuf encoding field for field", (t) => {
  const back = decodeMessage(throughProtobuf(sample));
  // Bytes compare by content, whether they came back as Buffer or Uint8Array.
  const norm = (v: unknown): unknown =>
    v instanceof Uint8Array
      ? [...v]
      : Array.isArray(v)
        ? v.map(norm)
        : typeof v === "object" && v !== null
          ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]))
          : v;
  t.deepEqual(norm(back), norm(sample));
});

const malformed: [string, (w: Record<string, unknown>) => void][] = [
  ["type", (w) => (w.type = 99)],
  ["from", (w) => (w.from = "")],
  ["to", (w) => (w.to = "x".repeat(65))],
  ["term", (w) => (w.term = 2 ** 60)],
  ["index", (w) => (w.index = -1)],
  ["reject", (w) => (w.reject = "yes")],
  ["context", (w) => (w.context = "not bytes")],
  ["entries", (w) => (w.entries = "nope")],
  ["entries[0].type", (w) => ((w.entries as Record<string, unknown>[])[0]!.type = 7)],
  ["entries[1].conf_change", (w) => ((w.entries as Record<string, unknown>[])[1]!.conf_change = null)],
  [
    "entries[1].conf_change.type",
    (w) => ((w.entries as Record<string, Record<string, unknown>>[])[1]!.conf_change!.type = 9),
  ],
  [
    "entries[1].conf_state",
    (w) => ((w.entries as Record<string, Record<string, unknown>>[])[1]!.conf_state!.voters = ["1", "1"]),
  ],
  ["snapshot.conf_state", (w) => ((w.snapshot as Record<string, unknown>).conf_state = null)],
];

for (const [field, mutate] of malformed) {
  test(`decoding refuses a message with a bad ${field}, naming it`, (t) => {
    const w = structuredClone(encodeMessage(sample)) as unknown as Record<string, unknown>;
    mutate(w);
    const err = t.throws(() => decodeMessage(w), { instanceOf: WireMessageInvalid });
    t.is(err?.field, field);
  });
}

test("decoding checks only the wire shape: a log no honest leader has (gap, terms above the message's, decreasing) decodes, for the core to refuse", (t) => {
  const w = structuredClone(encodeMessage(sample)) as unknown as Record<string, unknown>;
  const entries = w.entries as Record<string, unknown>[];
  entries[0]!.term = 1; // below log_term 2
  entries[1]!.index = 11; // does not follow 8
  entries[1]!.term = 4; // above term 3
  w.log_term = 4;
  (w.snapshot as Record<string, unknown>).term = 4;
  const m = decodeMessage(w);
  t.deepEqual(
    m.entries.map((e) => [e.index, e.term]),
    [
      [8, 1],
      [11, 4],
    ],
  );
  t.is(m.logTerm, 4);
  t.is(m.snapshot?.metadata.term, 4);
});

test("decoding refuses node ids with control characters (they would forge log lines)", (t) => {
  for (const [field, id] of [
    ["from", "2\nforged log line"],
    ["to", "1\u0000"],
  ] as const) {
    const w = structuredClone(encodeMessage(sample)) as unknown as Record<string, unknown>;
    w[field] = id;
    t.is(t.throws(() => decodeMessage(w), { instanceOf: WireMessageInvalid })?.field, field);
  }
});

test("decoding arbitrary input either yields a message or throws WireMessageInvalid, nothing else", (t) => {
  fc.assert(
    fc.property(fc.anything(), (v) => {
      try {
        decodeMessage(v);
      } catch (e) {
        if (!(e instanceof WireMessageInvalid)) throw e;
      }
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

/** Opens a Raft stream to `address` that sends raw bytes, bypassing protobuf encoding. */
async function rawStream(address: string): Promise<{
  stream: grpc.ClientWritableStream<Buffer>;
  done: Promise<unknown>;
  client: grpc.Client;
}> {
  const client = new grpc.Client(address, await peerClientCredentials("2"));
  let stream!: grpc.ClientWritableStream<Buffer>;
  const done = new Promise<unknown>((resolve) => {
    stream = client.makeClientStreamRequest<Buffer, Buffer>(
      "/lockbox.v1.PeerService/Raft",
      (b) => b,
      (b) => b,
      (err) => resolve(err),
    );
  });
  return { stream, done, client };
}

test("a peer process survives garbage and malformed raft messages and keeps replicating", async (t) => {
  const cluster = new ControlCluster();
  t.teardown(() => cluster.stopAll());
  await cluster.startVoters(3);
  await cluster.onLeader("Propose", { op: "set", key: "before", value: "1" });
  const target = cluster.node("1");

  // 1. Bytes that are not protobuf at all: the stream is refused, the process lives.
  const raw = await rawStream(target.address);
  t.teardown(() => raw.client.close());
  raw.stream.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]));
  raw.stream.end();
  const rawErr = (await raw.done) as grpc.ServiceError | null;
  t.truthy(rawErr, "the undecodable stream was failed");

  // 2. Well-formed protobuf, wrong content: each message is dropped, the stream stays usable.
  const { PeerService } = loadPeerProto();
  const client = new PeerService(target.address, await peerClientCredentials("2"));
  t.teardown(() => client.close());
  const good = encodeMessage({
    ...sample,
    from: "2",
    to: "1",
    term: 0,
    type: MessageType.Heartbeat,
    entries: [],
    snapshot: null,
  });
  const answered = new Promise<grpc.ServiceError | null>((resolve) => {
    const stream = (
      client as unknown as {
        Raft(cb: (e: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object>;
      }
    ).Raft(resolve);
    stream.write({ from: "2", messages: [{ ...good, type: 99 }] });
    stream.write({ from: "2", messages: [{ ...good, term: 2 ** 60 }] });
    stream.write({ from: "2", messages: [{ ...good, from: "3" }] }); // claims another sender
    stream.write({ from: "2", messages: [{ ...good, to: "2" }] }); // not for this node
    stream.write({ from: "", messages: [good] });
    stream.write({ from: `2\n${"z".repeat(10_000)}`, messages: [good] }); // would be echoed into the log
    stream.write({
      from: "2",
      messages: [{ ...good, entries: [{ index: 1, term: 1, type: 2, data: Buffer.alloc(0) }] }],
    });
    stream.end();
  });
  t.is(await answered, null, "the stream of malformed messages ended normally");

  // The process is alive, logged the drops, and the cluster still commits through it.
  t.true(target.running);
  await sleep(200);
  t.regex(target.stderrTail.join("\n"), /dropped invalid message from 2: type: unknown message type 99/);
  t.regex(target.stderrTail.join("\n"), /claiming from 3/);
  t.false(
    target.stderrTail.join("\n").includes("z".repeat(100)),
    "a sender's claimed id is not echoed unchecked",
  );
  t.regex(target.stderrTail.join("\n"), /dropped a batch without a valid sender/);
  await cluster.onLeader("Propose", { op: "set", key: "after", value: "2" });
  const r = await target.call<{ found: boolean; value: string }>("Read", {
    key: "after",
    linearizable: true,
  });
  t.deepEqual({ found: r.found, value: r.value }, { found: true, value: "2" });
  for (const n of cluster.running()) t.true(n.running, `node ${n.id} still running`);
});

/** Writes `messages` on one Raft stream to `address` as a batch from `from`; resolves when it ended. */
async function sendBatch(
  t: { teardown(fn: () => unknown): void },
  address: string,
  from: string,
  messages: Message[],
): Promise<grpc.ServiceError | null> {
  const { PeerService } = loadPeerProto();
  const client = new PeerService(address, await peerClientCredentials(from));
  t.teardown(() => client.close());
  return new Promise<grpc.ServiceError | null>((resolve) => {
    const stream = (
      client as unknown as {
        Raft(cb: (e: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object>;
      }
    ).Raft(resolve);
    for (const m of messages) stream.write({ from, messages: [encodeMessage(m)] });
    stream.end();
  });
}

test("a peer impersonating the leader with an impossible log (gap, future terms), an unrestorable snapshot, or an ack beyond the leader's log stops no process", async (t) => {
  const cluster = new ControlCluster();
  t.teardown(() => cluster.stopAll());
  await cluster.startVoters(3);
  await cluster.onLeader("Propose", { op: "set", key: "before", value: "1" });
  const leaderId = await cluster.waitLeader();
  const { term } = await cluster.node(leaderId).status();
  const [followerId, otherId] = ["1", "2", "3"].filter((id) => id !== leaderId) as [string, string];
  const entry = (index: number, entryTerm: number) => ({
    index,
    term: entryTerm,
    type: EntryType.Normal,
    data: enc("forged"),
    confChange: null,
    confState: null,
  });
  const append = (m: Partial<Message>): Message => ({
    ...sample,
    type: MessageType.Append,
    from: leaderId,
    to: followerId,
    term,
    logTerm: 0,
    index: 0,
    commit: 0,
    entries: [],
    snapshot: null,
    ...m,
  });
  // Shaped like the current leader's appends, in its term, so they pass every term check and reach the log.
  t.is(
    await sendBatch(t, cluster.node(followerId).address, leaderId, [
      append({ entries: [entry(5, term)] }), // does not follow index 0
      append({ entries: [entry(1, term + 7)] }), // newer than the message's term
      append({
        type: MessageType.Snapshot,
        snapshot: {
          metadata: { index: 1_000, term: term + 7, confState: { voters: ["1", "2", "3"], learners: [] } },
          data: enc("{}"),
        },
      }),
      // A well-formed snapshot whose image the state machine cannot restore: once installed it would be
      // persisted, and the node would stop at every restart.
      append({
        type: MessageType.Snapshot,
        snapshot: {
          metadata: { index: 1_000, term, confState: { voters: ["1", "2", "3"], learners: [] } },
          data: enc("not a control snapshot"),
        },
      }),
    ]),
    null,
  );
  // An ack from a follower, in the leader's term, for an index the leader never had.
  t.is(
    await sendBatch(t, cluster.node(leaderId).address, otherId, [
      {
        ...sample,
        type: MessageType.AppendResp,
        from: otherId,
        to: leaderId,
        term,
        logTerm: 0,
        index: 1_000_000,
        entries: [],
        snapshot: null,
      },
    ]),
    null,
  );
  await sleep(300);
  for (const n of cluster.running()) t.true(n.running, `node ${n.id} still running`);
  t.is(cluster.running().length, 3);
  await cluster.onLeader("Propose", { op: "set", key: "after", value: "2" });
  const r = await cluster.node(followerId).call<{ found: boolean; value: string }>("Read", {
    key: "after",
    linearizable: true,
  });
  t.deepEqual({ found: r.found, value: r.value }, { found: true, value: "2" });
  const all = cluster.node(followerId).stderrTail.join("\n");
  t.regex(all, /refused message type 5 from \d: entryGap: entries\[0\]\.index 5 does not follow 0/);
  t.regex(all, /refused message type 5 from \d: entryTermAboveMessage: entries\[0\]\.term \d+ above/);
  // This image is no control snapshot, so the state machine refuses it before the core would see its
  // term (forged-messages.test.ts sends a valid image with a newer term to the core).
  t.regex(all, /dropped a snapshot from \d the state machine refuses: control snapshot: no kv image/);
  t.regex(all, /dropped a snapshot from \d the state machine refuses: control snapshot: not UTF-8 JSON/);
  t.true((await cluster.node(followerId).status()).snapshot_index < 1_000);
});

/** A GrpcPeerTransport served by a real gRPC server on `port` (0: any); resolves with the bound port. */
async function servedTransport(
  t: { teardown(fn: () => unknown): void },
  transport: GrpcPeerTransport,
  port: number,
): Promise<number> {
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadPeerProto().PeerService.service, transport.serviceHandlers());
  t.teardown(() => server.forceShutdown());
  const credentials = await peerServerCredentials(transport.id);
  return new Promise((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
}

const heartbeat = (term: number): Message => ({
  ...sample,
  type: MessageType.Heartbeat,
  from: "a",
  to: "b",
  term,
  entries: [],
  snapshot: null,
});

test("transport: while a peer is down its queue stays bounded, dropping the oldest; once it is up the newest arrive", async (t) => {
  const port = await freePort();
  const a = new GrpcPeerTransport({
    id: "a",
    tls: await peerTls("a"),
    peers: new Map([["b", `127.0.0.1:${port}`]]),
    queueMessagesMax: 100,
    reconnectMaxMs: 200,
  });
  t.teardown(() => a.close());
  a.start(() => {});
  for (let term = 1; term <= 1000; term++) a.send([heartbeat(term)]);
  const down = a.linkStats("b")!;
  t.is(down.queued, 100);
  t.is(down.dropped, 900);
  t.false(down.connected);

  // Peer b comes up on that port: a reconnects (bounded backoff) and delivers what it kept.
  const received: number[] = [];
  const b = new GrpcPeerTransport({ id: "b", tls: await peerTls("b") });
  t.teardown(() => b.close());
  b.start((m) => received.push(m.term));
  await servedTransport(t, b, port);
  const deadline = Date.now() + 10_000;
  while (received.length < 100 && Date.now() < deadline) await sleep(20);
  t.deepEqual(
    received,
    Array.from({ length: 100 }, (_, i) => 901 + i),
    "the newest 100, in order",
  );
  t.true(a.linkStats("b")!.connected);
});
