/**
 * Rival versions of a key made by rival attempts of one client request (cluster/replication/
 * replicated-key.ts, src/replication/coordinator.ts settle): the merge rules and codec, then real
 * replicas (LevelDB) behind real coordinators in one process. Checked: a replica keeps the rival it
 * holds first, so only one version reaches a write quorum; the acknowledged version is the one every
 * later read returns, also when an unacknowledged rival with an EARLIER stamp sits on a primary;
 * three rivals, one per primary (none acknowledged), settle to the earliest; replicas converge; a
 * read or listing that sees an unsettled version on fewer than W primaries settles it first, so the
 * material served never changes later; a listing leaves out an id it cannot settle now.
 */
import test from "ava";
import fc from "fast-check";
import {
  decodeReplicatedKey,
  encodeReplicatedKey,
  mergeKeys,
  ReplicationError,
  type HlcStamp,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import { nodeScheduler } from "../../cluster/raft/driver/scheduler.js";
import { isLockboxError } from "../../src/errors.js";
import { AntiEntropy } from "../../src/replication/anti-entropy.js";
import { HandoffRunner } from "../../src/replication/hinted-handoff.js";
import { CREATED, FIELDS, MATERIAL, version } from "./key-versions.js";
import { pollFor } from "../helpers/wait-for.js";
import { TestCluster } from "./replication-cluster.js";

const PEERS = ["a", "b", "c", "d", "e"];

/** A version of `k` made by another attempt of the same request: same id, other material and stamp. */
function rival(k: ReplicatedKey, fill: number, created: HlcStamp, request = "fp-1"): ReplicatedKey {
  return {
    ...k,
    fields: { ...k.fields, request, createdAtMs: created.wallMs },
    created,
    wrappedMaterial: new Uint8Array(32).fill(fill),
    state: { value: "active", stamp: created },
    settled: false,
  };
}

const base: ReplicatedKey = {
  fields: { ...FIELDS, request: "fp-1" },
  created: CREATED,
  wrappedMaterial: MATERIAL,
  state: { value: "active", stamp: CREATED },
  tombstone: null,
  grants: [],
  consumers: [],
  settled: false,
};

async function until(cond: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

test("merge: a settled rival wins whole over an unsettled one, in either order", (t) => {
  const x = { ...rival(base, 9, { wallMs: 5, logical: 0, peer: "b" }), settled: true };
  const y = rival(base, 7, { wallMs: 1, logical: 0, peer: "a" });
  t.deepEqual(mergeKeys(x, y), x);
  t.deepEqual(mergeKeys(y, x), x);
});

test("merge: two unsettled rivals are not merged (RIVAL), two settled ones are CONFLICT", (t) => {
  const x = rival(base, 9, { wallMs: 5, logical: 0, peer: "b" });
  const y = rival(base, 7, { wallMs: 1, logical: 0, peer: "a" });
  const e = t.throws(() => mergeKeys(x, y));
  t.true(e instanceof ReplicationError && e.code === "RIVAL", String(e));
  const both = t.throws(() => mergeKeys({ ...x, settled: true }, { ...y, settled: true }));
  t.true(both instanceof ReplicationError && both.code === "CONFLICT", String(both));
});

test("merge: versions of one body join field by field, settled by or", (t) => {
  const x = rival(base, 9, { wallMs: 5, logical: 0, peer: "b" });
  const tomb: HlcStamp = { wallMs: 8, logical: 0, peer: "c" };
  const settledDeleted = { ...x, settled: true, tombstone: tomb, wrappedMaterial: null };
  const m = mergeKeys(x, settledDeleted);
  t.true(m.settled);
  t.deepEqual(m.tombstone, tomb);
  t.is(m.wrappedMaterial, null);
});

test("merge: a record without a request stays CONFLICT on other material (damage, not a rival)", (t) => {
  const { request: _r, ...fields } = base.fields;
  const plain: ReplicatedKey = { ...base, fields };
  delete plain.settled;
  const e = t.throws(() => mergeKeys(plain, { ...plain, wrappedMaterial: new Uint8Array([9, 9]) }));
  t.true(e instanceof ReplicationError && e.code === "CONFLICT", String(e));
});

test("codec: a request's record round-trips in format 3, and format 3 without a request is refused", (t) => {
  for (const settled of [false, true]) {
    const k = { ...base, settled };
    const bytes = encodeReplicatedKey(k);
    t.is(bytes[4], 3);
    t.deepEqual(decodeReplicatedKey(bytes), k);
  }
  t.throws(() => encodeReplicatedKey({ ...base, settled: undefined as unknown as boolean }), {
    instanceOf: ReplicationError,
  });
  const { request: _r, ...fields } = base.fields;
  t.throws(() => encodeReplicatedKey({ ...base, fields }), { instanceOf: ReplicationError });
});

test("a version acknowledged by a write quorum is what reads return, though an earlier rival sits on one primary", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k) as [string, string, string];
  const partition = c.partitionOf(k);
  const early = rival(k, 0x11, { wallMs: c.nowMs - 1_000, logical: 0, peer: p3 });
  const acked = rival(k, 0x22, { wallMs: c.nowMs, logical: 0, peer: p1 });
  // The earlier attempt reached only p3 (its coordinator failed); the later one goes through p1.
  t.true((await c.peer(p3).replica.put(partition, encodeReplicatedKey(early))).ok);
  await c.peer(p1).coordinator.write(acked);
  // p3 refused it as a rival; the coordinator settles the id in the background.
  t.true(
    await until(async () => {
      for (const p of [p1, p2, p3]) {
        const bytes = await c.peer(p).replicaStore.getRecord(partition, k.fields.id);
        if (bytes === undefined) return false;
        const held = decodeReplicatedKey(bytes);
        if (held.settled !== true || held.wrappedMaterial?.[0] !== 0x22) return false;
      }
      return true;
    }),
    "every primary holds the acknowledged version, settled",
  );
  for (const p of [p1, p2, p3]) {
    const read = await c.peer(p).coordinator.read(k.fields.id);
    t.deepEqual(read!.wrappedMaterial, acked.wrappedMaterial, `read through ${p}`);
  }
});

