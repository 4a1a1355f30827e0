import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import { EntryType, MessageType } from "../../cluster/raft/core/types.js";
import { GrpcPeerTransport } from "../../src/raft/grpc-peer-transport.js";
import { encodeKvCommand } from "./control-node/kv-state-machine.js";
import type { RaftStorage } from "../../cluster/raft/driver/raft-storage.js";
import { LevelDbRaftStorage } from "../../src/raft/leveldb-raft-storage.js";
import { sleep } from "./control-cluster.js";
import { blank, sendFromLeader, serve, startFollowerDriver, until } from "./mock-leader.js";
import { peerTls } from "./peer-tls.js";

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
  const transport = new GrpcPeerTransport({
    id: "2",
    tls: await peerTls("2"),
    peers: new Map([["1", leader.address]]),
  });
  const own = await serve(t, transport.serviceHandlers(), "2");
  const driver = await startFollowerDriver(storage, transport, { receivedMax: 100 });
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
