/**
 * Property tests: every decoder and every KeyService method, fed random and malformed input,
 * answers with a documented typed error (or a valid result) and never crashes; a refused request
 * leaves the database unchanged.
 */
import fc from "fast-check";
import test from "ava";
import { openEnvelope } from "../../src/crypto/envelope.js";
import { Barrier } from "../../src/crypto/barrier.js";
import { Keyring } from "../../src/crypto/keyring.js";
import { LockboxError, type LockboxErrorCode } from "../../src/errors.js";
import type { KeyRecord } from "../../src/keys/key-model.js";
import { verifyPageToken } from "../../src/keys/page-token.js";
import {
  authenticateKeyRecord,
  encodeKeyRecord,
  parseGrant,
  parseKeyRecord,
} from "../../src/keys/record-codec.js";
import { admin, dumpDb, openFixture, serviceOf } from "./key-service-fixture.js";

const onlyCodes = (e: unknown, codes: LockboxErrorCode[]): boolean =>
  e instanceof LockboxError && codes.includes(e.code);

test("parseKeyRecord and parseGrant on arbitrary bytes: a record or DATA_LOSS, nothing else", (t) => {
  const jsonish = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.jsonValue().map((v) => new Uint8Array(Buffer.from(JSON.stringify(v) ?? "null"))),
    fc
      .record({
        v: fc.constantFrom(1, 2, "2"),
        id: fc.string(),
        state: fc.string(),
        bitLength: fc.integer(),
        mac: fc.base64String(),
      })
      .map((v) => new Uint8Array(Buffer.from(JSON.stringify(v)))),
  );
  fc.assert(
    fc.property(jsonish, (bytes) => {
      for (const decode of [parseKeyRecord, parseGrant]) {
        try {
          decode(bytes, "x");
        } catch (e) {
          if (!onlyCodes(e, ["DATA_LOSS"])) return false;
        }
      }
      return true;
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test("key records round-trip through the codec and authenticate under their MAC key", (t) => {
  const macKey = new Uint8Array(32).fill(7);
  const record = fc
    .record({
      id: fc.uuid(),
      project: fc.string({ minLength: 1 }),
      scope: fc.string({ minLength: 1 }),
      name: fc.string({ minLength: 1, unit: "grapheme" }),
      secretType: fc.constantFrom("symmetric" as const, "opaque" as const, "passphrase" as const),
      aesBits: fc.constantFrom(128 as const, 192 as const, 256 as const, 512 as const),
      declaredBits: fc.integer({ min: 0, max: 65536 }),
      noAlgorithm: fc.boolean(),
      createdAtMs: fc.integer({ min: 0, max: 4e12 }),
      parentId: fc.oneof(fc.constant(""), fc.uuid()),
      destroyedAtMs: fc.option(fc.integer({ min: 0, max: 4e12 }), { nil: undefined }),
      expiresAtMs: fc.option(fc.integer({ min: 0, max: 253402300799999 }), { nil: undefined }),
      updatedAtMs: fc.option(fc.integer({ min: 0, max: 4e12 }), { nil: undefined }),
      wrapped: fc.uint8Array({ minLength: 33, maxLength: 80 }),
    })
    .map((r): KeyRecord => {
      const symmetric = r.secretType === "symmetric";
      const createdAt = new Date(r.createdAtMs);
      const base: KeyRecord = {
        id: r.id,
        project: r.project,
        scope: r.scope,
        name: r.name,
        secretType: r.secretType,
        algorithm: !symmetric && r.noAlgorithm ? "" : "AES",
        bitLength: symmetric ? r.aesBits : r.declaredBits,
        createdAt,
        updatedAt: createdAt,
        state: r.destroyedAtMs === undefined ? "active" : "destroyed",
        parentId: r.parentId,
      };
      if (r.destroyedAtMs === undefined) base.wrappedMaterial = r.wrapped;
      else base.destroyedAt = base.updatedAt = new Date(r.destroyedAtMs);
      if (r.updatedAtMs !== undefined) base.updatedAt = new Date(r.updatedAtMs);
      if (r.expiresAtMs !== undefined) base.expiresAt = new Date(r.expiresAtMs);
      return base;
    });
  fc.assert(
    fc.property(record, (r) => {
      t.deepEqual(authenticateKeyRecord(parseKeyRecord(encodeKeyRecord(r, macKey), r.id), macKey, r.id), r);
    }),
    { numRuns: 300 },
  );
});

test("openEnvelope and verifyPageToken on arbitrary input: only DATA_LOSS / INVALID_ARGUMENT page_token", (t) => {
  const barrier = new Barrier();
  barrier.unseal(Keyring.empty().withEpoch(1, new Uint8Array(32).fill(9)));
  const key = new Uint8Array(32).fill(3);
  const binding = { kind: "k", id: "i", attributes: { project: "p", algorithm: "AES", bitLength: 256 } };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.string({ maxLength: 200 }), (blob, token) => {
      try {
        openEnvelope(key, blob, binding);
        return false; // random bytes never authenticate
      } catch (e) {
        if (!onlyCodes(e, ["DATA_LOSS"])) return false;
      }
      try {
        verifyPageToken(barrier, "list-keys", token);
        return false;
      } catch (e) {
        return onlyCodes(e, ["INVALID_ARGUMENT"]) && (e as LockboxError).field === "page_token";
      }
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test("every KeyService method on random requests: documented codes only, database unchanged on error", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  const existing = await s.createKey(admin, {
    project: "tenant-a",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  const maybeGood = <T>(good: T, bad: fc.Arbitrary<unknown>) => fc.oneof(fc.constant(good), bad);
  const weird = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.integer(),
    fc.constant(null),
    fc.constant(undefined),
    fc.uint8Array(),
    fc.double(),
    fc.boolean(),
  );
  const arb = fc.record({
    project: maybeGood("tenant-a", weird),
    scope: maybeGood("s", weird),
    name: maybeGood("n", weird),
    algorithm: maybeGood("AES", weird),
    bitLength: maybeGood(128, fc.oneof(weird, fc.integer({ min: -1, max: 513 }))),
    material: maybeGood(new Uint8Array(16), fc.oneof(weird, fc.uint8Array({ maxLength: 40 }))),
    id: maybeGood(existing.id, fc.oneof(weird, fc.uuid())),
    pageSize: fc.oneof(fc.integer({ min: -5, max: 1100 }), weird),
    pageToken: weird,
    grantee: maybeGood("g", weird),
    expiresAt: fc.oneof(fc.date(), weird),
    caller: fc.constantFrom(admin, serviceOf("x", "tenant-a"), serviceOf("y", "tenant-b"), {
      identity: "z",
      role: "bogus",
      projects: [],
    } as never),
    method: fc.integer({ min: 0, max: 9 }),
  });
  const allowed: LockboxErrorCode[] = [
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "FAILED_PRECONDITION",
  ];
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(arb, async (r) => {
      const before = await dumpDb(handle.store);
      const calls = [
        () => s.createKey(r.caller, r as never),
        () => s.importKey(r.caller, r as never),
        () => s.getKey(r.caller, r as never),
        () => s.getKeyMetadata(r.caller, r as never),
        () => s.listKeys(r.caller, r as never),
        () => s.deleteKey(r.caller, { id: r.id } as never),
        () => s.cloneKey(r.caller, r as never),
        () => s.rekeyClone(r.caller, r as never),
        () => s.createGrant(r.caller, { keyId: r.id, grantee: r.grantee, expiresAt: r.expiresAt } as never),
        () => s.revokeGrant(r.caller, { grantId: r.id } as never),
      ];
      try {
        await calls[r.method]!();
      } catch (e) {
        refused += 1;
        if (!onlyCodes(e, allowed)) throw e;
        t.deepEqual(await dumpDb(handle.store), before);
      }
    }),
    { numRuns: 300 },
  );
  t.true(refused > 100, `refused ${refused}`);
});