test("a rival refused by a quorum fails ALREADY_EXISTS, and settle answers the acknowledged version", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2] = c.primariesOf(k) as [string, string, string];
  const first = rival(k, 0x33, { wallMs: c.nowMs, logical: 0, peer: p1 });
  await c.peer(p1).coordinator.write(first);
  const retry = rival(k, 0x44, { wallMs: c.nowMs + 5, logical: 0, peer: p2 });
  const e = await t.throwsAsync(c.peer(p2).coordinator.write(retry));
  t.true(isLockboxError(e, "ALREADY_EXISTS"), String(e));
  const kept = await c.peer(p2).coordinator.settle(k.fields.id);
  t.deepEqual(kept!.wrappedMaterial, first.wrappedMaterial);
  t.true(kept!.settled);
  t.is(await c.peer(p2).coordinator.settle(c.newKey().fields.id), null, "nothing held, nothing settled");
});

test("three rivals, one per primary, none acknowledged: reads settle the earliest and every primary converges", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const primaries = c.primariesOf(k) as [string, string, string];
  const partition = c.partitionOf(k);
  const versions = primaries.map((p, i) =>
    rival(k, 0x50 + i, { wallMs: c.nowMs - 10 * i, logical: 0, peer: p }),
  );
  for (const [i, p] of primaries.entries()) {
    t.true((await c.peer(p).replica.put(partition, encodeReplicatedKey(versions[i]!))).ok);
  }
  // Concurrent reads through every primary: each meets rivals and settles; all agree.
  const reads = await Promise.all(primaries.map((p) => c.peer(p).coordinator.read(k.fields.id)));
  for (const r of reads)
    t.deepEqual(new Uint8Array(r!.wrappedMaterial!), versions[2]!.wrappedMaterial, "the earliest");
  // Each read answered once its settle write had W acks: the third primary's copy may still be on its
  // way, so every primary must hold the same bytes within a bounded wait (not at once).
  const heldNow = () =>
    Promise.all(primaries.map((p) => c.peer(p).replicaStore.getRecord(partition, k.fields.id)));
  const held =
    (await pollFor(
      async () => {
        const h = await heldNow();
        return h.every((b) => b !== undefined && Buffer.from(b).equals(Buffer.from(h[0]!))) && h;
      },
      5_000,
      20,
    )) ?? (await heldNow());
  for (const bytes of held) t.deepEqual(bytes, held[0], "every primary holds the same bytes");
  t.true(decodeReplicatedKey(held[0]!).settled);
  const again = await c.peer(primaries[1]).coordinator.read(k.fields.id);
  t.deepEqual(new Uint8Array(again!.wrappedMaterial!), versions[2]!.wrappedMaterial, "and stays so");
});

