import test from "ava";
import fc from "fast-check";
import { buildReplicaPlan } from "../../cluster/ring/replica-plan.js";
import { RingError } from "../../cluster/ring/ring-error.js";

const devices = (weights: number[], zones?: string[]) =>
  weights.map((weight, slot) => ({ slot, zone: zones?.[slot] ?? `z${slot}`, weight }));

test("every level of the plan sums to partitions x replicas, and no peer is asked for a partition twice", (t) => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          weight: fc.double({ min: 1e-3, max: 1e9, noNaN: true }),
          zone: fc.constantFrom("a", "b", "c", "d"),
        }),
        {
          minLength: 3,
          maxLength: 12,
        },
      ),
      fc.integer({ min: 1, max: 3 }),
      fc.integer({ min: 0, max: 10 }),
      (peers, replicas, power) => {
        const partitions = 2 ** power;
        const plan = buildReplicaPlan(
          peers.map((p, slot) => ({ slot, ...p })),
          replicas,
          partitions,
        );
        const sum = (m: Map<unknown, number>): number => [...m.values()].reduce((s, n) => s + n, 0);
        t.is(sum(plan.partsWanted), partitions * replicas);
        t.is(sum(plan.zoneParts), partitions * replicas);
        for (const n of plan.partsWanted.values())
          t.true(Number.isInteger(n) && n >= 0 && n <= partitions, `${n}`);
        for (const z of plan.zones.values()) t.true(z.min <= z.target + 1e-9 && z.target <= z.max + 1e-9);
      },
    ),
    { numRuns: 200 },
  );
});

test("vanishing weights next to huge ones still give a plan (a subnormal once made it spin)", (t) => {
  const plan = buildReplicaPlan(devices([1e9, 1e9, 5e-324]), 3, 64);
  t.deepEqual([...plan.partsWanted.values()], [64, 64, 64]);
});

test("zones first: with three zones and three replicas each zone takes one replica whatever the weights", (t) => {
  const plan = buildReplicaPlan(devices([100, 100, 100, 1, 1], ["a", "a", "a", "b", "c"]), 3, 1024);
  for (const z of ["a", "b", "c"]) t.deepEqual(plan.zones.get(z), { min: 1, target: 1, max: 1 });
  t.is(plan.partsWanted.get(3), 1024);
  t.is(plan.partsWanted.get(4), 1024);
});

test("fewer peers than replicas is refused", (t) => {
  t.is(
    t.throws(() => buildReplicaPlan(devices([1, 1]), 3, 8), { instanceOf: RingError })?.code,
    "TOO_FEW_PEERS",
  );
});
