/**
 * Consumers on keys (issue 11 item 4; Barbican's secret consumers): which resources use a key.
 * Add and remove are idempotent, a key holds a bounded number, and a key with consumers is
 * deleted only with force. Real LevelDB through the peer's composition root.
 */
import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { CONSUMERS_PER_KEY_MAX } from "../../src/keys/key-service.js";
import { admin, dumpDb, openFixture, serviceOf } from "./key-service-fixture.js";

const keyReq = { project: "tenant-a", scope: "vol-1", name: "n", algorithm: "AES", bitLength: 256 } as const;
const cinder = { service: "cinder", resourceType: "volume", resourceId: "6e0d3d7c-vol" };
const glance = { service: "glance", resourceType: "image", resourceId: "img/with/slashes ünïcode" };

test("consumers are added, listed sorted, and removed; repeating either changes nothing", async (t) => {
  const fx = await openFixture(t);
  const { clock } = fx;
  const s = fx.handle.service;
  const key = await s.createKey(admin, keyReq);
  const first = await s.addConsumer(admin, { keyId: key.id, ...glance });
  t.true(first.changed);
  t.deepEqual(first.key, key);
  t.deepEqual(first.consumers, [{ ...glance, createdAt: new Date(clock.nowMs) }]);
  clock.advance(1000);
  const second = await s.addConsumer(admin, { keyId: key.id, ...cinder });
  t.deepEqual(
    second.consumers.map((c) => c.service),
    ["cinder", "glance"],
  );
  const again = await s.addConsumer(admin, { keyId: key.id, ...cinder });
  t.false(again.changed);
  t.deepEqual(again.consumers, second.consumers, "the first add's time is kept");
  t.deepEqual((await s.listConsumers(admin, { keyId: key.id })).consumers, second.consumers);
  // Fields are compared whole: a consumer differing in one field is another consumer.
  const other = await s.addConsumer(admin, { keyId: key.id, ...cinder, resourceId: "6e0d3d7c-vo" });
  t.is(other.consumers.length, 3);
  const removed = await s.removeConsumer(admin, { keyId: key.id, ...cinder });
  t.true(removed.changed);
  t.is(removed.consumers.length, 2);
  const missing = await s.removeConsumer(admin, { keyId: key.id, ...cinder });
  t.false(missing.changed);
  t.deepEqual(missing.consumers, removed.consumers);
  // They survive a restart.
  const reopened = await fx.reopen();
  t.deepEqual((await reopened.service.listConsumers(admin, { keyId: key.id })).consumers, removed.consumers);
});

test("a key with consumers is deleted only with force, which removes its consumers too", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const key = await s.createKey(admin, keyReq);
  await s.addConsumer(admin, { keyId: key.id, ...cinder });
  await s.addConsumer(admin, { keyId: key.id, ...glance });
  const before = await dumpDb(fx.handle.store);
  const refused = await t.throwsAsync<LockboxError>(s.deleteKey(admin, { id: key.id }));
  t.true(isLockboxError(refused, "FAILED_PRECONDITION"));
  t.regex(refused!.message, /has consumers; remove them, or delete with force/);
  t.deepEqual(await dumpDb(fx.handle.store), before, "a refused delete changes nothing");
  t.is((await s.getKey(admin, key)).material.length, 32);
  const tombstone = await s.deleteKey(admin, { id: key.id, force: true });
  t.is(tombstone.state, "destroyed");
  t.deepEqual((await s.listConsumers(admin, { keyId: key.id })).consumers, []);
  const rows = await fx.handle.store.sublevel("meta").keys({ gte: "consumer/", lt: "consumer0" }).all();
  t.deepEqual(rows, [], "no consumer entry is left behind");
  // Consumers of a destroyed key cannot be added or removed.
  const add = await t.throwsAsync(s.addConsumer(admin, { keyId: key.id, ...cinder }));
  t.true(isLockboxError(add, "FAILED_PRECONDITION"));
  const rm = await t.throwsAsync(s.removeConsumer(admin, { keyId: key.id, ...cinder }));
  t.true(isLockboxError(rm, "FAILED_PRECONDITION"));
  // A key without consumers needs no force; removing the last consumer lifts the protection.
  const other = await s.createKey(admin, keyReq);
  await s.addConsumer(admin, { keyId: other.id, ...cinder });
  await s.removeConsumer(admin, { keyId: other.id, ...cinder });
  t.is((await s.deleteKey(admin, { id: other.id })).state, "destroyed");
});

