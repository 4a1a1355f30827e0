import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { isLockboxError } from "../../src/errors.js";
import {
  openPeerStore,
  SUBLEVEL_NAMES,
  supersededPuts,
  type PeerStore,
  type StoreOp,
} from "../../src/store/peer-store.js";
import { partitionRange, recordKey } from "../../src/store/record-key.js";

const bytes = (s: string) => new Uint8Array(Buffer.from(s));
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString());

async function tempStore(t: ExecutionContext, options = {}): Promise<{ dir: string; store: PeerStore }> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-store-"));
  // Tests may replace `store` after a reopen; teardown closes whichever is current.
  const ctx = { dir, store: await openPeerStore(dir, options) };
  t.teardown(async () => {
    await ctx.store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return ctx;
}

test("writes survive close and reopen; sublevels are separate key spaces", async (t) => {
  const ctx = await tempStore(t);
  const ops: StoreOp[] = SUBLEVEL_NAMES.map((name) => ({
    type: "put",
    sublevel: name,
    key: "k",
    value: bytes(name),
  }));
  await ctx.store.write(ops);
  await ctx.store.close();
  ctx.store = await openPeerStore(ctx.dir);
  for (const name of SUBLEVEL_NAMES) t.is(text(await ctx.store.get(name, "k")), name);
  await ctx.store.write([{ type: "del", sublevel: "meta", key: "k" }]);
  t.is(await ctx.store.get("meta", "k"), undefined);
  t.is(text(await ctx.store.get("audit", "k")), "audit");
});

test("a second open of the same directory is refused with UNAVAILABLE", async (t) => {
  const ctx = await tempStore(t);
  t.true(isLockboxError(await t.throwsAsync(openPeerStore(ctx.dir)), "UNAVAILABLE"));
});

test("group commit: N concurrent writes share fewer than N synced batches and all resolve", async (t) => {
  const ctx = await tempStore(t);
  const n = 64;
  const before = ctx.store.commitMetrics();
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      ctx.store.write([
        { type: "put", sublevel: "records", key: `r${i}`, value: bytes(`v${i}`) },
        { type: "put", sublevel: "meta", key: `m${i}`, value: bytes(`v${i}`) },
      ]),
    ),
  );
  const after = ctx.store.commitMetrics();
  t.is(after.writes - before.writes, n);
  t.is(after.ops - before.ops, 2 * n);
  t.true(after.batches - before.batches < n, `batches ${after.batches - before.batches}`);
  t.true(after.batches - before.batches >= 1);
  for (let i = 0; i < n; i++) t.is(text(await ctx.store.get("records", `r${i}`)), `v${i}`);
});

test("close flushes writes still queued, and later writes are refused with UNAVAILABLE", async (t) => {
  const ctx = await tempStore(t);
  const pending = Array.from({ length: 20 }, (_, i) =>
    ctx.store.write([{ type: "put", sublevel: "meta", key: `q${i}`, value: bytes(String(i)) }]),
  );
  await ctx.store.close();
  await Promise.all(pending);
  t.true(
    isLockboxError(
      await t.throwsAsync(ctx.store.write([{ type: "del", sublevel: "meta", key: "x" }])),
      "UNAVAILABLE",
    ),
  );
  ctx.store = await openPeerStore(ctx.dir);
  for (let i = 0; i < 20; i++) t.is(text(await ctx.store.get("meta", `q${i}`)), String(i));
});

test("the write queue is bounded: beyond the limit writes fail with RESOURCE_EXHAUSTED and change nothing", async (t) => {
  const ctx = await tempStore(t, { queuedOpsMax: 10 });
  const accepted = Array.from({ length: 10 }, (_, i) =>
    ctx.store.write([{ type: "put", sublevel: "meta", key: `a${i}`, value: bytes("x") }]),
  );
  const refused = ctx.store.write([{ type: "put", sublevel: "meta", key: "over", value: bytes("x") }]);
  t.true(isLockboxError(await t.throwsAsync(refused), "RESOURCE_EXHAUSTED"));
  await Promise.all(accepted);
  t.is(await ctx.store.get("meta", "over"), undefined);
  // Once drained, the queue takes writes again.
  await ctx.store.write([{ type: "put", sublevel: "meta", key: "later", value: bytes("y") }]);
  t.is(text(await ctx.store.get("meta", "later")), "y");
});

