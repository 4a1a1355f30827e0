import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { MessageType, type Message } from "../../cluster/raft/core/types.js";
import {
  createClusterCa,
  issuePeerCertificate,
  type CertifiedKey,
} from "../../src/pki/certificate-authority.js";
import { startPeer } from "../../src/peer/start-peer.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import { encodeMessage } from "../../src/raft/raft-wire-codec.js";
import { clientsFor, startTestPeer, type PeerFixture } from "../server/peer-fixture.js";

interface WireRaftStatus {
  role: string;
  term: string;
  leader: string;
  commit: string;
  voters: string[];
  learners: string[];
}

async function raftStatus(t: Parameters<typeof clientsFor>[0], f: PeerFixture): Promise<WireRaftStatus> {
  const clients = clientsFor(t, f, f.admin);
  try {
    const res = await new Promise<{ raft: WireRaftStatus | null }>((resolve, reject) =>
      clients.admin.GetStatus!({}, (err, r) => (err ? reject(err) : resolve(r))),
    );
    if (res.raft === null) throw new Error("GetStatus has no raft status");
    return res.raft;
  } finally {
    clients.close();
  }
}

/** Polls admin status until the peer's raft node leads and has committed past `commitAbove` (bounded). */
async function leading(
  t: Parameters<typeof clientsFor>[0],
  f: PeerFixture,
  commitAbove = 0,
): Promise<WireRaftStatus> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const s = await raftStatus(t, f);
    if ((s.role === "leader" && Number(s.commit) > commitAbove) || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("lockbox init founds a raft group of one and serve runs it: admin status shows the peer leading as sole voter, again after a restart in a later term", async (t) => {
  const f = await startTestPeer(t);
  const first = await leading(t, f);
  t.like(first, { role: "leader", leader: "peer-1", voters: ["peer-1"], learners: [] });
  t.true(Number(first.term) >= 1);
  t.true(Number(first.commit) >= 1, "the new leader's entry committed");

  await f.peer.close(1_000);
  const again = await startPeer({ dir: f.dir, listen: "127.0.0.1:0", log: () => {} });
  t.teardown(() => again.close(1_000));
  const f2 = { ...f, peer: again };
  const second = await leading(t, f2, Number(first.commit));
  t.like(second, { role: "leader", leader: "peer-1", voters: ["peer-1"] });
  t.true(Number(second.term) > Number(first.term), `term ${second.term} after ${first.term}`);
  t.true(Number(second.commit) > Number(first.commit), "the log survived the restart and grew");
});

/** Opens a Raft stream to the peer with `credentials`, writes one batch, and resolves with the status. */
async function raftCall(
  t: { teardown(fn: () => unknown): void },
  address: string,
  credentials: grpc.ChannelCredentials,
  batch: { from: string; messages: Message[] },
): Promise<grpc.ServiceError | null> {
  const client = new (loadPeerProto().PeerService)(address, credentials, {
    // The peer certificate names localhost and 127.0.0.1; TLS server names must be DNS names.
    "grpc.ssl_target_name_override": "localhost",
  });
  t.teardown(() => client.close());
  return new Promise((resolve) => {
    const stream = (
      client as unknown as {
        Raft(cb: (e: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object>;
      }
    ).Raft(resolve);
    stream.on("error", () => {});
    stream.write({ from: batch.from, messages: batch.messages.map(encodeMessage) });
    stream.end();
  });
}

/** A heartbeat of a stale term: harmless to the group, so only the transport's answer matters. */
const heartbeat = (from: string): Message => ({
  type: MessageType.Heartbeat,
  from,
  to: "peer-1",
  term: 0,
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

const tlsWith = (ca: string, id: CertifiedKey | null): grpc.ChannelCredentials =>
  id === null
    ? grpc.credentials.createSsl(Buffer.from(ca))
    : grpc.credentials.createSsl(
        Buffer.from(ca),
        Buffer.from(id.privateKeyPem),
        Buffer.from(id.certificatePem),
      );

test("the peer's raft service accepts only a peer certificate of the cluster CA, sending as itself; the peer keeps leading", async (t) => {
  const f = await startTestPeer(t);
  await leading(t, f);
  const address = f.peer.address;
  const ca = f.ca.certificatePem;
  const code = (e: grpc.ServiceError | null): number | undefined => e?.code;

  // No client certificate, a client identity (even the admin's), a peer certificate of another CA.
  t.is(
    code(await raftCall(t, address, tlsWith(ca, null), { from: "peer-2", messages: [] })),
    grpc.status.UNAUTHENTICATED,
  );
  t.is(
    code(await raftCall(t, address, tlsWith(ca, f.admin), { from: "admin", messages: [] })),
    grpc.status.UNAUTHENTICATED,
  );
  const otherCa = await createClusterCa({ clusterId: "other" });
  const stranger = await issuePeerCertificate(otherCa, { peerId: "peer-2" });
  t.is(
    code(await raftCall(t, address, tlsWith(ca, stranger), { from: "peer-2", messages: [] })),
    grpc.status.UNAUTHENTICATED,
  );

  // A peer certificate of this cluster for a peer that is no member (issue 9: the control state
  // admits only current members), whatever sender it names. A member naming another sender is refused
  // too: test/controlplane/cluster-identities.test.ts.
  const peer2 = await issuePeerCertificate(f.ca, { peerId: "peer-2" });
  for (const from of ["peer-3", "peer-2"]) {
    const refused = await raftCall(t, address, tlsWith(ca, peer2), { from, messages: [heartbeat(from)] });
    t.is(code(refused), grpc.status.PERMISSION_DENIED);
    t.regex(refused?.details ?? "", /peer-2 refused: (not a member|the control state is not founded)/);
  }

  const after = await leading(t, f);
  t.like(after, { role: "leader", leader: "peer-1", voters: ["peer-1"] });
});

const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

test("lockbox status shows the peer's raft node, as text and as JSON", async (t) => {
  const f = await startTestPeer(t);
  await leading(t, f);
  const run = async (...extra: string[]): Promise<string> =>
    (
      await promisify(execFile)(
        process.execPath,
        [CLI, "status", "--dir", f.dir, "--endpoint", f.peer.address, ...extra],
        { timeout: 30_000 },
      )
    ).stdout;
  const text = await run();
  t.regex(text, /^raft role\s+leader$/m);
  t.regex(text, /^raft leader\s+peer-1$/m);
  t.regex(text, /^raft voters\s+peer-1$/m);
  const json = JSON.parse(await run("--json")) as { raft?: { role: string; voters: string[] } };
  t.like(json.raft, { role: "leader", voters: ["peer-1"] });
});
