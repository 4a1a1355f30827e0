/**
 * The driver's client deadlines run from the call, not from when its loop gets to the call: a loop held
 * up by a storage write that never finishes (a hung disk) must not leave a proposal or a membership
 * change waiting for ever (the leader's autopilot awaits them one at a time, and one such promise would
 * stop it for good). Virtual time: the test fires the driver's deadlines itself.
 */
import test from "ava";
import { bootstrapSnapshot, emptyHardState, type Snapshot } from "../../cluster/raft/core/types.js";
import { Timeout } from "../../cluster/raft/driver/errors.js";
import { RaftDriver } from "../../cluster/raft/driver/raft-driver.js";
import type { Scheduler } from "../../cluster/raft/driver/scheduler.js";
import type { RaftStorage } from "../../cluster/raft/driver/raft-storage.js";

interface Rig {
  driver: RaftDriver;
  /** Ticks the node `n` times, then lets its loop run. */
  tick(n: number): Promise<void>;
  /** From now on, storage writes never finish. */
  hang(): void;
  /** Fires every deadline due within `ms` of virtual time. */
  advance(ms: number): Promise<void>;
}

async function loneLeader(): Promise<Rig> {
  let hung = false;
  const storage: RaftStorage = {
    load: () => ({ hardState: emptyHardState(), snapshot: bootstrapSnapshot(["a"]), entries: [] }),
    save: () => (hung ? new Promise<void>(() => {}) : Promise.resolve()),
    compact: (_s: Snapshot) => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  let now = 0;
  const timers = new Set<{ at: number; fn: () => void }>();
  const scheduler: Scheduler = {
    soon: (fn) => setImmediate(fn),
    after: (ms, fn) => {
      const t = { at: now + ms, fn };
      timers.add(t);
      return () => timers.delete(t);
    },
  };
  let onTick: () => void = () => {};
  const driver = await RaftDriver.start({
    config: {
      id: "a",
      electionTicks: 10,
      heartbeatTicks: 1,
      inflightMax: 16,
      batchEntriesMax: 64,
      batchBytesMax: 64 * 1024,
      checkQuorum: true,
      preVote: true,
      random: { nextInt: () => 0 },
    },
    storage,
    transport: {
      start: () => {},
      send: () => {},
      setPeerAddress: () => {},
      removePeer: () => {},
      close: async () => {},
    },
    stateMachine: { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: () => {} },
    ticker: { start: (fn) => (onTick = fn), stop: () => {} },
    scheduler,
    proposeTimeoutMs: 1_000,
  });
  const settle = () => new Promise<void>((r) => setTimeout(r, 20));
  return {
    driver,
    async tick(n) {
      for (let i = 0; i < n; i++) onTick();
      await settle();
    },
    hang: () => {
      hung = true;
    },
    async advance(ms) {
      now += ms;
      for (const t of [...timers]) {
        if (t.at <= now) {
          timers.delete(t);
          t.fn();
        }
      }
      await settle();
    },
  };
}

/** "pending" if `p` has not settled yet, else how it settled. */
async function state<T>(p: Promise<T>): Promise<"pending" | { value: T } | { error: unknown }> {
  const marker = Symbol("pending");
  const r = await Promise.race([
    p.then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    ),
    new Promise<typeof marker>((res) => setImmediate(() => res(marker))),
  ]);
  return r === marker ? "pending" : r;
}

test("a membership change waiting behind a storage write that never finishes is refused with Timeout at its deadline", async (t) => {
  const rig = await loneLeader();
  await rig.tick(25);
  t.is(rig.driver.status().role, "leader");
  // The loop is now held up by a write that never finishes...
  rig.hang();
  const blocked = rig.driver.propose(new TextEncoder().encode("x"));
  await rig.tick(1);
  // ... so this change never reaches the core; its deadline still runs.
  const change = rig.driver.addLearner("b");
  await rig.advance(999);
  t.is(await state(change), "pending");
  await rig.advance(1);
  const settled = await state(change);
  t.true(
    typeof settled === "object" && "error" in settled && settled.error instanceof Timeout,
    String(settled),
  );
  t.true(
    (await state(blocked).then((s) => (typeof s === "object" && "error" in s ? s.error : s))) instanceof
      Timeout,
  );
  // The change was never proposed: the configuration is as it was.
  t.deepEqual(rig.driver.status().confState, { voters: ["a"], learners: [] });
});

test("a change answered before its deadline is not refused when the deadline passes later", async (t) => {
  const rig = await loneLeader();
  await rig.tick(25);
  const change = rig.driver.addLearner("b");
  await rig.tick(1);
  t.like(await state(change), { value: { index: 2 } });
  await rig.advance(5_000);
  t.deepEqual(rig.driver.status().confState, { voters: ["a"], learners: ["b"] });
});
