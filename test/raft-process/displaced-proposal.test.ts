import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import { EntryType, MessageType, type Message } from "../../cluster/raft/core/types.js";
import { NotLeader } from "../../cluster/raft/driver/errors.js";
import { GrpcPeerTransport, peerGrpcOptions } from "../../src/raft/grpc-peer-transport.js";
import { encodeKvCommand } from "./control-node/kv-state-machine.js";
import { LevelDbRaftStorage } from "../../src/raft/leveldb-raft-storage.js";
import { loadPeerProto } from "../../src/raft/peer-proto.js";
import { decodeMessage, encodeMessage } from "../../src/raft/raft-wire-codec.js";
import { sleep } from "./control-cluster.js";
import { startFollowerDriver, until } from "./mock-leader.js";
import { peerClientCredentials, peerServerCredentials, peerTls } from "./peer-tls.js";

const reply = (m: Message, type: Message["type"], extra: Partial<Message> = {}): Message => ({
  type,
  from: m.to,
  to: m.from,
  term: m.term,
  logTerm: 0,
  index: 0,
  entries: [],
  commit: 0,
  reject: false,
  rejectHint: 0,
  rejectHintTerm: 0,
  snapshot: null,
  context: m.context,
  ...extra,
});

test("propose (mock peers over real gRPC): a proposal that takes the index of a truncated one resolves with its result, not a Timeout caused by the old one's timer", async (t) => {
  // Node "2" is a real driver (LevelDB, gRPC transport); voters "1" and "3" are this test: they grant
  // every (pre)vote, answer heartbeats, and ack appends only when `acking` is set.
  let acking = false;
  let node2Address = "";
  const clients = new Map<string, grpc.Client>();
  const credentials = new Map([
    ["1", await peerClientCredentials("1")],
    ["3", await peerClientCredentials("3")],
  ]);
  const streams = new Map<string, grpc.ClientWritableStream<object>>();
  const answer = (out: Message): void => {
    if (node2Address === "") return;
    // Each mock voter answers over its own connection, with its own peer certificate: node 2 accepts
    // messages from a peer only over a connection that peer's certificate authenticated.
    let c = clients.get(out.from);
    if (c === undefined) {
      c = new (loadPeerProto().PeerService)(node2Address, credentials.get(out.from)!);
      clients.set(out.from, c);
    }
    let s = streams.get(out.from);
    if (s === undefined) {
      s = (
        c as unknown as {
          Raft(cb: (e: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object>;
        }
      ).Raft(() => streams.delete(out.from));
      s.on("error", () => {});
      streams.set(out.from, s);
    }
    s.write({ from: out.from, messages: [encodeMessage(out)] });
  };
  const onMessage = (m: Message): void => {
    if (m.type === MessageType.PreVote) answer(reply(m, MessageType.PreVoteResp));
    else if (m.type === MessageType.Vote) answer(reply(m, MessageType.VoteResp));
    else if (m.type === MessageType.Heartbeat) answer(reply(m, MessageType.HeartbeatResp));
    else if (m.type === MessageType.Append && acking) {
      answer(reply(m, MessageType.AppendResp, { index: m.index + m.entries.length }));
    }
  };
  // One server per mock voter: node 2 checks that the server it reaches is the peer it meant.
  const servers: grpc.Server[] = [];
  const mockVoter = async (id: string): Promise<string> => {
    const server = new grpc.Server(peerGrpcOptions());
    servers.push(server);
    server.addService(loadPeerProto().PeerService.service, {
      Raft: (call: grpc.ServerReadableStream<unknown, object>, cb: grpc.sendUnaryData<object>) => {
        call.on("data", (b: { messages: unknown[] }) => {
          for (const w of b.messages) onMessage(decodeMessage(w));
        });
        call.on("end", () => cb(null, {}));
        call.on("error", () => {});
      },
    });
    const credentials = await peerServerCredentials(id);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    return `127.0.0.1:${port}`;
  };

  const dir = mkdtempSync(join(tmpdir(), "lockbox-displaced-"));
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: "view" });
  await db.open();
  const transport = new GrpcPeerTransport({
    id: "2",
    tls: await peerTls("2"),
    peers: new Map([
      ["1", await mockVoter("1")],
      ["3", await mockVoter("3")],
    ]),
  });
  const ownCredentials = await peerServerCredentials("2");
  const ownServer = new grpc.Server(peerGrpcOptions());
  ownServer.addService(loadPeerProto().PeerService.service, transport.serviceHandlers());
  const ownPort = await new Promise<number>((resolve, reject) =>
    ownServer.bindAsync("127.0.0.1:0", ownCredentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  node2Address = `127.0.0.1:${ownPort}`;
  const driver = await startFollowerDriver(
    new LevelDbRaftStorage(db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" })),
    transport,
    { electionTicks: 10 },
  );
  t.teardown(async () => {
    await driver.stop();
    await transport.close();
    for (const s of streams.values()) s.end();
    for (const c of clients.values()) c.close();
    ownServer.forceShutdown();
    for (const s of servers) s.forceShutdown();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // Term A: node 2 leads; its no-op (1), a (2) and old (3) stay uncommitted (no acks).
  await until(() => driver.status().role === "leader", "node 2 to lead");
  const termA = driver.status().term;
  const set = (key: string): Uint8Array => encodeKvCommand({ op: "set", key, value: "v" });
  const a = driver.propose(set("a"), 20_000);
  a.catch(() => {});
  // The old proposal's deadline must outlast one truncation and re-election of node 2, so that it is
  // displaced before it times out; on a loaded 2-core machine that took more than 600 ms (one failure
  // in 20 runs). What is tested does not depend on the length: only that the deadline passes later.
  const oldTimeoutMs = 3_000;
  const oldProposedAt = Date.now();
  const old = driver.propose(set("old"), oldTimeoutMs);
  old.catch(() => {});
  await until(() => driver.status().lastIndex === 3, "entries 1..3 on node 2");

  // A leader of a newer term replaces index 1, which truncates 2 and 3.
  answer({
    ...reply(
      { type: MessageType.Append, from: "2", to: "1", term: termA + 1 } as Message,
      MessageType.Append,
    ),
    context: new Uint8Array(0),
    entries: [
      {
        index: 1,
        term: termA + 1,
        type: EntryType.Normal,
        data: new Uint8Array(0),
        confChange: null,
        confState: null,
      },
    ],
  });
  await until(() => driver.status().term > termA && driver.status().lastIndex === 1, "the truncation");

  // Node 2 leads again (no-op at 2) and its next proposal lands at 3: the old proposal's index.
  await until(() => driver.status().role === "leader", "node 2 to lead again");
  const fresh = driver.propose(set("fresh"), 15_000);
  fresh.catch(() => {});
  await until(() => driver.status().lastIndex === 3, "the new proposal at index 3");
  await t.throwsAsync(old, { instanceOf: NotLeader }, "the truncated proposal can never apply");

  // Let the old proposal's deadline pass, then let the cluster commit.
  await sleep(Math.max(0, oldProposedAt + oldTimeoutMs + 200 - Date.now()));
  acking = true;
  const applied = await fresh;
  t.is(applied.index, 3);
  t.deepEqual(applied.result, { ok: true });
});