test("anti-entropy that meets a rival settles the id: the version on a write quorum wins on every primary", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k) as [string, string, string];
  const partition = c.partitionOf(k);
  // Copies landed with no coordinator left to settle them: the later version on two primaries.
  const onTwo = rival(k, 0x61, { wallMs: c.nowMs, logical: 0, peer: p1 });
  const onOne = rival(k, 0x62, { wallMs: c.nowMs - 50, logical: 0, peer: p3 });
  for (const p of [p1, p2]) t.true((await c.peer(p).replica.put(partition, encodeReplicatedKey(onTwo))).ok);
  t.true((await c.peer(p3).replica.put(partition, encodeReplicatedKey(onOne))).ok);
  const settled: string[] = [];
  const peer = c.peer(p3);
  const antiEntropy = new AntiEntropy({
    replica: peer.replica,
    placement: c.placement,
    sender: peer.batcher,
    scheduler: nodeScheduler,
    onRival: (id) => {
      settled.push(id);
      void peer.coordinator.settle(id);
    },
  });
  await antiEntropy.runOnce();
  t.true(settled.includes(k.fields.id), "the refused push reported the rival");
  t.true(
    await until(async () => {
      const held = await Promise.all(
        [p1, p2, p3].map((p) => c.peer(p).replicaStore.getRecord(partition, k.fields.id)),
      );
      return held.every((b) => b !== undefined && decodeReplicatedKey(b).wrappedMaterial?.[0] === 0x61);
    }),
    "every primary holds the version two of them held",
  );
});

/**
 * Versions of one request's key from two attempts (bodies X and Y), any later history of each, and
 * at most one body ever settled (X here), as the coordinator guarantees.
 */
const rivalVersion = fc
  .record({
    body: fc.constantFrom("x" as const, "y" as const),
    settled: fc.boolean(),
    v: version,
  })
  .map(({ body, settled, v }): ReplicatedKey => {
    const created: HlcStamp =
      body === "x" ? { wallMs: 0, logical: 0, peer: "a" } : { wallMs: 0, logical: 1, peer: "b" };
    return {
      ...v,
      fields: { ...FIELDS, request: "fp-1" },
      created,
      wrappedMaterial: v.tombstone === null ? new Uint8Array(8).fill(body === "x" ? 1 : 2) : null,
      settled: body === "x" && settled,
    };
  });

function tryMerge(versions: readonly ReplicatedKey[]): ReplicatedKey | "rival" {
  try {
    return versions.slice(1).reduce(mergeKeys, versions[0]!);
  } catch (e) {
    if (e instanceof ReplicationError && e.code === "RIVAL") return "rival";
    throw e;
  }
}

test("property: merges of rival versions that succeed agree in every order, and a settled body always wins", (t) => {
  fc.assert(
    fc.property(fc.array(rivalVersion, { minLength: 1, maxLength: 5 }), fc.nat(), (versions, seed) => {
      const shuffled = [...versions].sort(
        (a, b) => ((versions.indexOf(a) * 7919 + seed) % 13) - ((versions.indexOf(b) * 7919 + seed) % 13),
      );
      const one = tryMerge(versions);
      const two = tryMerge(shuffled);
      if (one !== "rival" && two !== "rival") t.deepEqual(one, two);
      const settledX = versions.some((v) => v.settled === true);
      for (const m of [one, two]) {
        if (m === "rival") {
          // Only unsettled rivals stop a merge; the coordinator then settles the id.
          t.true(
            versions.some((v) => v.created.peer === "b") && versions.some((v) => v.created.peer === "a"),
          );
          continue;
        }
        if (settledX) t.is(m.created.peer, "a", "the settled body is the one kept");
        t.deepEqual(tryMerge([m, m]), m, "idempotent");
      }
    }),
    { numRuns: 500 },
  );
});

test("a handoff copy of a rival that lost is dropped with its hint once the id is settled", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k) as [string, string, string];
  const h = c.handoffsOf(k)[0]!;
  const partition = c.partitionOf(k);
  const won = rival(k, 0x71, { wallMs: c.nowMs, logical: 0, peer: p1 });
  const lost = rival(k, 0x72, { wallMs: c.nowMs - 5, logical: 0, peer: h });
  await c.peer(p1).coordinator.write(won);
  // The losing attempt's copy for p3 landed on the handoff peer, with a hint.
  t.true((await c.peer(h).replica.put(partition, encodeReplicatedKey(lost), p3)).ok);
  const peer = c.peer(h);
  const handoff = new HandoffRunner({
    replica: peer.replica,
    store: peer.replicaStore,
    placement: c.placement,
    sender: peer.batcher,
    scheduler: nodeScheduler,
    nowMs: () => c.nowMs,
    hintMaxAgeMs: 86_400_000,
    settle: (id) => peer.coordinator.settle(id),
  });
  await handoff.runOnce();
  t.is(handoff.metrics.dropped, 1);
  t.is(await peer.replicaStore.getRecord(partition, k.fields.id), undefined, "the losing copy is gone");
  t.deepEqual(await peer.replicaStore.hints(10), [], "and its hint");
  for (const p of [p1, p2, p3]) {
    const bytes = await c.peer(p).replicaStore.getRecord(partition, k.fields.id);
    t.is(decodeReplicatedKey(bytes!).wrappedMaterial?.[0], 0x71, `${p} holds the acknowledged version`);
  }
});

