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
  authenticateClientRequest,
  authenticateConsumer,
  authenticateKeyRecord,
  encodeClientRequest,
  encodeConsumer,
  encodeKeyRecord,
  parseClientRequest,
  parseConsumer,
  parseGrant,
  parseKeyRecord,
} from "../../src/keys/record-codec.js";
import { admin, dumpDb, openFixture, serviceOf } from "./key-service-fixture.js";

const onlyCodes = (e: unknown, codes: LockboxErrorCode[]): boolean =>
  e instanceof LockboxError && codes.includes(e.code);

test("parseKeyRecord, parseGrant, parseConsumer and parseClientRequest on arbitrary bytes: a record or DATA_LOSS, nothing else", (t) => {
  const jsonish = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.jsonValue().map((v) => new Uint8Array(Buffer.from(JSON.stringify(v) ?? "null"))),
    fc
      .record({
        v: fc.constantFrom(1, 2, "2"),
        id: fc.string(),
        state: fc.string(),
        bitLength: fc.integer(),
        secretType: fc.constantFrom(undefined, "opaque", "passphrase", "symmetric", 3),
        expiresAtMs: fc.oneof(fc.integer(), fc.double(), fc.string()),
        updatedAtMs: fc.oneof(fc.integer(), fc.constant(null)),
        keyId: fc.string(),
        service: fc.string(),
        fingerprint: fc.string(),
        mac: fc.base64String(),
      })
      .map((v) => new Uint8Array(Buffer.from(JSON.stringify(v)))),
  );
  fc.assert(
    fc.property(jsonish, (bytes) => {
      for (const decode of [parseKeyRecord, parseGrant, parseConsumer, parseClientRequest]) {
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

test("consumer and client request entries round-trip and authenticate; a flipped byte is DATA_LOSS or the same entry", (t) => {
  const macKey = new Uint8Array(32).fill(5);
  const text = fc.string({ minLength: 1, maxLength: 40, unit: "grapheme" });
  const consumer = fc.record({
    keyId: fc.uuid(),
    service: text,
    resourceType: text,
    resourceId: text,
    createdAtMs: fc.integer({ min: 0, max: 4e12 }),
  });
  const request = fc.record({
    identity: text,
    requestId: text,
    method: fc.constantFrom("CreateKey", "ImportKey", "CloneKey", "RekeyClone"),
    project: text,
    keyId: fc.uuid(),
    fingerprint: fc.base64String({ minLength: 44, maxLength: 44 }),
    createdAtMs: fc.integer({ min: 0, max: 4e12 }),
  });
  const flip = fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 }));
  const flipped = (bytes: Uint8Array, [at, xor]: [number, number]): Uint8Array => {
    const copy = new Uint8Array(bytes);
    copy[at % copy.length] ^= xor;
    return copy;
  };
  fc.assert(
    fc.property(consumer, request, flip, (c, r, f) => {
      const entry = {
        service: c.service,
        resourceType: c.resourceType,
        resourceId: c.resourceId,
        createdAt: new Date(c.createdAtMs),
      };
      const bytes = encodeConsumer(c.keyId, entry, macKey);
      t.deepEqual(authenticateConsumer(parseConsumer(bytes, "x"), macKey, "x"), {
        keyId: c.keyId,
        consumer: entry,
      });
      const req = { ...r, createdAt: new Date(r.createdAtMs) };
      delete (req as { createdAtMs?: number }).createdAtMs;
      const reqBytes = encodeClientRequest(req, macKey);
      t.deepEqual(authenticateClientRequest(parseClientRequest(reqBytes, "x"), macKey, "x"), req);
      for (const attempt of [
        () =>
          t.deepEqual(
            authenticateConsumer(parseConsumer(flipped(bytes, f), "x"), macKey, "x").consumer,
            entry,
          ),
        () =>
          t.deepEqual(
            authenticateClientRequest(parseClientRequest(flipped(reqBytes, f), "x"), macKey, "x"),
            req,
          ),
      ]) {
        try {
          attempt();
        } catch (e) {
          if (!onlyCodes(e, ["DATA_LOSS"])) throw e;
        }
      }
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
  // No background purge may run between a call's before and after snapshots (a successful delete
  // schedules one): the comparison is about what the refused call did.
  const { handle } = await openFixture(t, { store: { purgeDelayMs: 3_600_000 } });
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
    secretType: fc.oneof(fc.constantFrom("symmetric", "opaque", "passphrase", undefined), weird),
    clientRequestId: fc.oneof(fc.constant(undefined), fc.uuid(), weird),
    force: fc.oneof(fc.boolean(), weird),
    keyId: maybeGood(existing.id, fc.oneof(weird, fc.uuid())),
    service: maybeGood("cinder", weird),
    resourceType: maybeGood("volume", weird),
    resourceId: maybeGood("v-1", weird),
    caller: fc.constantFrom(admin, serviceOf("x", "tenant-a"), serviceOf("y", "tenant-b"), {
      identity: "z",
      role: "bogus",
      projects: [],
    } as never),
    method: fc.integer({ min: 0, max: 12 }),
  });
  const allowed: LockboxErrorCode[] = [
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED", // only a key's consumer cap could be reached here
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
        () => s.deleteKey(r.caller, { id: r.id, force: r.force } as never),
        () => s.cloneKey(r.caller, r as never),
        () => s.rekeyClone(r.caller, r as never),
        () => s.createGrant(r.caller, { keyId: r.id, grantee: r.grantee, expiresAt: r.expiresAt } as never),
        () => s.revokeGrant(r.caller, { grantId: r.id } as never),
        () => s.addConsumer(r.caller, r as never),
        () => s.removeConsumer(r.caller, r as never),
        () => s.listConsumers(r.caller, r as never),
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
