import test from "ava";
import fc from "fast-check";
import { RingBuilder } from "../../cluster/ring/ring-builder.js";
import { RingError } from "../../cluster/ring/ring-error.js";
import { validateRingState, type RingState } from "../../cluster/ring/ring-state.js";
import { CheckedBuilder, holders, movement, partsByPeer } from "./ring-helpers.js";

const POWER = 10;
const PARTS = 2 ** POWER;

function equalPeers(count: number, zones: number): CheckedBuilder {
  const c = new CheckedBuilder(POWER, 3, 1);
  for (let i = 0; i < count; i++) c.add(`peer-${i}`, `zone-${i % zones}`);
  return c;
}

test("first build at equal weights: every partition on 3 distinct peers, balance within 1%", (t) => {
  for (const [count, zones] of [
    [3, 3],
    [4, 4],
    [5, 5],
    [6, 3],
    [7, 2],
    [9, 1],
  ] as const) {
    const c = equalPeers(count, zones);
    const r = c.rebalance();
    t.is(r.moved, PARTS * 3, `${count} peers: every replica placed`);
    t.true(r.balance < 1, `${count} peers in ${zones} zones: balance ${r.balance}`);
    t.true(r.finished);
    const state = c.b.toState();
    for (const set of holders(state)) t.is(set.size, 3);
    const ideal = (PARTS * 3) / count;
    for (const [id, n] of partsByPeer(state))
      t.true(Math.abs(n - ideal) <= 1, `${id} holds ${n}, ideal ${ideal}`);
  }
});

test("a 4th equal peer in its own zone moves at most 1.1x its share and never two replicas of one partition", (t) => {
  const c = equalPeers(3, 3);
  c.rebalance();
  const before = c.b.toState();
  c.add("peer-3", "zone-3");
  const r = c.rebalance(2);
  const m = movement(before, c.b.toState());
  const ideal = (PARTS * 3) / 4; // the new peer's share is all that must move
  t.true(m.total <= 1.1 * ideal, `moved ${m.total}, ideal ${ideal}`);
  t.true(m.total >= ideal, "the new peer got its share");
  t.is(m.maxPerPartition, 1);
  t.is(r.maxReplicasMovedPerPartition, 1);
  t.is(r.moved, m.total);
  t.true(r.balance < 1, `balance ${r.balance}`);
  t.is(c.b.ring().dispersionReport().dispersion, 0);
});

test("a 4th equal peer sharing a zone moves at most 1.1x its share and keeps one replica per zone", (t) => {
  const c = equalPeers(3, 3);
  c.rebalance();
  const before = c.b.toState();
  c.add("peer-3", "zone-0");
  c.rebalance(2);
  const after = c.b.toState();
  const m = movement(before, after);
  // Three zones, three replicas: zone-0 keeps one replica of every partition, now split two ways.
  const ideal = PARTS / 2;
  t.true(m.total <= 1.1 * ideal && m.total >= ideal, `moved ${m.total}, ideal ${ideal}`);
  t.is(m.maxPerPartition, 1);
  t.is(partsByPeer(after).get("peer-3"), ideal);
  t.is(c.b.ring().dispersionReport().minZonesPerPartition, 3);
});

test("zones come first: a partition spans as many zones as there are, whatever the peers per zone", (t) => {
  const c = new CheckedBuilder(POWER, 3, 1);
  for (let i = 0; i < 4; i++) c.add(`big-${i}`, "zone-a");
  c.add("lone-b", "zone-b").add("lone-c", "zone-c");
  c.rebalance();
  const d = c.b.ring().dispersionReport();
  t.is(d.dispersion, 0);
  t.is(d.minZonesPerPartition, 3);
  // Each lone peer therefore holds every partition, far over its share by weight.
  const parts = partsByPeer(c.b.toState());
  t.is(parts.get("lone-b"), PARTS);
  t.is(parts.get("lone-c"), PARTS);

  const two = equalPeers(5, 2);
  two.rebalance();
  t.is(two.b.ring().dispersionReport().minZonesPerPartition, 2, "3 replicas over 2 zones use both");
  t.is(two.b.ring().dispersionReport().dispersion, 0);
});

test("zones are restored by later rebalances when a new zone appears", (t) => {
  const c = equalPeers(4, 1);
  c.rebalance();
  t.is(c.b.ring().dispersionReport().minZonesPerPartition, 1);
  c.add("other-1", "zone-x").add("other-2", "zone-y");
  for (let i = 0; i < 4; i++) {
    const before = c.b.toState();
    c.rebalance(2);
    t.true(movement(before, c.b.toState()).maxPerPartition <= 1);
  }
  const d = c.b.ring().dispersionReport();
  t.is(d.minZonesPerPartition, 3);
  t.is(d.dispersion, 0);
});

