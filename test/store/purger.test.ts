/**
 * The purger batches purges of overwritten values: every key named is purged within the delay, in
 * runs of at most purgeKeysPerRunMax, one run at a time; a failed run keeps its keys (retried
 * after a delay, not in a spin); and markers left by a crash are picked up at the next open.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import { openPeerStore } from "../../src/store/peer-store.js";
import { Purger, type PurgeBackend } from "../../src/store/purger.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A backend that records its runs (mock: the compaction itself is PeerStore's, tested elsewhere). */
function recordingBackend(
  failTimes = 0,
): PurgeBackend & { runs: string[][]; concurrent: number; maxConcurrent: number } {
  const b = {
    runs: [] as string[][],
    concurrent: 0,
    maxConcurrent: 0,
    async purge(markers: readonly string[]) {
      b.concurrent += 1;
      b.maxConcurrent = Math.max(b.maxConcurrent, b.concurrent);
      await sleep(5);
      b.concurrent -= 1;
      if (failTimes-- > 0) throw new Error("compaction failed");
      b.runs.push([...markers]);
    },
    async clearMarkers() {},
  };
  return b;
}

test("keys named within the delay share one run, started no later than the delay (mock backend)", async (t) => {
  const backend = recordingBackend();
  const purger = new Purger(backend, { purgeDelayMs: 100 });
  purger.add(["records/a"]);
  await sleep(20);
  purger.add(["records/b", "records/a"]);
  t.like(purger.status(), { pending: 2, runs: 0, delayMs: 100 });
  t.true(purger.status().oldestPendingMs >= 20);
  for (let i = 0; i < 40 && purger.status().pending > 0; i++) await sleep(25);
  t.deepEqual(backend.runs, [["records/a", "records/b"]]);
  t.like(purger.status(), { pending: 0, runs: 1, purgedKeys: 2, failedRuns: 0, oldestPendingMs: 0 });
  await purger.close();
});

test("runs hold at most purgeKeysPerRunMax keys and never overlap (mock backend)", async (t) => {
  const backend = recordingBackend();
  const purger = new Purger(backend, { purgeDelayMs: 0, purgeKeysPerRunMax: 3 });
  purger.add(Array.from({ length: 8 }, (_, i) => `records/k${i}`));
  await purger.flush();
  t.deepEqual(
    backend.runs.map((r) => r.length),
    [3, 3, 2],
  );
  t.is(backend.maxConcurrent, 1);
  await purger.close();
});

test("a failed run keeps its keys and is retried after the delay (mock backend)", async (t) => {
  const backend = recordingBackend(1);
  const purger = new Purger(backend, { purgeDelayMs: 50 });
  purger.add(["records/a"]);
  await sleep(80);
  t.like(purger.status(), { pending: 1, failedRuns: 1, runs: 0 });
  for (let i = 0; i < 40 && purger.status().pending > 0; i++) await sleep(25);
  t.like(purger.status(), { pending: 0, failedRuns: 1, runs: 1 });
  await purger.close();
});

test("purge markers in the store at open are scheduled again and cleared once purged", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-purge-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // A store that died between writing a tombstone and purging it: the marker is all that is left.
  const first = await openPeerStore(dir);
  await first.write([
    { type: "put", sublevel: "records", key: "0001/k", value: new Uint8Array([1]) },
    { type: "put", sublevel: "purge", key: "records/0001/k", value: new Uint8Array(0) },
  ]);
  await first.close(); // the purger never heard of that marker: nothing ran
  t.is(first.purgeStatus().runs, 0);

  const store = await openPeerStore(dir, { purgeDelayMs: 50 });
  t.teardown(() => store.close());
  t.is(store.purgeStatus().pending, 1);
  for (let i = 0; i < 40 && store.purgeStatus().pending > 0; i++) await sleep(25);
  t.like(store.purgeStatus(), { pending: 0, runs: 1, purgedKeys: 1 });
  t.deepEqual(await store.sublevel("purge").keys().all(), []);
  t.deepEqual([...((await store.get("records", "0001/k")) ?? [])], [1], "the value itself is kept");
});
