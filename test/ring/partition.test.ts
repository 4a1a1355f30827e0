import { createHash } from "node:crypto";
import test from "ava";
import { PARTITION_POWER_MAX, partitionCount, partitionOf } from "../../cluster/ring/partition.js";

const salt = Buffer.from("0123456789abcdef0123456789abcdef", "utf8");

test("partition is the top p bits of SHA-256(salt || keyId)", (t) => {
  const id = "3f1c2a4e-8b7d-4c2e-9f10-5a6b7c8d9e0f";
  const digest = createHash("sha256")
    .update(Buffer.concat([salt, Buffer.from(id)]))
    .digest();
  const top16 = digest.readUInt16BE(0);
  t.is(partitionOf(salt, id, 16), top16);
  t.is(partitionOf(salt, id, 10), top16 >> 6);
  t.is(partitionOf(salt, id, 1), top16 >> 15);
  t.is(partitionOf(salt, id, 24), digest.readUIntBE(0, 3));
});

test("partition power 0 puts every key in partition 0", (t) => {
  t.is(partitionOf(salt, "a", 0), 0);
  t.is(partitionOf(salt, "b", 0), 0);
});

test("partitions are in range and spread over every partition", (t) => {
  const power = 4;
  const hits = new Array<number>(partitionCount(power)).fill(0);
  for (let i = 0; i < 4096; i++) {
    const p = partitionOf(salt, `key-${i}`, power);
    t.true(Number.isInteger(p) && p >= 0 && p < 16);
    hits[p]! += 1;
  }
  // 256 expected per partition; a sound hash stays well within these bounds for 4096 fixed ids.
  for (const h of hits) t.true(h > 150 && h < 370, `partition count ${h}`);
});

test("the salt changes placement", (t) => {
  const other = Buffer.from("another salt", "utf8");
  let differ = 0;
  for (let i = 0; i < 64; i++)
    if (partitionOf(salt, `k${i}`, 10) !== partitionOf(other, `k${i}`, 10)) differ += 1;
  t.true(differ > 50);
});

test("bad partition power or empty salt is refused", (t) => {
  t.throws(() => partitionOf(salt, "a", -1), { instanceOf: RangeError });
  t.throws(() => partitionOf(salt, "a", PARTITION_POWER_MAX + 1), { instanceOf: RangeError });
  t.throws(() => partitionOf(salt, "a", 1.5), { instanceOf: RangeError });
  t.throws(() => partitionOf(new Uint8Array(0), "a", 4), { instanceOf: RangeError });
});