test("removing one peer moves only its replicas (near enough) and frees its slot", (t) => {
  const c = equalPeers(5, 5);
  c.rebalance();
  const before = c.b.toState();
  const held = partsByPeer(before).get("peer-2")!;
  c.remove("peer-2");
  const r = c.rebalance(0); // no time passes: removal ignores minPartHours
  const after = c.b.toState();
  t.deepEqual(r.removedPeers, ["peer-2"]);
  t.false(c.b.peers().some((p) => p.id === "peer-2"));
  t.false(partsByPeer(after).has("peer-2"));
  const m = movement(before, after);
  t.true(m.total >= held && m.total <= 1.1 * held, `moved ${m.total}, held ${held}`);
  t.is(r.maxReplicasMovedPerPartition, 0, "nothing but the removed peer's replicas moved");
  t.true(r.balance < 1, `balance ${r.balance}`);
  t.is(c.b.ring().dispersionReport().dispersion, 0);
});

test("removing many peers at once re-homes every replica they held, several per partition if need be", (t) => {
  const c = equalPeers(9, 3);
  c.rebalance();
  const before = c.b.toState();
  for (let i = 0; i < 6; i++) c.remove(`peer-${i}`);
  const r = c.rebalance(0);
  t.is(r.removedPeers.length, 6);
  const after = c.b.toState();
  t.deepEqual([...partsByPeer(after).keys()].sort(), ["peer-6", "peer-7", "peer-8"]);
  t.true(movement(before, after).maxPerPartition >= 2, "some partitions lost two or three replicas at once");
  t.true(r.finished);
  t.true(r.balance < 1, `balance ${r.balance}`);
  t.is(c.b.ring().dispersionReport().dispersion, 0, "still one replica per zone");
  validateRingState(after, true);
  // The freed slots are reused by the next peers added.
  c.add("peer-new", "zone-0");
  t.is(
    c.b.toState().slots.findIndex((s) => s?.id === "peer-new"),
    0,
  );
});

test("weights are honoured within 1% when no peer needs more than one replica of each partition", (t) => {
  const weights = [100, 100, 200, 300, 50, 150, 250];
  const c = new CheckedBuilder(POWER, 3, 0);
  weights.forEach((w, i) => c.add(`w-${i}`, "zone-a", w));
  c.rebalance();
  for (const p of c.b.ring().balanceReport().peers) t.true(Math.abs(p.balance) < 1, `${p.id}: ${p.balance}%`);
  // Doubling a weight shifts partitions to it over a few rebalances, one replica per partition each.
  c.weight("w-0", 200);
  for (let i = 0; i < 3; i++) {
    const before = c.b.toState();
    c.rebalance(1);
    t.true(movement(before, c.b.toState()).maxPerPartition <= 1);
  }
  t.true(c.b.ring().balance() < 1, `balance ${c.b.ring().balance()}`);
});

test("weight 0 drains a peer over rebalances; min_part_hours paces it", (t) => {
  const c = equalPeers(5, 5);
  c.rebalance();
  c.weight("peer-4", 0);
  let rounds = 0;
  while ((partsByPeer(c.b.toState()).get("peer-4") ?? 0) > 0 && rounds < 5) {
    const before = c.b.toState();
    c.rebalance(1);
    t.true(movement(before, c.b.toState()).maxPerPartition <= 1);
    rounds += 1;
  }
  t.false(partsByPeer(c.b.toState()).has("peer-4"), `drained in ${rounds} rebalances`);
  t.true(c.b.ring().balance() < 1);
});

test("min_part_hours: a partition that moved does not move again until the hours pass", (t) => {
  const c = new CheckedBuilder(POWER, 3, 2);
  for (let i = 0; i < 3; i++) c.add(`peer-${i}`, `zone-${i}`);
  c.rebalance();
  c.add("peer-3", "zone-3");
  t.is(c.rebalance(1).moved, 0, "every partition was placed an hour ago");
  t.is(c.rebalance(0.99).moved, 0, "1h59m is still not 2h");
  const s1 = c.b.toState();
  const r = c.rebalance(0.02);
  t.true(r.moved > 0, "after 2h the new peer gets partitions");
  const s2 = c.b.toState();
  const movedFirst = movement(s1, s2).perPartition;
  c.add("peer-4", "zone-4");
  c.rebalance(1);
  const s3 = c.b.toState();
  const movedSecond = movement(s2, s3).perPartition;
  for (let p = 0; p < PARTS; p++) {
    t.false(movedFirst[p]! > 0 && movedSecond[p]! > 0, `partition ${p} moved twice within minPartHours`);
  }
  // A removed peer's replicas move at once regardless.
  c.remove("peer-0");
  c.rebalance(0);
  t.false(partsByPeer(c.b.toState()).has("peer-0"));
});

