import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import { EntryType, MessageType, type Message } from "../../cluster/raft/core/types.js";
import { RaftDriver } from "../../cluster/raft/driver/raft-driver.js";
import { GrpcPeerTransport } from "../../src/raft/grpc-peer-transport.js";
import { encodeKvCommand, type KvApplyResult } from "./control-node/kv-state-machine.js";
import { LevelDbRaftStorage } from "../../src/raft/leveldb-raft-storage.js";
import { decodeMessage } from "../../src/raft/raft-wire-codec.js";
import { blank, sendFromLeader, serve, startFollowerDriver, until } from "./mock-leader.js";
import { peerTls } from "./peer-tls.js";

test("ReadIndex (mock leader over real gRPC): the answer to a read asked before a restart does not complete a read asked after it", async (t) => {
  // Node "2" is a real driver (LevelDB, gRPC transport); its leader "1" is this test, speaking raft
  // messages over gRPC, so it can deliver an old ReadIndex answer late: what the leader's transport does
  // when it queues messages for a peer that is down and sends them once the peer is back.
  const received: Message[] = [];
  const leader = await serve(t, {
    Raft: (call: grpc.ServerReadableStream<unknown, object>, cb: grpc.sendUnaryData<object>) => {
      call.on("data", (b: { messages: unknown[] }) => {
        for (const w of b.messages) received.push(decodeMessage(w));
      });
      call.on("end", () => cb(null, {}));
      call.on("error", () => {});
    },
  });
  const dir = mkdtempSync(join(tmpdir(), "lockbox-read-restart-"));
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: "view" });
  await db.open();
  let driver: RaftDriver<KvApplyResult> | undefined;
  let transport: GrpcPeerTransport | undefined;
  t.teardown(async () => {
    await driver?.stop();
    await transport?.close();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const start = async (): Promise<string> => {
    transport = new GrpcPeerTransport({
      id: "2",
      tls: await peerTls("2"),
      peers: new Map([["1", leader.address]]),
    });
    const own = await serve(t, transport.serviceHandlers(), "2");
    driver = await startFollowerDriver(
      new LevelDbRaftStorage(db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" })),
      transport,
      { readRetryMs: 60_000 }, // one ReadIndex request per read, so each one is identified below
    );
    return own.address;
  };
  const readRequests = (): Message[] => received.filter((m) => m.type === MessageType.ReadIndex);

  // Before the restart: a read goes to the leader, whose answer does not arrive in time.
  let address = await start();
  await sendFromLeader(address, [blank(MessageType.Heartbeat)]);
  await until(() => driver!.status().leader === "1", "node 2 to follow 1");
  const oldRead = driver!.read(10_000);
  oldRead.catch(() => {});
  await until(() => readRequests().length === 1, "the first ReadIndex request");
  const oldContext = readRequests()[0]!.context;
  await driver!.stop("restart");
  await transport!.close();

  // After the restart, entry 1 commits (a write acknowledged to its client), then a new read starts.
  address = await start();
  const write = encodeKvCommand({ op: "set", key: "k", value: "new" });
  await sendFromLeader(address, [
    {
      ...blank(MessageType.Append),
      entries: [
        { index: 1, term: 1, type: EntryType.Normal, data: write, confChange: null, confState: null },
      ],
      commit: 1,
    },
  ]);
  await until(() => driver!.appliedIndex === 1, "entry 1 to apply on node 2");
  const newRead = driver!.read(10_000);
  newRead.catch(() => {}); // awaited below; handled here too should an assertion fail first
  await until(() => readRequests().length === 2, "the second ReadIndex request");
  const newContext = readRequests()[1]!.context;
  t.notDeepEqual([...newContext], [...oldContext], "a request context is never reused across restarts");

  // The late answer to the old read (read index 0, before the write), then the answer to the new one.
  await sendFromLeader(address, [
    { ...blank(MessageType.ReadIndexResp), index: 0, context: oldContext },
    { ...blank(MessageType.ReadIndexResp), index: 1, context: newContext },
  ]);
  t.is(await newRead, 1, "the new read waits for its own read index, which covers the write");
});
