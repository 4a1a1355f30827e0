import test from "ava";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Level } from "level";
import { ConfChangeType, EntryType, type Entry } from "../../cluster/raft/core/types.js";
import { entryKey, LevelDbRaftStorage, RaftStorageCorrupt } from "../../src/raft/leveldb-raft-storage.js";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const entry = (index: number, term: number, data = `d${index}`): Entry => ({
  index,
  term,
  type: EntryType.Normal,
  data: enc(data),
  confChange: null,
  confState: null,
});

/** Opens a fresh LevelDB under a temp dir; `reopen()` closes and opens it again (a restart). */
async function openDb(t: { teardown(fn: () => unknown): void }, dir?: string) {
  const path = dir ?? mkdtempSync(join(tmpdir(), "lockbox-raft-storage-"));
  let db = new Level<string, Uint8Array>(path, { valueEncoding: "view" });
  await db.open();
  t.teardown(async () => {
    await db.close();
    rmSync(path, { recursive: true, force: true });
  });
  const storage = (): LevelDbRaftStorage =>
    new LevelDbRaftStorage(db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" }));
  return {
    path,
    db: () => db,
    storage,
    async reopen(): Promise<LevelDbRaftStorage> {
      await db.close();
      db = new Level<string, Uint8Array>(path, { valueEncoding: "view" });
      await db.open();
      return storage();
    },
  };
}

test("an empty storage loads as a node that never ran", async (t) => {
  const h = await openDb(t);
  t.deepEqual(await h.storage().load(), {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: null,
    entries: [],
  });
});

test("hard state, entries and snapshot read back identically after reopening the database", async (t) => {
  const h = await openDb(t);
  const s = h.storage();
  await s.load();
  const conf: Entry = {
    index: 3,
    term: 2,
    type: EntryType.ConfChange,
    data: new Uint8Array(0),
    confChange: { type: ConfChangeType.AddLearner, nodeId: "4", context: enc("127.0.0.1:9") },
    confState: { voters: ["1", "2", "3"], learners: ["4"] },
  };
  await s.save({
    sync: true,
    snapshot: null,
    entries: [entry(1, 1), entry(2, 2), conf],
    hardState: { term: 2, vote: "1", commit: 2 },
  });
  const reloaded = await (await h.reopen()).load();
  t.deepEqual(reloaded.hardState, { term: 2, vote: "1", commit: 2 });
  t.is(reloaded.snapshot, null);
  t.deepEqual(
    reloaded.entries.map((e) => ({ ...e, data: Buffer.from(e.data).toString() })),
    [entry(1, 1), entry(2, 2), conf].map((e) => ({ ...e, data: Buffer.from(e.data).toString() })),
  );
  t.deepEqual(Buffer.from(reloaded.entries[2]!.confChange!.context).toString(), "127.0.0.1:9");
});

test("appending at an earlier index replaces the conflicting suffix", async (t) => {
  const h = await openDb(t);
  const s = h.storage();
  await s.load();
  await s.save({
    sync: true,
    snapshot: null,
    entries: [1, 2, 3, 4, 5].map((i) => entry(i, 1)),
    hardState: null,
  });
  await s.save({
    sync: true,
    snapshot: null,
    entries: [entry(3, 2, "new3"), entry(4, 2, "new4")],
    hardState: null,
  });
  const got = await (await h.reopen()).load();
  t.deepEqual(
    got.entries.map((e) => [e.index, e.term, Buffer.from(e.data).toString()]),
    [
      [1, 1, "d1"],
      [2, 1, "d2"],
      [3, 2, "new3"],
      [4, 2, "new4"],
    ],
  );
});

test("compact stores the snapshot and deletes entries up to its index; an installed snapshot replaces the whole log", async (t) => {
  const h = await openDb(t);
  const s = h.storage();
  await s.load();
  await s.save({
    sync: true,
    snapshot: null,
    entries: [1, 2, 3, 4, 5, 6].map((i) => entry(i, 1)),
    hardState: { term: 1, vote: null, commit: 6 },
  });
  const confState = { voters: ["1", "2", "3"], learners: [] };
  await s.compact({ metadata: { index: 4, term: 1, confState }, data: enc("state@4") });
  let got = await (await h.reopen()).load();
  t.is(got.snapshot?.metadata.index, 4);
  t.is(Buffer.from(got.snapshot!.data).toString(), "state@4");
  t.deepEqual(
    got.entries.map((e) => e.index),
    [5, 6],
  );
  t.is(
    await h.db().sublevel<string, Uint8Array>("raft", { valueEncoding: "view" }).get(entryKey(4)),
    undefined,
  );

  const s2 = h.storage();
  await s2.load();
  await s2.save({
    sync: true,
    snapshot: { metadata: { index: 10, term: 3, confState }, data: enc("state@10") },
    entries: [entry(11, 3)],
    hardState: { term: 3, vote: null, commit: 10 },
  });
  got = await (await h.reopen()).load();
  t.is(got.snapshot?.metadata.index, 10);
  t.deepEqual(
    got.entries.map((e) => e.index),
    [11],
  );
  t.deepEqual(got.hardState, { term: 3, vote: null, commit: 10 });
});

test("a corrupted entry refuses to load, naming what is wrong", async (t) => {
  const h = await openDb(t);
  const s = h.storage();
  await s.load();
  await s.save({ sync: true, snapshot: null, entries: [entry(1, 1), entry(2, 1)], hardState: null });
  await h
    .db()
    .sublevel<string, Uint8Array>("raft", { valueEncoding: "view" })
    .put(entryKey(2), enc("garbage"));
  const err = await t.throwsAsync(() => h.storage().load(), { instanceOf: RaftStorageCorrupt });
  t.is(err?.code, "RAFT_STORAGE_CORRUPT");
  t.regex(err!.message, /entry/);
});

test("a writer process killed with SIGKILL loses no acknowledged save", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-raft-storage-kill-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL("./storage-writer-child.js", import.meta.url)), dir],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  t.teardown(() => void child.kill("SIGKILL"));
  let lastAcked = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("writer did not ack 200 saves in 20 s")), 20_000);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const m = /^acked (\d+)$/.exec(line);
      if (m === null) return;
      lastAcked = Number(m[1]);
      // Kill it mid-stream, while it keeps writing.
      if (lastAcked === 200) {
        clearTimeout(timer);
        child.kill("SIGKILL");
      }
    });
    child.once("exit", () => resolve());
  });
  t.is(child.signalCode, "SIGKILL");
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: "view" });
  await db.open();
  t.teardown(() => db.close());
  const got = await new LevelDbRaftStorage(
    db.sublevel<string, Uint8Array>("raft", { valueEncoding: "view" }),
  ).load();
  t.true(got.entries.length >= lastAcked, `${got.entries.length} entries on disk, ${lastAcked} acknowledged`);
  got.entries.forEach((e, i) => t.is(Buffer.from(e.data).toString(), `entry-${i + 1}`));
  t.true(got.hardState.commit >= lastAcked);
});