test("records are keyed partition-first so one partition scans as one ordered range", async (t) => {
  const ctx = await tempStore(t);
  const power = 10;
  const ids = ["b-id", "a-id", "c-id"];
  const ops: StoreOp[] = [];
  for (const p of [3, 2, 1023, 0]) {
    for (const id of ids)
      ops.push({ type: "put", sublevel: "records", key: recordKey(p, id, power), value: bytes(`${p}`) });
  }
  await ctx.store.write(ops);
  t.is(recordKey(3, "x", power), "0003/x");
  t.is(recordKey(1023, "x", power), "03ff/x");
  t.is(recordKey(5, "x", 20), "00005/x");
  t.throws(() => recordKey(1024, "x", power), { instanceOf: RangeError });
  const inPartition2 = await ctx.store.sublevel("records").keys(partitionRange(2, power)).all();
  t.deepEqual(inPartition2, ["0002/a-id", "0002/b-id", "0002/c-id"]);
  const all = await ctx.store.sublevel("records").keys().all();
  t.deepEqual(
    all.map((k) => Number.parseInt(k.slice(0, 4), 16)),
    [0, 0, 0, 2, 2, 2, 3, 3, 3, 1023, 1023, 1023],
  );
});

test("writeBufferBytes sizes LevelDB's memtable: 4 MiB written through 1 MiB is flushed into tables, through the default it is not; both read back after a reopen", async (t) => {
  const value = new Uint8Array(4096).fill(7);
  const tablesAfterWriting = async (writeBufferBytes: number | undefined): Promise<number> => {
    const dir = await mkdtemp(join(tmpdir(), "lockbox-store-wb-"));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const store = await openPeerStore(dir, writeBufferBytes === undefined ? {} : { writeBufferBytes });
    for (let batch = 0; batch < 8; batch++) {
      await store.write(
        Array.from({ length: 128 }, (_, i): StoreOp => ({
          type: "put",
          sublevel: "records",
          key: `k${batch}-${i}`,
          value,
        })),
      );
    }
    const tables = (await readdir(dir)).filter((f) => f.endsWith(".ldb")).length;
    await store.close();
    const again = await openPeerStore(dir);
    for (const key of ["k0-0", "k7-127"])
      t.true(Buffer.from(value).equals(again.getNow("records", key)!), key);
    await again.close();
    return tables;
  };
  t.true((await tablesAfterWriting(2 ** 20)) > 0);
  t.is(await tablesAfterWriting(undefined), 0);
});

test("supersededPuts: a coalesce put is left out only when a later coalesce put of the same sublevel and key follows in the batch", (t) => {
  const put = (sublevel: "audit" | "meta", key: string, coalesce?: true): StoreOp =>
    coalesce === undefined
      ? { type: "put", sublevel, key, value: bytes(key) }
      : { type: "put", sublevel, key, value: bytes(key), coalesce };
  t.is(supersededPuts([put("audit", "a"), put("audit", "a")]), undefined, "plain puts are all written");
  t.is(supersededPuts([put("audit", "h", true)]), undefined);
  t.deepEqual(
    [
      ...supersededPuts([
        put("audit", "h", true), // 0: superseded by 3
        put("audit", "r1"),
        put("meta", "h", true), // 2: another sublevel, kept
        put("audit", "h", true), // 3: superseded by 5
        { type: "del", sublevel: "audit", key: "h" }, // 4: not a coalesce put: kept
        put("audit", "h", true), // 5: the last, kept
        put("audit", "h"), // 6: plain, kept
      ])!,
    ].sort(),
    [0, 3],
  );
});

test("coalesce puts queued into one batch: LevelDB gets only the last, reads see it across a reopen; a later plain write still wins", async (t) => {
  const ctx = await tempStore(t);
  // The puts that reach LevelDB's batches (the store's own database, its batch wrapped).
  const db = (ctx.store as unknown as { db: { batch(): { put(k: unknown, v: unknown): unknown } } }).db;
  const batchOf = db.batch.bind(db);
  let putsToLevel = 0;
  db.batch = () => {
    const b = batchOf();
    const put = b.put.bind(b);
    b.put = (k, v) => {
      putsToLevel += 1;
      return put(k, v);
    };
    return b;
  };
  // Queued in one turn: one group-commit batch.
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      ctx.store.write([
        { type: "put", sublevel: "audit", key: `r${i}`, value: bytes(`r${i}`) },
        { type: "put", sublevel: "audit", key: "head", value: bytes(`head ${i}`), coalesce: true },
      ]),
    ),
  );
  t.is(ctx.store.commitMetrics().batches, 1, "the 20 writes shared one batch");
  t.is(putsToLevel, 21, "20 records and one head of the 40 puts queued");
  t.is(text(await ctx.store.get("audit", "head")), "head 19");
  for (let i = 0; i < 20; i++) t.is(text(await ctx.store.get("audit", `r${i}`)), `r${i}`);
  await Promise.all([
    ctx.store.write([
      { type: "put", sublevel: "audit", key: "head", value: bytes("coalesced"), coalesce: true },
    ]),
    ctx.store.write([{ type: "put", sublevel: "audit", key: "head", value: bytes("plain") }]),
  ]);
  t.is(text(await ctx.store.get("audit", "head")), "plain", "a plain put after a coalesce put wins");
  await ctx.store.close();
  ctx.store = await openPeerStore(ctx.dir);
  t.is(text(await ctx.store.get("audit", "head")), "plain");
  t.is(text(await ctx.store.get("audit", "r19")), "r19");
});