test(`a key holds at most its consumer cap (${CONSUMERS_PER_KEY_MAX} by default): one more is RESOURCE_EXHAUSTED and writes nothing`, async (t) => {
  const fx = await openFixture(t, { consumersPerKeyMax: 3 });
  const s = fx.handle.service;
  const key = await s.createKey(admin, keyReq);
  for (let i = 0; i < 3; i++) await s.addConsumer(admin, { keyId: key.id, ...cinder, resourceId: `v${i}` });
  const before = await dumpDb(fx.handle.store);
  const e = await t.throwsAsync<LockboxError>(
    s.addConsumer(admin, { keyId: key.id, ...cinder, resourceId: "v3" }),
  );
  t.true(isLockboxError(e, "RESOURCE_EXHAUSTED"));
  t.deepEqual(await dumpDb(fx.handle.store), before);
  // Re-adding one that is there is still fine at the cap; removing one makes room.
  t.false((await s.addConsumer(admin, { keyId: key.id, ...cinder, resourceId: "v0" })).changed);
  await s.removeConsumer(admin, { keyId: key.id, ...cinder, resourceId: "v0" });
  t.true((await s.addConsumer(admin, { keyId: key.id, ...cinder, resourceId: "v3" })).changed);
  // The cap is per key.
  const other = await s.createKey(admin, keyReq);
  t.true((await s.addConsumer(admin, { keyId: other.id, ...cinder })).changed);
});

test("consumers of another project's key are NOT_FOUND exactly like a missing key; bad fields are INVALID_ARGUMENT", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const key = await s.createKey(admin, keyReq);
  const outsider = serviceOf("nova-b", "tenant-b");
  const missingId = "0b6f2d1e-8a3c-8e5f-9d7b-1c2a3e4f5a6b";
  const before = await dumpDb(fx.handle.store);
  for (const call of [
    (id: string) => s.addConsumer(outsider, { keyId: id, ...cinder }),
    (id: string) => s.removeConsumer(outsider, { keyId: id, ...cinder }),
    (id: string) => s.listConsumers(outsider, { keyId: id }),
  ]) {
    const foreign = await t.throwsAsync<LockboxError>(call(key.id));
    const missing = await t.throwsAsync<LockboxError>(call(missingId));
    t.true(isLockboxError(foreign, "NOT_FOUND"));
    t.is(foreign!.message, `key ${key.id} not found`);
    t.is(missing!.message, `key ${missingId} not found`);
  }
  const cases: [Record<string, unknown>, string][] = [
    [{ keyId: "nope", ...cinder }, "key_id"],
    [{ keyId: key.id, ...cinder, service: "" }, "service"],
    [{ keyId: key.id, ...cinder, resourceType: "a\nb" }, "resource_type"],
    [{ keyId: key.id, ...cinder, resourceId: "x".repeat(256) }, "resource_id"],
    [{ keyId: key.id, ...cinder, resourceId: 7 }, "resource_id"],
  ];
  for (const [req, field] of cases) {
    const e = await t.throwsAsync<LockboxError>(s.addConsumer(admin, req as never));
    t.true(isLockboxError(e, "INVALID_ARGUMENT"));
    t.is(e!.field, field);
  }
  t.deepEqual(await dumpDb(fx.handle.store), before);
  // 255 characters (astral ones too) is the limit, not 255 UTF-16 units.
  const long = await s.addConsumer(admin, { keyId: key.id, ...cinder, resourceId: "😀".repeat(255) });
  t.true(long.changed);
});

test("a stored consumer edited on disk, or copied onto another key, is DATA_LOSS, never a changed consumer", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const a = await s.createKey(admin, keyReq);
  const b = await s.createKey(admin, keyReq);
  await s.addConsumer(admin, { keyId: a.id, ...cinder });
  const meta = fx.handle.store.sublevel("meta");
  const [[entryKey, value]] = await meta
    .iterator({ gte: `consumer/${a.id}/`, lt: `consumer/${a.id}0` })
    .all();
  const stored = JSON.parse(Buffer.from(value!).toString()) as Record<string, unknown>;
  const edits: [string, (r: Record<string, unknown>) => void][] = [
    ["resourceId", (r) => (r.resourceId = "another-volume")],
    ["createdAtMs", (r) => (r.createdAtMs = Number(r.createdAtMs) + 1)],
    ["keyId", (r) => (r.keyId = b.id)],
  ];
  for (const [what, edit] of edits) {
    const copy = structuredClone(stored);
    edit(copy);
    await fx.handle.store.write([
      { type: "put", sublevel: "meta", key: entryKey!, value: Buffer.from(JSON.stringify(copy)) },
    ]);
    const e = await t.throwsAsync(s.listConsumers(admin, { keyId: a.id }), undefined, what);
    t.true(isLockboxError(e, "DATA_LOSS"), what);
  }
  // The authentic entry copied under key b's prefix (same digest name) is refused as well.
  await fx.handle.store.write([
    { type: "put", sublevel: "meta", key: entryKey!, value },
    { type: "put", sublevel: "meta", key: entryKey!.replace(a.id, b.id), value },
  ]);
  t.is((await s.listConsumers(admin, { keyId: a.id })).consumers.length, 1);
  t.true(isLockboxError(await t.throwsAsync(s.listConsumers(admin, { keyId: b.id })), "DATA_LOSS"));
  t.true(isLockboxError(await t.throwsAsync(s.addConsumer(admin, { keyId: b.id, ...glance })), "DATA_LOSS"));
});