test("time running backwards never unlocks a partition", (t) => {
  const b = RingBuilder.create({ partPower: 6, replicas: 3, minPartHours: 4 });
  for (let i = 0; i < 3; i++) b.addPeer({ id: `p${i}`, zone: `z${i}`, weight: 1 });
  b.rebalance(10 * 3_600_000);
  b.addPeer({ id: "p3", zone: "z3", weight: 1 });
  t.is(b.rebalance(0).moved, 0);
  t.is(b.rebalance(13 * 3_600_000).moved, 0);
  t.true(b.rebalance(14 * 3_600_000).moved > 0);
  b.validate();
});

test("handoffs: distinct from primaries, other zones first, every other peer once, deterministic", (t) => {
  const c = new CheckedBuilder(8, 3, 1);
  for (let i = 0; i < 9; i++) c.add(`peer-${i}`, `zone-${i % 4}`);
  c.rebalance();
  const ring = c.b.ring();
  const again = RingBuilder.fromState(c.b.toState()).ring();
  for (let p = 0; p < ring.partitions; p++) {
    const primaries = ring.primaries(p);
    const handoffs = ring.handoffs(p);
    t.deepEqual(handoffs, again.handoffs(p), "same ring, same order");
    const ids = handoffs.map((h) => h.id);
    t.is(new Set(ids).size, ids.length);
    t.is(ids.length, 9 - 3);
    for (const pr of primaries) t.false(ids.includes(pr.id));
    // The first handoff is in the zone the primaries leave out (4 zones, 3 replicas).
    const primaryZones = new Set(primaries.map((x) => x.zone));
    t.false(primaryZones.has(handoffs[0]!.zone), `partition ${p}`);
  }
  // Handoff orders differ between partitions (load of a down peer spreads).
  const firsts = new Set(
    Array.from({ length: 64 }, (_, p) =>
      ring
        .handoffs(p)
        .map((h) => h.id)
        .join(","),
    ),
  );
  t.true(firsts.size > 8);
});

test("the same operations at the same times build the same ring", (t) => {
  const build = (): RingState => {
    const c = equalPeers(5, 3);
    c.rebalance();
    c.add("extra", "zone-1", 150);
    c.rebalance(3);
    c.remove("peer-1");
    c.rebalance(3);
    return c.b.toState();
  };
  t.deepEqual(build(), build());
});

test("a peer added before the next rebalance is a handoff of last resort", (t) => {
  const c = equalPeers(3, 3);
  c.rebalance();
  c.add("late", "zone-9");
  const ring = c.b.ring();
  t.deepEqual(
    ring.handoffs(0).map((h) => h.id),
    ["late"],
  );
});

test("fewer weighted peers than replicas is refused and leaves the builder as it was", (t) => {
  const c = equalPeers(3, 3);
  c.rebalance();
  c.remove("peer-0");
  const before = c.b.toState();
  const err = t.throws(() => c.b.rebalance(c.nowMs + 1), { instanceOf: RingError });
  t.is(err?.code, "TOO_FEW_PEERS");
  t.deepEqual(c.b.toState(), before);
  c.b.validate();
});

test("bad arguments are refused with INVALID_ARGUMENT", (t) => {
  const b = RingBuilder.create({ partPower: 4, replicas: 2, minPartHours: 0 });
  const code = (f: () => unknown): string | undefined => t.throws(f, { instanceOf: RingError })?.code;
  t.is(
    code(() => RingBuilder.create({ partPower: 25, replicas: 3, minPartHours: 0 })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => RingBuilder.create({ partPower: 4, replicas: 0, minPartHours: 0 })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => RingBuilder.create({ partPower: 4, replicas: 3, minPartHours: 256 })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.addPeer({ id: "", zone: "z", weight: 1 })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.addPeer({ id: "a", zone: "z", weight: -1 })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.addPeer({ id: "a", zone: "z", weight: Number.NaN })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.addPeer({ id: "a\u001b[31m", zone: "z", weight: 1 })),
    "INVALID_ARGUMENT",
    "a terminal escape",
  );
  t.is(
    code(() => b.addPeer({ id: "a", zone: "z\n", weight: 1 })),
    "INVALID_ARGUMENT",
    "a newline",
  );
  t.is(
    code(() => b.addPeer({ id: "a", zone: "z", weight: 5e-324 })),
    "INVALID_ARGUMENT",
    "a subnormal weight",
  );
  t.is(
    code(() => b.addPeer({ id: "a", zone: "z", weight: 1e10 })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.addPeer({ id: "a\ud800", zone: "z", weight: 1 })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.addPeer({ id: "x".repeat(129), zone: "z", weight: 1 })),
    "INVALID_ARGUMENT",
  );
  b.addPeer({ id: "a", zone: "z", weight: 1 });
  t.is(
    code(() => b.addPeer({ id: "a", zone: "y", weight: 1 })),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.setWeight("nobody", 1)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.rebalance(-1)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.rebalance(1.5)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => b.ring()),
    "NOT_BUILT",
  );
  b.validate();
});