/**
 * Attempt 1's version (earlier) reached only p1, a retry's only p3, both attempts failed UNAVAILABLE;
 * p1 is down. A read (or listing) quorum of p2 and p3 sees only the retry's version.
 */
async function rivalsOnOnePrimaryEach(t: Parameters<typeof TestCluster.start>[0]) {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k) as [string, string, string];
  const partition = c.partitionOf(k);
  const first = rival(k, 0x81, { wallMs: c.nowMs - 100, logical: 0, peer: p1 });
  const retry = rival(k, 0x82, { wallMs: c.nowMs, logical: 0, peer: p3 });
  t.true((await c.peer(p1).replica.put(partition, encodeReplicatedKey(first))).ok);
  t.true((await c.peer(p3).replica.put(partition, encodeReplicatedKey(retry))).ok);
  c.down.add(p1);
  c.cut.add(p1);
  const back = (): void => {
    c.down.delete(p1);
    c.cut.delete(p1);
  };
  return { c, k, p1, p2, p3, partition, back };
}

test("a read that sees an unsettled version on fewer than W primaries settles it: the material served never changes", async (t) => {
  const { c, k, p2, back } = await rivalsOnOnePrimaryEach(t);
  const served = await c.peer(p2).coordinator.read(k.fields.id);
  t.true(served!.settled, "served only once settled");
  back();
  // With every primary up, a settle (and so every later read) keeps what was served.
  const kept = await c.peer(p2).coordinator.settle(k.fields.id);
  t.deepEqual(new Uint8Array(kept!.wrappedMaterial!), new Uint8Array(served!.wrappedMaterial!));
  for (const p of c.primariesOf(k)) {
    const read = await c.peer(p).coordinator.read(k.fields.id);
    t.deepEqual(
      new Uint8Array(read!.wrappedMaterial!),
      new Uint8Array(served!.wrappedMaterial!),
      `read through ${p}`,
    );
  }
});

test("a listing that sees an unsettled version on fewer than W primaries settles it before listing it", async (t) => {
  const { c, k, p2, partition, back } = await rivalsOnOnePrimaryEach(t);
  const listed = (await c.peer(p2).coordinator.readPartition(partition)).find(
    (r) => r.fields.id === k.fields.id,
  );
  t.true(listed !== undefined && listed.settled === true, "listed, settled");
  back();
  const kept = await c.peer(p2).coordinator.settle(k.fields.id);
  t.deepEqual(new Uint8Array(kept!.wrappedMaterial!), new Uint8Array(listed!.wrappedMaterial!));
});

test("a listing leaves out an id whose rivals cannot be settled now, and lists the rest", async (t) => {
  const c = await TestCluster.start(t, PEERS);
  const k = c.newKey();
  const plain = c.newKey();
  const [p1, p2, p3] = c.primariesOf(k) as [string, string, string];
  const partition = c.partitionOf(k);
  t.is(c.partitionOf(plain), partition, "both keys in one partition");
  await c.peer(p1).coordinator.write(plain);
  // p1 down, p2 holds attempt 1's version, p3 the retry's: no version can reach W = 2.
  t.true(
    (
      await c
        .peer(p2)
        .replica.put(
          partition,
          encodeReplicatedKey(rival(k, 0x91, { wallMs: c.nowMs - 5, logical: 0, peer: p2 })),
        )
    ).ok,
  );
  t.true(
    (
      await c
        .peer(p3)
        .replica.put(
          partition,
          encodeReplicatedKey(rival(k, 0x92, { wallMs: c.nowMs, logical: 0, peer: p3 })),
        )
    ).ok,
  );
  c.down.add(p1);
  c.cut.add(p1);
  const before = c.peer(p2).coordinator.metrics.badAnswers;
  const listed = await c.peer(p2).coordinator.readPartition(partition);
  t.deepEqual(
    listed.map((r) => r.fields.id),
    [plain.fields.id],
    "the plain key listed, the unsettleable id left out",
  );
  t.is(c.peer(p2).coordinator.metrics.badAnswers, before + 1, "counted like a conflict");
});
