import test from "ava";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import { EntryType } from "../../cluster/raft/core/types.js";
import { Busy, Stopped, Timeout } from "../../cluster/raft/driver/errors.js";
import { RaftDriver, type RaftDriverOptions } from "../../cluster/raft/driver/raft-driver.js";
import { IntervalTicker } from "../../cluster/raft/driver/ticker.js";
import { GrpcPeerTransport } from "../../src/raft/grpc-peer-transport.js";
import { peerTls } from "./peer-tls.js";
import { encodeKvCommand, KvStateMachine, type KvApplyResult } from "./control-node/kv-state-machine.js";
import { LevelDbRaftStorage } from "../../src/raft/leveldb-raft-storage.js";
import { sleep } from "./control-cluster.js";

/**
 * A one-voter group in this process over real LevelDB storage (a single voter never sends, so the
 * transport stays idle). `restart()` stops the driver and starts a new one, with a new state machine, on
 * the same database: what a process restart does.
 */
async function singleVoter(
  t: { teardown(fn: () => unknown): void },
  extra: Partial<RaftDriverOptions<KvApplyResult>> = {},
) {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-raft-driver-"));
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: "view" });
  await db.open();
  let driver: RaftDriver<KvApplyResult> | undefined;
  let sm = new KvStateMachine();
  const start = async (): Promise<RaftDriver<KvApplyResult>> => {
    sm = new KvStateMachine();
    driver = await RaftDriver.start<KvApplyResult>({
      config: {
        id: "1",
        electionTicks: 4,
        heartbeatTicks: 1,
        inflightMax: 64,
        batchEntriesMax: 64,
        batchBytesMax: 1 << 20,
        checkQuorum: true,
        preVote: true,
        random: { nextInt: (max) => Math.floor(Math.random() * max) },
      },
      storage: new LevelDbRaftStorage(db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" })),
      transport: new GrpcPeerTransport({ id: "1", tls: await peerTls("1") }),
      stateMachine: sm,
      ticker: new IntervalTicker(10),
      bootstrapVoters: ["1"],
      ...extra,
    });
    return driver;
  };
  t.teardown(async () => {
    await driver?.stop();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const d = await start();
  const deadline = Date.now() + 10_000;
  while (d.status().role !== "leader") {
    if (Date.now() > deadline) throw new Error("single voter did not elect itself");
    await sleep(10);
  }
  return {
    driver: () => driver!,
    sm: () => sm,
    async restart(): Promise<RaftDriver<KvApplyResult>> {
      await driver!.stop();
      return start();
    },
  };
}

const set = (key: string, value: string): Uint8Array => encodeKvCommand({ op: "set", key, value });

test("driver: a proposal resolves with the state machine's result once applied, and a read barrier follows it", async (t) => {
  const h = await singleVoter(t);
  const a = await h.driver().propose(set("k", "v"));
  t.deepEqual(a.result, { ok: true });
  t.true(a.index > 0);
  t.is(h.sm().get("k"), "v");
  const del = await h.driver().propose(encodeKvCommand({ op: "delete", key: "k" }));
  t.deepEqual(del.result, { ok: true, existed: true });
  const readIndex = await h.driver().read();
  t.true(readIndex >= del.index);
  t.true(h.driver().appliedIndex >= readIndex);
});

test("driver: snapshots are taken while proposals keep coming, and a restart restores snapshot plus log", async (t) => {
  const h = await singleVoter(t, { snapshotEntries: 10 });
  // Four writers keep proposals in flight without pause; snapshots must be taken while they run (seen
  // from inside the writers), every snapshotEntries applied entries.
  let seenSnapshotIndex = 0;
  await Promise.all(
    Array.from({ length: 4 }, async (_, w) => {
      for (let i = w; i < 120; i += 4) {
        await h.driver().propose(set(`k${i}`, `v${i}`));
        seenSnapshotIndex = Math.max(seenSnapshotIndex, h.driver().status().snapshotIndex);
      }
    }),
  );
  t.true(seenSnapshotIndex > 0, "a snapshot was taken while proposals kept coming");
  const status = h.driver().status();
  t.true(status.firstIndex > 1, "the core's log was compacted");
  const before = new TextDecoder().decode(h.sm().snapshot());

  const d2 = await h.restart();
  // The state machine is rebuilt from the stored snapshot and the committed entries after it.
  const deadline = Date.now() + 10_000;
  while (d2.appliedIndex < status.appliedIndex && Date.now() < deadline) await sleep(10);
  t.true(d2.status().snapshotIndex > 0);
  t.is(h.sm().get("k0"), "v0");
  t.is(h.sm().get("k119"), "v119");
  t.is(h.sm().size, 120);
  const after = JSON.parse(new TextDecoder().decode(h.sm().snapshot())) as { entries: unknown };
  t.deepEqual(after.entries, (JSON.parse(before) as { entries: unknown }).entries);
});

test("driver: calls beyond pendingMax are refused with Busy, and stop() rejects what is pending with Stopped", async (t) => {
  const h = await singleVoter(t, { pendingMax: 5 });
  const calls = Array.from({ length: 8 }, (_, i) => h.driver().propose(set(`b${i}`, "x")));
  const settled = await Promise.allSettled(calls);
  const busy = settled.filter((s) => s.status === "rejected" && s.reason instanceof Busy);
  t.is(busy.length, 3);
  t.is(settled.filter((s) => s.status === "fulfilled").length, 5);

  // A read that cannot finish before stop() is rejected with Stopped, not left hanging.
  const pending = h.driver().propose(set("late", "x"));
  await h.driver().stop("test");
  const err = await t.throwsAsync(pending);
  t.true(err instanceof Stopped);
  await t.throwsAsync(h.driver().propose(set("after", "x")), { instanceOf: Stopped });
});

test("driver: leadership transfers count against pendingMax, so a flood of them cannot pile up timers", async (t) => {
  const h = await singleVoter(t, { pendingMax: 2 });
  // A transfer to this leader itself never completes (it is already the leader) until its deadline.
  const calls = Array.from({ length: 3 }, () => h.driver().transferLeadership("1", 200));
  const settled = await Promise.allSettled(calls);
  t.is(settled.filter((s) => s.status === "rejected" && s.reason instanceof Busy).length, 1);
  t.is(settled.filter((s) => s.status === "rejected" && s.reason instanceof Timeout).length, 2);
  // Settled calls free their slots.
  await t.throwsAsync(h.driver().transferLeadership("1", 50), { instanceOf: Timeout });
});

test("driver: a restart whose stored commit is behind the snapshot and the log (an unsynced commit-only write lost) recovers and applies everything", async (t) => {
  // The driver writes a hard state that only moves commit without fsync (as etcd does); after a power
  // loss the stored commit can be older than the stored snapshot and entries. Built here directly.
  const dir = mkdtempSync(join(tmpdir(), "lockbox-raft-commit-behind-"));
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: "view" });
  await db.open();
  let driver: RaftDriver<KvApplyResult> | undefined;
  t.teardown(async () => {
    await driver?.stop();
    await db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const sub = () => db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" });
  const image = new KvStateMachine();
  image.apply(set("snap", "1"), 9);
  const writer = new LevelDbRaftStorage(sub());
  await writer.load();
  const entry = (index: number, key: string) => ({
    index,
    term: 2,
    type: EntryType.Normal,
    data: set(key, String(index)),
    confChange: null,
    confState: null,
  });
  await writer.save({
    snapshot: {
      metadata: { index: 10, term: 2, confState: { voters: ["1"], learners: [] } },
      data: image.snapshot(),
    },
    entries: [entry(11, "a"), entry(12, "b")],
    hardState: { term: 2, vote: "1", commit: 3 },
    sync: true,
  });
  const sm = new KvStateMachine();
  driver = await RaftDriver.start<KvApplyResult>({
    config: {
      id: "1",
      electionTicks: 4,
      heartbeatTicks: 1,
      inflightMax: 8,
      batchEntriesMax: 8,
      batchBytesMax: 1 << 20,
      checkQuorum: true,
      preVote: true,
      random: { nextInt: (max) => Math.floor(Math.random() * max) },
    },
    storage: new LevelDbRaftStorage(sub()),
    transport: new GrpcPeerTransport({ id: "1", tls: await peerTls("1") }),
    stateMachine: sm,
    ticker: new IntervalTicker(10),
  });
  t.is(driver.status().commit, 10, "commit starts at the snapshot, not below it");
  const d = driver;
  const deadline = Date.now() + 10_000;
  while (d.appliedIndex < 12 && Date.now() < deadline) await sleep(10);
  t.true(d.appliedIndex >= 12, "the entries after the snapshot apply once this voter commits them again");
  t.is(sm.get("snap"), "1");
  t.is(sm.get("a"), "11");
  t.is(sm.get("b"), "12");
  t.deepEqual((await d.propose(set("c", "x"))).result, { ok: true });
});
