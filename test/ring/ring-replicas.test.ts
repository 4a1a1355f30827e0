/**
 * RingBuilder.setReplicas: a cluster's N changes as it grows from one peer (N = 1) or shrinks below N.
 * Growing adds replica rows that the next rebalance fills, without moving any existing replica;
 * shrinking drops the last rows. validate() holds after every step.
 */
import test from "ava";
import { RingBuilder } from "../../cluster/ring/index.js";

test("growing N places the new replicas without moving the existing ones; shrinking drops the last rows", (t) => {
  const b = RingBuilder.create({ partPower: 6, replicas: 1, minPartHours: 1 });
  b.addPeer({ id: "a", zone: "z1", weight: 1 });
  b.rebalance(0);
  b.validate();
  b.addPeer({ id: "b", zone: "z2", weight: 1 });
  b.addPeer({ id: "c", zone: "z3", weight: 1 });
  const before = b.ring();
  b.setReplicas(3);
  const r = b.rebalance(1_000); // within min_part_hours: only the new rows are placed
  b.validate();
  const after = b.ring();
  t.is(after.replicas, 3);
  for (let p = 0; p < after.partitions; p++) {
    const ids = after.primaries(p).map((x) => x.id);
    t.is(ids[0], before.primaries(p)[0]!.id, `partition ${p} kept its first replica`);
    t.deepEqual([...ids].sort(), ["a", "b", "c"]);
  }
  t.is(r.moved, 2 * after.partitions);

  b.setReplicas(2);
  b.rebalance(2_000);
  b.validate();
  const shrunk = b.ring();
  t.is(shrunk.replicas, 2);
  for (let p = 0; p < shrunk.partitions; p++) {
    t.deepEqual(
      shrunk.primaries(p).map((x) => x.id),
      after
        .primaries(p)
        .slice(0, 2)
        .map((x) => x.id),
    );
  }
  t.throws(() => b.setReplicas(0), { message: /replicas must be an integer/ });
});
