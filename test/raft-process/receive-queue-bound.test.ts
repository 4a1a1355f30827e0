import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import { EntryType, MessageType, type Message } from "../../cluster/raft/core/types.js";
import { RaftDriver } from "../../cluster/raft/driver/raft-driver.js";
import { IntervalTicker } from "../../cluster/raft/driver/ticker.js";
import { GrpcPeerTransport, peerGrpcOptions } from "../../src/control/grpc-peer-transport.js";
import { encodeKvCommand, type KvApplyResult } from "../../src/control/kv-state-machine.js";
import type { RaftStorage } from "../../cluster/raft/driver/raft-storage.js";
import { ControlStateMachine } from "../../src/control/control-state-machine.js";
import { LevelDbRaftStorage } from "../../src/control/leveldb-raft-storage.js";
import { loadPeerProto } from "../../src/control/peer-proto.js";
import { encodeMessage } from "../../src/control/raft-wire-codec.js";
import { sleep } from "./control-cluster.js";

type Server = { server: grpc.Server; address: string };

async function serve(t: { teardown(fn: () => unknown): void }, handlers: grpc.UntypedServiceImplementation) {
  const server = new grpc.Server(peerGrpcOptions());
  server.addService(loadPeerProto().PeerService.service, handlers);
  t.teardown(() => server.forceShutdown());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { server, address: `127.0.0.1:${port}` } satisfies Server;
}

/** Writes `messages` as one batch from "1" on a Raft stream to `address`; resolves when it ended. */
async function sendFromLeader(address: string, messages: Message[]): Promise<void> {
  const client = new (loadPeerProto().PeerService)(address, grpc.credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) => {
      const stream = (
        client as unknown as {
          Raft(cb: (e: grpc.ServiceError | null) => void): grpc.ClientWritableStream<object>;
        }
      ).Raft((e) => (e ? reject(e) : resolve()));
      stream.write({ from: "1", messages: messages.map(encodeMessage) });
      stream.end();
    });
  } finally {
    client.close();
  }
}

const blank = (type: Message["type"]): Message => ({
  type,
  from: "1",
  to: "2",
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

/** Bounded wait for `pred`. */
async function until(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test("receive queue (mock leader, disk stalled by the test): a flood of peer messages while a write is being synced is bounded, and the node carries on", async (t) => {
  const leader = await serve(t, {
    Raft: (call: grpc.ServerReadableStream<unknown, object>, cb: grpc.sendUnaryData<object>) => {
      call.on("data", () => {});
      call.on("end", () => cb(null, {}));
      call.on("error", () => {});
    },
  });
  const dir = mkdtempSync(join(tmpdir(), "lockbox-receive-bound-"));
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: "view" });
  await db.open();
  // Real LevelDB storage; the test holds one save() open, as a disk stalled in fsync would.
  const real = new LevelDbRaftStorage(db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" }));
  let hold = false;
  let release = (): void => {};
  let saving = false;
  const storage: RaftStorage = {
    load: () => real.load(),
    compact: (s) => real.compact(s),
    close: () => real.close(),
    async save(update) {
      if (hold) {
        saving = true;
        await new Promise<void>((r) => (release = r));
        saving = false;
      }
      return real.save(update);
    },
  };
  const transport = new GrpcPeerTransport({ id: "2", peers: new Map([["1", leader.address]]) });
  const own = await serve(t, transport.serviceHandlers());
  const driver = await RaftDriver.start<KvApplyResult>({
    config: {
      id: "2",
      electionTicks: 100_000,
      heartbeatTicks: 1,
      inflightMax: 8,
      batchEntriesMax: 8,
      batchBytesMax: 1 << 20,
      checkQuorum: true,
      preVote: true,
      random: { nextInt: (max) => Math.floor(Math.random() * max) },
    },
    storage,
    transport,
    stateMachine: new ControlStateMachine(() => {}),
    ticker: new IntervalTicker(10),
    bootstrapVoters: ["1", "2", "3"],
    receivedMax: 100,
  });
  t.teardown(async () => {
    release();
    await driver.stop();
    await transport.close();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await sendFromLeader(own.address, [blank(MessageType.Heartbeat)]);
  await until(() => driver.status().leader === "1", "node 2 to follow 1");

  // An append whose save the "disk" holds, then 6,000 heartbeats while it is held.
  hold = true;
  const write = encodeKvCommand({ op: "set", key: "k", value: "v" });
  const entry = { index: 1, term: 1, type: EntryType.Normal, data: write, confChange: null, confState: null };
  await sendFromLeader(own.address, [{ ...blank(MessageType.Append), entries: [entry] }]);
  await until(() => saving, "the held save");
  for (let i = 0; i < 3; i++) {
    await sendFromLeader(
      own.address,
      Array.from({ length: 2_000 }, () => blank(MessageType.Heartbeat)),
    );
  }
  await until(() => driver.status().receivedDropped >= 5_900, "the flood to be received");
  t.is(driver.status().receivedDropped, 5_900, "all but receivedMax of the flood were dropped");

  // The disk comes back: the node persists, and commits what the leader says is committed.
  hold = false;
  release();
  // Like a leader, resend until it lands: while the queued 100 wait for the loop, more are still dropped.
  for (let i = 0; i < 100 && driver.appliedIndex < 1; i++) {
    await sendFromLeader(own.address, [{ ...blank(MessageType.Append), index: 1, logTerm: 1, commit: 1 }]);
    await sleep(50);
  }
  t.is(driver.appliedIndex, 1, "entry 1 applied");
  t.is(driver.status().lastIndex, 1);
});
