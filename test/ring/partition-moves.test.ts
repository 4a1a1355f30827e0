import test from "ava";
import { partitionMoves } from "../../cluster/ring/partition-moves.js";
import { RingBuilder } from "../../cluster/ring/ring-builder.js";
import { RingError } from "../../cluster/ring/ring-error.js";
import { CheckedBuilder, movement } from "./ring-helpers.js";

test("moves after adding a peer: the new peer receives, copies come from staying holders first", (t) => {
  const c = new CheckedBuilder(8, 3, 1);
  for (let i = 0; i < 3; i++) c.add(`peer-${i}`, `zone-${i}`);
  c.rebalance();
  const before = c.b.ring();
  const beforeState = c.b.toState();
  c.add("peer-3", "zone-3");
  c.rebalance(2);
  const after = c.b.ring();
  const moves = partitionMoves(before, after);
  t.is(
    moves.reduce((s, m) => s + m.receivers.length, 0),
    movement(beforeState, c.b.toState()).total,
  );
  for (const m of moves) {
    t.deepEqual(m.receivers, ["peer-3"]);
    t.is(m.leavers.length, 1);
    t.is(m.sources.length, 3);
    t.is(m.sources[2], m.leavers[0], "the leaver is the last source: staying peers serve the copy");
    t.deepEqual(
      [...m.sources].sort(),
      before
        .primaries(m.partition)
        .map((p) => p.id)
        .sort(),
    );
  }
});

test("moves after removing a peer: its partitions go elsewhere and it is the leaver", (t) => {
  const c = new CheckedBuilder(8, 3, 1);
  for (let i = 0; i < 5; i++) c.add(`peer-${i}`, `zone-${i}`);
  c.rebalance();
  const before = c.b.ring();
  c.remove("peer-2");
  c.rebalance(0);
  const moves = partitionMoves(before, c.b.ring());
  t.is(moves.length, before.partitionsOf("peer-2").length);
  for (const m of moves) t.deepEqual(m.leavers, ["peer-2"]);
  t.deepEqual(partitionMoves(c.b.ring(), c.b.ring()), [], "no change, no moves");
});

test("rings of different partition powers are refused", (t) => {
  const build = (power: number) => {
    const b = RingBuilder.create({ partPower: power, replicas: 1, minPartHours: 0 });
    b.addPeer({ id: "a", zone: "z", weight: 1 });
    b.rebalance(0);
    return b.ring();
  };
  t.is(
    t.throws(() => partitionMoves(build(2), build(3)), { instanceOf: RingError })?.code,
    "INVALID_ARGUMENT",
  );
});
