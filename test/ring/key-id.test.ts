import test from "ava";
import fc from "fast-check";
import { keyIdPlacement, partitionOfKeyId, placedKeyId } from "../../cluster/ring/key-id.js";
import { partitionOf } from "../../cluster/ring/partition.js";
import { scopeHash32, scopePartition } from "../../cluster/ring/placement.js";
import { RingError } from "../../cluster/ring/ring-error.js";

const salt = Buffer.from("0123456789abcdef0123456789abcdef", "utf8");
const RFC_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("a placed key id is an RFC 9562 version-8 UUID whose first 32 bits are the placement hash", (t) => {
  fc.assert(
    fc.property(
      fc.nat({ max: 0xffffffff }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      (hash, random) => {
        const copy = new Uint8Array(random);
        const id = placedKeyId(hash, random);
        t.regex(id, RFC_UUID);
        t.is(id.slice(0, 8), hash.toString(16).padStart(8, "0"));
        t.is(keyIdPlacement(id), hash);
        t.is(keyIdPlacement(id.toUpperCase()), hash);
        t.deepEqual(random, copy, "the caller's random bytes are not modified");
      },
    ),
    { numRuns: 200 },
  );
});

test("the random bits of the id come from the random bytes (no two draws give one id)", (t) => {
  const a = new Uint8Array(16).fill(0);
  const b = new Uint8Array(16).fill(0);
  b[15] = 1;
  t.not(placedKeyId(7, a), placedKeyId(7, b));
  t.is(placedKeyId(7, a), "00000007-0000-8000-8000-000000000000");
  t.is(placedKeyId(0xffffffff, new Uint8Array(16).fill(0xff)), "ffffffff-ffff-8fff-bfff-ffffffffffff");
});

test("a key's partition follows from its id and equals its scope's partition at every power", (t) => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 16 }),
      fc.string({ minLength: 1, maxLength: 16 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.integer({ min: 0, max: 24 }),
      (project, scope, random, power) => {
        const id = placedKeyId(scopeHash32(salt, project, scope), random);
        // The id alone decides; any salt gives the same answer for a version-8 id.
        t.is(partitionOfKeyId(salt, id, power), scopePartition(salt, project, scope, power));
        t.is(
          partitionOfKeyId(Buffer.from("another salt"), id, power),
          scopePartition(salt, project, scope, power),
        );
      },
    ),
    { numRuns: 200 },
  );
});

test("a legacy version-4 id keeps the salted id-hash partition it was stored under", (t) => {
  const legacy = "3f1c2a4e-8b7d-4c2e-9f10-5a6b7c8d9e0f";
  t.is(keyIdPlacement(legacy), undefined);
  t.is(partitionOfKeyId(salt, legacy, 10), partitionOf(salt, legacy, 10));
  t.is(partitionOfKeyId(salt, legacy.toUpperCase(), 10), partitionOf(salt, legacy, 10));
  // Version 8 with a non-RFC variant is not a placed id either.
  t.is(keyIdPlacement("00000007-0000-8000-c000-000000000000"), undefined);
});

test("malformed ids and arguments are refused with INVALID_ARGUMENT", (t) => {
  const code = (f: () => unknown): string | undefined => t.throws(f, { instanceOf: RingError })?.code;
  t.is(
    code(() => keyIdPlacement("not-a-uuid")),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => keyIdPlacement("00000007-0000-8000-8000-00000000000")),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => partitionOfKeyId(salt, "", 4)),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => placedKeyId(1, new Uint8Array(15))),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => placedKeyId(2 ** 32, new Uint8Array(16))),
    "INVALID_ARGUMENT",
  );
  t.is(
    code(() => placedKeyId(1.5, new Uint8Array(16))),
    "INVALID_ARGUMENT",
  );
});

test("a key id is accepted exactly when it is an 8-4-4-4-12 hex UUID in either case (the character check agrees with the RegExp it replaced)", (t) => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const accepted = (id: string): boolean => {
    try {
      keyIdPlacement(id);
      return true;
    } catch (e) {
      if (e instanceof RingError && e.code === "INVALID_ARGUMENT") return false;
      throw e;
    }
  };
  const nearUuid = fc
    .array(fc.constantFrom(..."0123456789abcdefABCDEFgG-_ \u0660x".split("")), {
      minLength: 34,
      maxLength: 38,
    })
    .map((cs) => cs.join(""));
  const mutated = fc
    .tuple(fc.uuid(), fc.nat(35), fc.constantFrom("-", "g", "0", "F", "\u0661", ""))
    .map(([u, i, c]) => u.slice(0, i) + c + u.slice(i + 1));
  fc.assert(
    fc.property(fc.oneof(nearUuid, mutated, fc.uuid(), fc.string()), (id) => accepted(id) === UUID.test(id)),
    { numRuns: 5000 },
  );
  t.pass();
});
