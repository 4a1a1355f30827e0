/**
 * The link's side of "every byte from the network may be hostile": a hand-written ReplicationService
 * (a real gRPC server with a real peer certificate, answering what each test makes it answer, not a
 * replica) sends malformed answers; every send settles, UNAVAILABLE, and nothing malformed reaches the
 * caller.
 */
import test, { type ExecutionContext } from "ava";
import * as grpc from "@grpc/grpc-js";
import { isLockboxError } from "../../src/errors.js";
import { peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { GrpcPeerLink } from "../../src/replication/grpc-peer-link.js";
import type { WireReplyFrame } from "../../src/replication/replica-wire-codec.js";
import { loadReplicationService } from "../../src/replication/replication-proto.js";
import { peerServerCredentials, peerTls } from "../raft-process/peer-tls.js";

type Answer = (frame: { request_id: number; items: unknown[] }) => object[];

async function hostileServer(t: ExecutionContext, id: string, answer: Answer): Promise<number> {
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadReplicationService().service, {
    Replicate: (call: grpc.ServerDuplexStream<{ request_id: number; items: unknown[] }, object>) => {
      call.on("data", (f) => {
        for (const r of answer(f)) call.write(r);
      });
      call.on("end", () => call.end());
      call.on("error", () => {});
    },
  });
  t.teardown(() => server.forceShutdown());
  const credentials = await peerServerCredentials(id);
  return new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
}

const digest = {
  from: "a",
  items: [
    { kind: "digest" as const, partition: 0 },
    { kind: "digest" as const, partition: 1 },
  ],
};
const ok = { digest: { digest: Buffer.from([1]) } };

const cases: [string, Answer][] = [
  ["too many results", (f) => [{ request_id: f.request_id, results: [ok, ok, ok], offset: 0, more: false }]],
  [
    "too few results and no more parts",
    (f) => [{ request_id: f.request_id, results: [ok], offset: 0, more: false }],
  ],
  [
    "a part at the wrong offset",
    (f) => [{ request_id: f.request_id, results: [ok, ok], offset: 1, more: false }],
  ],
  [
    "a result without a kind",
    (f) => [{ request_id: f.request_id, results: [ok, {}], offset: 0, more: false }],
  ],
  [
    "a frame refused with an unknown code",
    (f) => [
      {
        request_id: f.request_id,
        error: { code: "BOGUS", message: "x" },
        results: [],
        offset: 0,
        more: false,
      },
    ],
  ],
];

for (const [what, answer] of cases) {
  test(`a link given ${what} (hand-written hostile server) fails the send UNAVAILABLE naming the fault`, async (t) => {
    const port = await hostileServer(t, "b", answer);
    const link = new GrpcPeerLink({
      self: "a",
      tls: await peerTls("a"),
      peers: new Map([["b", `127.0.0.1:${port}`]]),
    });
    t.teardown(() => link.close());
    const e = await t.throwsAsync(link.send("b", digest));
    t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
    t.regex(e!.message, /peer b (answered a malformed reply|refused a frame)/);
  });
}

test("a link given only answers to request ids it never sent (hand-written hostile server) fails the send at its deadline, ignoring them", async (t) => {
  const port = await hostileServer(t, "b", (f) => [
    {
      request_id: f.request_id + 1000,
      results: [ok, ok],
      offset: 0,
      more: false,
    } satisfies Partial<WireReplyFrame>,
  ]);
  const link = new GrpcPeerLink({
    self: "a",
    tls: await peerTls("a"),
    peers: new Map([["b", `127.0.0.1:${port}`]]),
    requestTimeoutMs: 1_500,
  });
  t.teardown(() => link.close());
  const e = await t.throwsAsync(link.send("b", digest));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
  t.true(link.counters.repliesInvalid >= 1);
});

test("a link refuses a server whose certificate is another peer's than the one it means to reach: the send fails UNAVAILABLE", async (t) => {
  let answered = 0;
  const port = await hostileServer(t, "c", (f) => {
    answered++;
    return [{ request_id: f.request_id, results: [ok, ok], offset: 0, more: false }];
  });
  const link = new GrpcPeerLink({
    self: "a",
    tls: await peerTls("a"),
    peers: new Map([["b", `127.0.0.1:${port}`]]),
  });
  t.teardown(() => link.close());
  const e = await t.throwsAsync(link.send("b", digest));
  t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
  t.is(answered, 0, "no frame reached the impostor");
});
