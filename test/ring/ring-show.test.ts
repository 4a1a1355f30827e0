import test from "ava";
import { formatRingShow } from "../../cluster/ring/ring-show.js";
import { CheckedBuilder } from "./ring-helpers.js";

test("ring show prints the shape, the balance of every peer and the dispersion of every zone", (t) => {
  const c = new CheckedBuilder(6, 3, 1);
  c.add("peer-a", "zone-1", 100)
    .add("peer-b", "zone-2", 100)
    .add("peer-c", "zone-3", 100)
    .add("peer-d", "zone-1", 100);
  c.rebalance();
  const lines = formatRingShow(c.b.ring(), c.b.minPartHours);
  t.is(lines[0], `ring version ${c.b.version}: 64 partitions (power 6), 3 replicas, min_part_hours 1`);
  t.regex(
    lines[1]!,
    /^balance \d+\.\d\d%  dispersion 0\.00% \(0 partition-replicas beyond 1 per zone; every partition spans at least 3 zones\)$/,
  );
  t.regex(lines[2]!, /^peer\s+zone\s+weight\s+parts\s+wanted\s+balance$/);
  // zone-1 holds one replica of every partition, split between its two peers.
  t.regex(lines[3]!, /^peer-a\s+zone-1\s+100\s+32\s+48\.0\s+-33\.33%$/);
  t.regex(lines[4]!, /^peer-b\s+zone-2\s+100\s+64\s+48\.0\s+\+33\.33%$/);
  t.true(lines.includes("zone zone-1: partitions by replicas held 0:0 1:64 2:0 3:0"));
  t.is(lines.length, 3 + 4 + 3);
});
