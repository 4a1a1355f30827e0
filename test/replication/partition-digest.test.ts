import test from "ava";
import fc from "fast-check";
import { bucketOf, PartitionDigest } from "../../cluster/replication/partition-digest.js";
import { ReplicationError } from "../../cluster/replication/replication-error.js";

const v = (n: number): Uint8Array => new Uint8Array([n & 0xff, n >> 8]);

/** Records as id → version number. */
const records = fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.nat({ max: 1000 }), {
  maxKeys: 60,
});

function digestOf(partition: number, recs: Record<string, number>, order?: string[]): PartitionDigest {
  const d = new PartitionDigest(partition, 6);
  for (const id of order ?? Object.keys(recs)) d.add(id, v(recs[id]!));
  return d;
}

test("the digest depends on the records, not on the order they were added in", (t) => {
  fc.assert(
    fc.property(records, (recs) => {
      const ids = Object.keys(recs);
      const a = digestOf(7, recs, ids);
      const b = digestOf(7, recs, [...ids].reverse());
      t.deepEqual(a.diff(b), []);
      t.deepEqual(a.top(), b.top());
    }),
    { numRuns: 100 },
  );
});

test("diff names exactly the buckets of records that differ", (t) => {
  fc.assert(
    fc.property(records, records, (mine, theirs) => {
      const a = digestOf(3, mine);
      const b = digestOf(3, theirs);
      const expected = new Set<number>();
      for (const id of new Set([...Object.keys(mine), ...Object.keys(theirs)])) {
        if (mine[id] !== theirs[id]) expected.add(bucketOf(id, 6));
      }
      // A bucket whose differences cancel exactly would need a SHA-256 collision.
      t.deepEqual(
        a.diff(b),
        [...expected].sort((x, y) => x - y),
      );
      t.is(a.diff(b).length === 0, a.top().equals(b.top()));
    }),
    { numRuns: 150 },
  );
});

test("replace and remove update a digest to what a rebuild gives", (t) => {
  fc.assert(
    fc.property(records, fc.nat({ max: 1000 }), (recs, newVersion) => {
      const ids = Object.keys(recs);
      if (ids.length === 0) return;
      const d = digestOf(1, recs);
      const [first, ...rest] = ids;
      d.replace(first!, v(recs[first!]!), v(newVersion));
      t.deepEqual(d.diff(digestOf(1, { ...recs, [first!]: newVersion })), []);
      d.remove(first!, v(newVersion));
      const without = Object.fromEntries(rest.map((id) => [id, recs[id]!]));
      t.deepEqual(d.diff(digestOf(1, without)), []);
    }),
    { numRuns: 100 },
  );
});

test("an empty bucket never matches one whose records cancel: counts are compared too", (t) => {
  const a = new PartitionDigest(0, 0);
  const b = new PartitionDigest(0, 0);
  b.add("x", v(1));
  b.add("x", v(1)); // the same version twice cancels in XOR
  t.deepEqual(b.bucket(0), a.bucket(0));
  t.deepEqual(a.diff(b), [0]);
});

test("digests round-trip through bytes; damaged or forged bytes are refused with INVALID_RECORD", (t) => {
  fc.assert(
    fc.property(records, fc.nat(), fc.integer({ min: 0, max: 7 }), (recs, at, bit) => {
      const d = digestOf(42, recs);
      const bytes = d.encode();
      const back = PartitionDigest.decode(bytes);
      t.deepEqual(back.diff(d), []);
      t.is(back.partition, 42);
      t.deepEqual(back.encode(), bytes);
      const damaged = new Uint8Array(bytes);
      damaged[at % damaged.length]! ^= 1 << bit;
      t.is(
        t.throws(() => PartitionDigest.decode(damaged), { instanceOf: ReplicationError })?.code,
        "INVALID_RECORD",
      );
      t.is(
        t.throws(() => PartitionDigest.decode(bytes.subarray(0, at % bytes.length)), {
          instanceOf: ReplicationError,
        })?.code,
        "INVALID_RECORD",
      );
    }),
    { numRuns: 60 },
  );
});

test("digests of different partitions or shapes do not compare, and bad arguments are refused", (t) => {
  const code = (f: () => unknown): string | undefined => t.throws(f, { instanceOf: ReplicationError })?.code;
  t.is(
    code(() => new PartitionDigest(1, 6).diff(new PartitionDigest(2, 6))),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => new PartitionDigest(1, 6).diff(new PartitionDigest(1, 5))),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => new PartitionDigest(1, 13)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => new PartitionDigest(-1, 4)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => new PartitionDigest(1, 4).remove("nothing", v(1))),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => new PartitionDigest(1, 4).bucket(16)),
    "INVALID_ARGUMENT",
  );
});
