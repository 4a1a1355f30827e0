/**
 * Key expiration (issue 11 item 4). Barbican filters expired secrets out of every read, so a
 * client sees 404 for one; lockbox does the same: past its expiration a key is NOT_FOUND to every
 * call by id except DeleteKey (which still destroys it, so its owner can clean up), and ListKeys
 * leaves it out. Time is the fixture's manual clock.
 */
import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { admin, dumpDb, openFixture } from "./key-service-fixture.js";

const HOUR = 3600_000;
const req = { project: "tenant-a", scope: "vol-1", name: "n", algorithm: "AES", bitLength: 256 } as const;

test("an expired key is NOT_FOUND to get, metadata, clone, rekey, grant and consumers, and left out of listings; delete still destroys it", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const expiresAt = new Date(fx.clock.nowMs + HOUR);
  const key = await s.createKey(admin, { ...req, expiresAt });
  const forever = await s.createKey(admin, req);
  t.deepEqual(key.expiresAt, expiresAt);
  t.is(forever.expiresAt, undefined);
  // Until then it is served like any key, and its clones inherit the expiration.
  const material = (await s.getKey(admin, key)).material;
  const clone = await s.cloneKey(admin, key);
  t.deepEqual(clone.expiresAt, expiresAt);
  t.deepEqual((await s.getKey(admin, clone)).material, material);

  fx.clock.advance(HOUR); // expiration is inclusive: at expiresAt the key is gone
  const calls: [string, () => Promise<unknown>][] = [
    ["getKey", () => s.getKey(admin, key)],
    ["getKeyMetadata", () => s.getKeyMetadata(admin, key)],
    ["cloneKey", () => s.cloneKey(admin, key)],
    ["rekeyClone", () => s.rekeyClone(admin, key)],
    [
      "createGrant",
      () => s.createGrant(admin, { keyId: key.id, grantee: "g", expiresAt: new Date(fx.clock.nowMs + HOUR) }),
    ],
    [
      "addConsumer",
      () =>
        s.addConsumer(admin, { keyId: key.id, service: "cinder", resourceType: "volume", resourceId: "v" }),
    ],
    ["listConsumers", () => s.listConsumers(admin, { keyId: key.id })],
    ["getKey of its clone", () => s.getKey(admin, clone)],
  ];
  const before = await dumpDb(fx.handle.store);
  for (const [what, call] of calls) {
    const e = await t.throwsAsync<LockboxError>(call(), undefined, what);
    t.true(isLockboxError(e, "NOT_FOUND"), what);
    t.regex(e!.message, /expired at 2026-01-01T01:00:00.000Z/, what);
  }
  t.deepEqual(await dumpDb(fx.handle.store), before, "refused calls change nothing");
  t.deepEqual(
    (await s.listKeys(admin, { project: "tenant-a" })).keys.map((k) => k.id),
    [forever.id],
  );
  const tombstone = await s.deleteKey(admin, key);
  t.like(tombstone, { state: "destroyed", id: key.id });
  t.deepEqual(tombstone.updatedAt, new Date(fx.clock.nowMs));
  t.deepEqual(tombstone.expiresAt, expiresAt);
  t.is(s.stats().keyCount, 2, "the live count drops for the destroyed key (the expired clone stays stored)");
});

test("an expiration in the past, at now, unparseable or beyond year 9999 is INVALID_ARGUMENT expires_at", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const before = await dumpDb(fx.handle.store);
  for (const expiresAt of [
    new Date(fx.clock.nowMs - 1),
    new Date(fx.clock.nowMs),
    new Date(Number.NaN),
    new Date(253402300800000),
    "2027-01-01" as never,
  ]) {
    for (const call of [
      () => s.createKey(admin, { ...req, expiresAt }),
      () => s.importKey(admin, { ...req, material: new Uint8Array(32), expiresAt }),
    ]) {
      const e = await t.throwsAsync<LockboxError>(call());
      t.true(isLockboxError(e, "INVALID_ARGUMENT"));
      t.is(e!.field, "expires_at");
    }
  }
  t.deepEqual(await dumpDb(fx.handle.store), before);
  const latest = await s.createKey(admin, { ...req, expiresAt: new Date(253402300799999) });
  t.is(latest.expiresAt!.toISOString(), "9999-12-31T23:59:59.999Z");
});

test("created, updated and expiration times survive a restart unchanged", async (t) => {
  const fx = await openFixture(t);
  const expiresAt = new Date(fx.clock.nowMs + 30 * 24 * HOUR);
  const key = await fx.handle.service.createKey(admin, { ...req, expiresAt });
  fx.clock.advance(5000);
  const gone = await fx.handle.service.deleteKey(admin, await fx.handle.service.createKey(admin, req));
  t.is(gone.updatedAt.getTime() - gone.createdAt.getTime(), 0, "created and deleted at the same instant");
  const reopened = await fx.reopen();
  t.deepEqual(await reopened.service.getKeyMetadata(admin, key), key);
  t.deepEqual(await reopened.service.getKeyMetadata(admin, gone), gone);
});