test("validate() catches each broken invariant", (t) => {
  const c = equalPeers(4, 4);
  c.rebalance();
  const good = c.b.toState();
  const broken = (mutate: (s: RingState) => void): string | undefined => {
    const s = c.b.toState();
    mutate(s);
    return t.throws(() => RingBuilder.fromState(s), { instanceOf: RingError })?.code;
  };
  t.is(
    broken((s) => (s.table![1]![7] = s.table![0]![7]!)),
    "INVALID_RING",
    "two replicas on one peer",
  );
  t.is(
    broken((s) => (s.table![0]![3] = 9)),
    "INVALID_RING",
    "replica on a slot with no peer",
  );
  t.is(
    broken((s) => s.slots.push(null)),
    "INVALID_RING",
    "trailing empty slot",
  );
  t.is(
    broken((s) => (s.slots[1] = { ...s.slots[0]! })),
    "INVALID_RING",
    "one peer in two slots",
  );
  t.is(
    broken((s) => (s.lastPartMoves = new Uint8Array(3))),
    "INVALID_RING",
    "lastPartMoves of the wrong size",
  );
  t.is(
    broken((s) => s.table!.pop()),
    "INVALID_RING",
    "a replica row missing",
  );
  t.is(
    broken((s) => (s.lastGatherStart = PARTS)),
    "INVALID_RING",
  );
  t.is(
    broken((s) => (s.slots[0] = null)),
    "INVALID_RING",
    "replicas on a freed slot",
  );
  t.notThrows(() => RingBuilder.fromState(good).validate());
});

test("random histories: every rebalance keeps the invariants and moves at most one replica per partition off staying peers", (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 7 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(
        fc.oneof(
          fc.record({
            op: fc.constant("add" as const),
            zone: fc.integer({ min: 0, max: 4 }),
            weight: fc.constantFrom(1, 2, 5),
          }),
          fc.record({ op: fc.constant("remove" as const), peer: fc.nat() }),
          fc.record({ op: fc.constant("weight" as const), peer: fc.nat(), weight: fc.constantFrom(0, 1, 3) }),
          fc.record({ op: fc.constant("rebalance" as const), hours: fc.integer({ min: 0, max: 3 }) }),
        ),
        { maxLength: 12 },
      ),
      (power, minPartHours, steps) => {
        const c = new CheckedBuilder(power, 3, minPartHours);
        for (let i = 0; i < 4; i++) c.add(`peer-${i}`, `zone-${i % 3}`);
        c.rebalance();
        let next = 4;
        for (const step of steps) {
          const peers = c.b.peers();
          if (step.op === "add") c.add(`peer-${next++}`, `zone-${step.zone}`, step.weight);
          else if (step.op === "remove" && peers.length > 0) c.remove(peers[step.peer % peers.length]!.id);
          else if (step.op === "weight" && peers.length > 0)
            c.weight(peers[step.peer % peers.length]!.id, step.weight);
          else if (step.op === "rebalance") {
            const before = c.b.toState();
            const leaving = new Set(before.slots.filter((s) => s?.removing).map((s) => s!.id));
            try {
              c.rebalance(step.hours);
            } catch (e) {
              t.true(e instanceof RingError && e.code === "TOO_FEW_PEERS", String(e));
              t.deepEqual(c.b.toState(), before);
              continue;
            }
            const after = c.b.toState();
            validateRingState(after, true);
            const was = holders(before);
            holders(after).forEach((now, p) => {
              const fromStaying = [...was[p]!].filter((id) => !now.has(id) && !leaving.has(id)).length;
              t.true(fromStaying <= 1, `partition ${p} lost ${fromStaying} replicas from staying peers`);
            });
          }
        }
      },
    ),
    { numRuns: 80 },
  );
});

test("adding one equal peer to k peers moves close to the ideal share for every k", (t) => {
  for (const k of [3, 4, 5, 6, 8]) {
    const c = equalPeers(k, k);
    c.rebalance();
    const before = c.b.toState();
    c.add(`peer-${k}`, `zone-${k}`);
    const r = c.rebalance(2);
    const m = movement(before, c.b.toState());
    const ideal = (PARTS * 3) / (k + 1);
    t.true(m.total <= 1.1 * ideal, `${k} -> ${k + 1}: moved ${m.total}, ideal ${ideal.toFixed(1)}`);
    t.true(m.maxPerPartition <= 1);
    t.true(r.balance < 1, `${k} -> ${k + 1}: balance ${r.balance}`);
  }
});
