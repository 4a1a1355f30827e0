import { createHash } from "node:crypto";
import test from "ava";
import fc from "fast-check";
import { partitionOfHash32, scopeHash32, scopePartition } from "../../cluster/ring/placement.js";
import { RingError } from "../../cluster/ring/ring-error.js";

const salt = Buffer.from("0123456789abcdef0123456789abcdef", "utf8");

test("the scope hash is SHA-256 over a domain tag and the length-prefixed salt, project and scope", (t) => {
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const expected = createHash("sha256")
    .update(
      Buffer.concat([
        Buffer.from("lockbox scope placement v1\0"),
        u32(32),
        salt,
        u32(6),
        Buffer.from("tenant"),
        u32(8),
        Buffer.from("volume-7"),
      ]),
    )
    .digest()
    .readUInt32BE(0);
  t.is(scopeHash32(salt, "tenant", "volume-7"), expected);
  t.is(scopePartition(salt, "tenant", "volume-7", 10), expected >>> 22);
  t.is(scopePartition(salt, "tenant", "volume-7", 0), 0);
  t.is(scopePartition(salt, "tenant", "volume-7", 24), expected >>> 8);
});

test("length prefixes keep shifted boundaries apart, and the salt changes placement", (t) => {
  t.not(scopeHash32(salt, "ab", "c"), scopeHash32(salt, "a", "bc"));
  t.not(scopeHash32(salt, "p", "s"), scopeHash32(Buffer.from("other salt"), "p", "s"));
  let differ = 0;
  for (let i = 0; i < 64; i++)
    if (scopePartition(salt, "p", `v${i}`, 10) !== scopePartition(Buffer.from("x"), "p", `v${i}`, 10))
      differ += 1;
  t.true(differ > 50);
});

test("scopes spread over every partition", (t) => {
  const hits = new Array<number>(16).fill(0);
  for (let i = 0; i < 4096; i++) hits[scopePartition(salt, "project", `volume-${i}`, 4)]! += 1;
  for (const h of hits) t.true(h > 150 && h < 370, `partition count ${h}`);
});

test("a partition is the prefix of the partition at any higher power", (t) => {
  fc.assert(
    fc.property(fc.string({ minLength: 1, maxLength: 20 }), fc.integer({ min: 0, max: 23 }), (scope, p) => {
      const hi = scopePartition(salt, "proj", scope, p + 1);
      t.is(hi >>> 1, scopePartition(salt, "proj", scope, p));
    }),
    { numRuns: 100 },
  );
});

test("bad inputs are refused with INVALID_ARGUMENT", (t) => {
  const code = (f: () => unknown): string | undefined => t.throws(f, { instanceOf: RingError })?.code;
  t.is(
    code(() => scopeHash32(new Uint8Array(0), "p", "s")),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => scopeHash32(salt, "", "s")),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => scopeHash32(salt, "p", "")),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => scopeHash32(salt, "p", "x".repeat(513))),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => scopePartition(salt, "p", "s", 25)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => partitionOfHash32(2 ** 32, 4)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => partitionOfHash32(-1, 4)),
    "INVALID_ARGUMENT",
  );
});
