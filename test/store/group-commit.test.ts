import test from "ava";
import { GroupCommitWriter } from "../../src/store/group-commit.js";

// These tests drive the real GroupCommitWriter with an in-memory flush function standing in for
// LevelDB, so batch boundaries and failures can be observed exactly.

test("writers queued while a batch is in flight share the next batch (mock flush)", async (t) => {
  const batches: number[][] = [];
  let release!: () => void;
  let gate = new Promise<void>((r) => (release = r));
  const writer = new GroupCommitWriter<number>(async (ops) => {
    batches.push(ops);
    await gate;
  });
  const first = writer.write([0]);
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  const rest = Array.from({ length: 10 }, (_, i) => writer.write([i + 1, 100 + i]));
  const gate1 = release;
  gate = Promise.resolve();
  gate1();
  await Promise.all([first, ...rest]);
  t.is(batches.length, 2);
  t.deepEqual(batches[0], [0]);
  t.is(batches[1]!.length, 20);
  t.deepEqual(writer.metrics, { batches: 2, writes: 11, ops: 21 });
});

test("a failed batch rejects every writer in it, and the next batch still runs (mock flush)", async (t) => {
  let calls = 0;
  const writer = new GroupCommitWriter<string>(async () => {
    calls += 1;
    if (calls === 1) throw new Error("disk full");
  });
  const [a, b] = await Promise.allSettled([writer.write(["a"]), writer.write(["b"])]);
  t.is(a.status, "rejected");
  t.is(b.status, "rejected");
  t.is((a as PromiseRejectedResult).reason.message, "disk full");
  t.is((b as PromiseRejectedResult).reason.message, "disk full");
  await writer.write(["c"]);
  t.is(calls, 2);
});

test("a long queue is split into batches of at most batchOpsMax, never splitting a writer (mock flush)", async (t) => {
  const batches: string[][] = [];
  const writer = new GroupCommitWriter<string>(
    async (ops) => {
      batches.push(ops);
    },
    { batchOpsMax: 4 },
  );
  await Promise.all([writer.write(["a1", "a2", "a3"]), writer.write(["b1", "b2"]), writer.write(["c1"])]);
  t.deepEqual(batches, [
    ["a1", "a2", "a3"],
    ["b1", "b2", "c1"],
  ]);
});
