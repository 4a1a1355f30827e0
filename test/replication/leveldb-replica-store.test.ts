import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";

const v = (s: string) => new Uint8Array(Buffer.from(s));

test("records scan by partition in id order, hints and quarantine marks persist across a reopen", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-replica-store-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let store = await openPeerStore(dir);
  let rs = new LevelReplicaStore(store, 10);
  await rs.write([
    { type: "put-record", partition: 3, id: "b", value: v("3b") },
    { type: "put-record", partition: 3, id: "a", value: v("3a") },
    { type: "put-record", partition: 700, id: "z", value: v("700z") },
    { type: "put-record", partition: 4, id: "c", value: v("4c") },
    { type: "put-hint", partition: 3, id: "a", owner: "peer/with/slashes", atMs: 1_700_000_000_123 },
    { type: "put-quarantine", partition: 700 },
  ]);
  await rs.write([{ type: "del-record", partition: 4, id: "c" }]);
  await store.close();
  store = await openPeerStore(dir);
  t.teardown(() => store.close());
  rs = new LevelReplicaStore(store, 10);
  t.deepEqual(
    (await rs.scanPartition(3, 10)).map((r) => [r.id, Buffer.from(r.value).toString()]),
    [
      ["a", "3a"],
      ["b", "3b"],
    ],
  );
  t.deepEqual((await rs.scanPartition(3, 1)).length, 1, "the limit bounds a scan");
  t.deepEqual(await rs.partitions(), [3, 700]);
  t.deepEqual(await rs.hints(10), [
    { partition: 3, id: "a", owner: "peer/with/slashes", atMs: 1_700_000_000_123 },
  ]);
  t.deepEqual(await rs.quarantined(), [700]);
  await rs.write([
    { type: "del-hint", partition: 3, id: "a", owner: "peer/with/slashes" },
    { type: "del-quarantine", partition: 700 },
  ]);
  t.deepEqual(await rs.hints(10), []);
  t.deepEqual(await rs.quarantined(), []);
});

/** Counts the LevelDB reads a PeerStore makes (the real store, its getNow wrapped). */
function countReads(store: PeerStore): { n: number } {
  const count = { n: 0 };
  const getNow = store.getNow.bind(store);
  store.getNow = (name, key) => {
    count.n += 1;
    return getNow(name, key);
  };
  return count;
}

/**
 * The store's "records" sublevel with its key iterator held after the first chunk until `release`:
 * a write can then land after the scan's snapshot, deterministically.
 */
function pauseScanAfterFirstChunk(store: PeerStore): { paused: Promise<void>; release: () => void } {
  let release!: () => void;
  let paused!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const pausedP = new Promise<void>((r) => (paused = r));
  const sublevel = store.sublevel.bind(store);
  store.sublevel = (name) => {
    const real = sublevel(name);
    if (name !== "records") return real;
    return new Proxy(real, {
      get(target, prop) {
        if (prop !== "keys") {
          const v: unknown = Reflect.get(target, prop, target);
          return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        }
        return () => {
          const it = target.keys();
          let chunks = 0;
          return {
            nextv: async (size: number) => {
              if (chunks++ === 1) {
                paused();
                await gate;
              }
              return it.nextv(size);
            },
            close: () => it.close(),
          };
        };
      },
    });
  };
  return { paused: pausedP, release };
}

test("the id filter: a record written, reopened or written during open is always read; an id never written costs no LevelDB read", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-replica-store-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let store = await openPeerStore(dir);
  let rs = new LevelReplicaStore(store, 10);
  await rs.open();
  let reads = countReads(store);
  t.is(await rs.getRecord(3, "never"), undefined);
  t.is(reads.n, 0, "an id never written is answered from the filter");
  t.is(rs.metrics.readsSkipped, 1);
  await rs.write([{ type: "put-record", partition: 3, id: "a", value: v("3a") }]);
  t.is(Buffer.from((await rs.getRecord(3, "a"))!).toString(), "3a", "an id written is read");
  t.is(reads.n, 1);
  // Written 2,000 ids, then reopened: the filter is rebuilt from disk, so each of them is read.
  const ids = Array.from({ length: 2000 }, (_, i) => `id-${i}`);
  await rs.write(ids.map((id, i) => ({ type: "put-record", partition: i % 1024, id, value: v(id) })));
  await store.close();

  store = await openPeerStore(dir);
  t.teardown(() => store.close());
  const scan = pauseScanAfterFirstChunk(store);
  rs = new LevelReplicaStore(store, 10);
  reads = countReads(store);
  t.is(await rs.getRecord(3, "never"), undefined, "before open every read goes to LevelDB");
  t.is(reads.n, 1);
  // A write landing while the scan is held after its first 1,024 keys: after the scan's snapshot,
  // so only `write` can have added it.
  const opening = rs.open();
  await scan.paused;
  await rs.write([{ type: "put-record", partition: 5, id: "during-open", value: v("d") }]);
  scan.release();
  await opening;
  t.false(rs.metrics.filterScanFailed);
  t.is(Buffer.from((await rs.getRecord(5, "during-open"))!).toString(), "d");
  t.is(Buffer.from((await rs.getRecord(3, "a"))!).toString(), "3a");
  for (const [i, id] of ids.entries()) {
    const got = await rs.getRecord(i % 1024, id);
    if (got === undefined || Buffer.from(got).toString() !== id) return t.fail(`${id} was not read back`);
  }
  const skipped = rs.metrics.readsSkipped;
  t.is(await rs.getRecord(3, "never"), undefined);
  t.is(rs.metrics.readsSkipped, skipped + 1, "after open, an id never written is answered from the filter");
  // A deleted record: the filter still says "maybe" (it never forgets), LevelDB says gone.
  await rs.write([{ type: "del-record", partition: 3, id: "a" }]);
  const before = reads.n;
  t.is(await rs.getRecord(3, "a"), undefined);
  t.is(reads.n, before + 1, "a deleted id is still read (a stale maybe, never a wrong no)");
});

test("the id filter: a key scan that fails at open leaves the filter unused, and reads go to LevelDB", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-replica-store-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await openPeerStore(dir);
  const rs = new LevelReplicaStore(store, 10);
  await store.close(); // the scan's iterator now fails
  await t.notThrowsAsync(rs.open());
  t.true(rs.metrics.filterScanFailed);
  // Not told "no" by an empty filter: the read reaches the (closed) store and fails there.
  await t.throwsAsync(rs.getRecord(3, "never"));
  t.is(rs.metrics.readsSkipped, 0);
});
