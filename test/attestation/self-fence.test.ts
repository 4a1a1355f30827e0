/**
 * How a fenced peer learns that it is fenced (src/attestation/self-fence.ts) when nobody sends it
 * the entry that says so: from the structured refusals of the others, carried in a real gRPC trailer
 * between two real raft transports over mTLS, and from its own control state when the entry did
 * reach it.
 */
import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { MessageType, type Message } from "../../cluster/raft/core/types.js";
import { SelfFence } from "../../src/attestation/self-fence.js";
import { GrpcPeerTransport, peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import { peerServerCredentials, peerTls } from "../raft-process/peer-tls.js";

test("a fenced notice comes from a 'fenced' refusal, lapses after noticeMs, and ends at once when the own record is no longer fenced", (t) => {
  let now = 1_000;
  let own: { state: string; reason: string } | undefined = { state: "active", reason: "" };
  const self = new SelfFence({ ownRecord: () => own, noticeMs: 6_000, now: () => now });
  t.deepEqual(self.state(), { fenced: false });
  self.refusedBy("peer-1", "not-member", "peer peer-3 refused: not a member");
  t.deepEqual(self.state(), { fenced: false }, "only a fenced refusal counts");
  self.refusedBy("peer-1", "fenced", "peer peer-3 refused: fenced: re-quote failed: pcr-policy/...");
  t.like(self.state(), { fenced: true, source: "refused" });
  t.regex((self.state() as { reason: string }).reason, /^peer-1 refuses this peer's calls: .*pcr-policy/);
  now += 5_999;
  t.true(self.state().fenced);
  now += 1;
  t.false(self.state().fenced, "no refusal for noticeMs: the notice lapsed");
  self.refusedBy("peer-2", "fenced", "x".repeat(10_000));
  t.true((self.state() as { reason: string }).reason.length < 600, "the refuser's words are bounded");
  self.ownRecordChanged("active");
  t.false(self.state().fenced, "the leader sends again only after unfencing: the notice ends");
  own = { state: "fenced", reason: "re-quote failed: pcr-policy/policy-pcr-value-not-approved" };
  t.like(self.state(), { fenced: true, source: "control-state", reason: own.reason });
});

test("listeners hear every change of the answer as it happens: the first fenced refusal, an entry about itself, and the notice lapsing (health is pushed, not polled)", async (t) => {
  let own: { state: string; reason: string } | undefined = { state: "active", reason: "" };
  const self = new SelfFence({ ownRecord: () => own, noticeMs: 150 });
  t.teardown(() => self.close());
  const heard: boolean[] = [];
  self.onChange(() => heard.push(self.state().fenced));
  self.refusedBy("peer-1", "not-member", "not a member");
  t.deepEqual(heard, [], "a refusal that is no fence changes nothing");
  self.refusedBy("peer-1", "fenced", "fenced: re-quote failed");
  t.deepEqual(heard, [true], "heard at once, already fenced");
  self.refusedBy("peer-2", "fenced", "fenced: re-quote failed");
  t.deepEqual(heard, [true], "a renewed notice is no change");
  await new Promise((r) => setTimeout(r, 400));
  t.deepEqual(heard, [true, false], "the lapse is heard when it happens, already unfenced");
  own = { state: "fenced", reason: "re-quote failed" };
  self.ownRecordChanged("fenced");
  own = { state: "active", reason: "attested again" };
  self.ownRecordChanged("active");
  t.deepEqual(heard, [true, false, true, false]);
});

const heartbeat = (from: string, to: string): Message => ({
  type: MessageType.Heartbeat,
  from,
  to,
  term: 1,
  logTerm: 0,
  index: 0,
  entries: [],
  commit: 0,
  reject: false,
  rejectHint: 0,
  rejectHintTerm: 0,
  snapshot: null,
  context: new Uint8Array(0),
});

test("over real gRPC: a transport that refuses a fenced peer names the code in the trailer, and the refused transport reports it", async (t) => {
  const b = new GrpcPeerTransport({
    id: "b",
    tls: await peerTls("b"),
    admitPeer: ({ peerId }) =>
      peerId === "a" ? { code: "fenced", reason: "fenced: re-quote failed: pcr-policy" } : null,
  });
  t.teardown(() => b.close());
  b.start(() => t.fail("nothing from a fenced peer reaches raft"));
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadPeerProto().PeerService.service, b.serviceHandlers());
  t.teardown(() => server.forceShutdown());
  const credentials = await peerServerCredentials("b");
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  const refusals: { peer: string; code: string; details: string }[] = [];
  const a = new GrpcPeerTransport({
    id: "a",
    tls: await peerTls("a"),
    peers: new Map([["b", `127.0.0.1:${port}`]]),
    onRefusedByPeer: (peer, code, details) => refusals.push({ peer, code, details }),
  });
  t.teardown(() => a.close());
  a.start(() => {});
  for (let i = 0; i < 50 && refusals.length === 0; i++) {
    a.send([heartbeat("a", "b")]);
    await new Promise((r) => setTimeout(r, 100));
  }
  t.like(refusals[0], { peer: "b", code: "fenced" });
  t.regex(refusals[0]?.details ?? "", /peer a refused: fenced: re-quote failed: pcr-policy/);
  t.is(b.counters().refusedNotAdmitted >= 1, true);
});
