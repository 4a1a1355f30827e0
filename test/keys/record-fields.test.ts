/**
 * The key model's later fields (secret type, expiration, update time, 192/512-bit lengths) are
 * authenticated like every other (record-codec.ts): an edit, removal or addition of one on disk is
 * DATA_LOSS, never a changed answer. They did not need a new record format: a plain symmetric key
 * is stored exactly as before, field for field, so records written before them read unchanged.
 */
import fc from "fast-check";
import test from "ava";
import { isLockboxError } from "../../src/errors.js";
import type { KeyService } from "../../src/keys/key-service.js";
import { admin, openFixture, type Fixture } from "./key-service-fixture.js";

const HOUR = 3600_000;

/** The stored JSON of key `id` and its "records" key. */
async function storedRecord(fx: Fixture, id: string): Promise<[string, Record<string, unknown>]> {
  const rows = await fx.handle.store.sublevel("records").iterator().all();
  const [key, value] = rows.find(([k]) => k.endsWith(`/${id}`))!;
  return [key, JSON.parse(Buffer.from(value).toString()) as Record<string, unknown>];
}

async function put(fx: Fixture, key: string, value: Buffer): Promise<void> {
  await fx.handle.store.write([{ type: "put", sublevel: "records", key, value }]);
}

test("a plain symmetric key is stored with exactly the fields of records written before secret types and expiration", async (t) => {
  const fx = await openFixture(t);
  const k = await fx.handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  const [, stored] = await storedRecord(fx, k.id);
  t.deepEqual(Object.keys(stored).sort(), [
    "algorithm",
    "bitLength",
    "createdAtMs",
    "id",
    "mac",
    "name",
    "parentId",
    "project",
    "scope",
    "state",
    "v",
    "wrappedMaterial",
  ]);
  t.is(stored.v, 2);
});

const EDITS: [string, (r: Record<string, unknown>) => void][] = [
  ["secretType changed", (r) => (r.secretType = r.secretType === "opaque" ? "passphrase" : "opaque")],
  [
    "secretType removed or added",
    (r) => (r.secretType === undefined ? (r.secretType = "opaque") : delete r.secretType),
  ],
  ["secretType spelled out as symmetric", (r) => (r.secretType = "symmetric")],
  ["expiresAtMs moved", (r) => (r.expiresAtMs = Number(r.expiresAtMs ?? 0) + 365 * 24 * HOUR)],
  [
    "expiresAtMs removed or added",
    (r) => (r.expiresAtMs === undefined ? (r.expiresAtMs = 1) : delete r.expiresAtMs),
  ],
  ["updatedAtMs added", (r) => (r.updatedAtMs = Number(r.createdAtMs) + 1)],
  ["updatedAtMs equal to the implied time", (r) => (r.updatedAtMs = r.destroyedAtMs ?? r.createdAtMs)],
  ["bitLength 512 -> 256", (r) => (r.bitLength = r.bitLength === 512 ? 256 : 512)],
  ["algorithm cleared or set", (r) => (r.algorithm = r.algorithm === "" ? "AES" : "")],
];

async function victims(s: KeyService, nowMs: number) {
  return [
    await s.createKey(admin, { project: "p", scope: "s", name: "xts", algorithm: "AES", bitLength: 512 }),
    await s.importKey(admin, {
      project: "p",
      scope: "s",
      name: "vtpm",
      secretType: "passphrase",
      algorithm: "",
      material: new Uint8Array(Buffer.from("a passphrase")),
      expiresAt: new Date(nowMs + HOUR),
    }),
    await s.importKey(admin, {
      project: "p",
      scope: "s",
      name: "blob",
      secretType: "opaque",
      algorithm: "AES",
      bitLength: 256,
      material: new Uint8Array(9),
    }),
  ];
}

test("editing, removing or adding a secret type, expiration, update time, bit length or algorithm on disk is DATA_LOSS on get and metadata", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const keys = await victims(s, fx.clock.nowMs);
  // A tombstone's update time is bound too.
  keys.push(
    await s.deleteKey(
      admin,
      await s.createKey(admin, { project: "p", scope: "s", name: "gone", algorithm: "AES", bitLength: 192 }),
    ),
  );
  for (const key of keys) {
    const [recordKey, original] = await storedRecord(fx, key.id);
    for (const [what, edit] of EDITS) {
      const copy = structuredClone(original);
      edit(copy);
      await put(fx, recordKey, Buffer.from(JSON.stringify(copy)));
      for (const call of [() => s.getKeyMetadata(admin, key), () => s.getKey(admin, key)]) {
        const e = await t.throwsAsync(call(), undefined, `${key.name}: ${what}`);
        t.true(isLockboxError(e, "DATA_LOSS"), `${key.name}: ${what}: ${String(e)}`);
      }
    }
    await put(fx, recordKey, Buffer.from(JSON.stringify(original)));
    t.deepEqual(await s.getKeyMetadata(admin, key), key, "the untouched record reads again");
  }
});

test("property: any single flipped byte in a stored opaque, passphrase or 512-bit record is DATA_LOSS or the exact original answer", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const keys = await victims(s, fx.clock.nowMs);
  const originals = await Promise.all(keys.map((k) => storedRecord(fx, k.id)));
  const answers = await Promise.all(keys.map((k) => s.getKey(admin, k)));
  await fc.assert(
    fc.asyncProperty(
      fc.nat(keys.length - 1),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      async (i, at, xor) => {
        const [recordKey, record] = originals[i]!;
        const bytes = Buffer.from(JSON.stringify(record));
        bytes[at % bytes.length] ^= xor;
        await put(fx, recordKey, bytes);
        try {
          const got = await s.getKey(admin, keys[i]!);
          t.deepEqual(got.key, answers[i]!.key);
          t.deepEqual(got.material, answers[i]!.material);
        } catch (e) {
          if (!isLockboxError(e, "DATA_LOSS")) throw e;
        } finally {
          await put(fx, recordKey, Buffer.from(JSON.stringify(record)));
        }
      },
    ),
    { numRuns: 300 },
  );
  t.pass();
});
