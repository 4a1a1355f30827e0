/**
 * The per-key grant cap counts live grants only: revoked and expired grants do not count and are
 * reclaimed (deleted) by the next CreateGrant on the key, so a key's grant records stay bounded.
 */
import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { admin, openFixture } from "./key-service-fixture.js";

const CAP = 5;
const HOUR_MS = 3600_000;
const req = { project: "p", scope: "s", name: "n", algorithm: "AES", bitLength: 256 } as const;

async function setup(t: import("ava").ExecutionContext) {
  const fx = await openFixture(t, { grantsPerKeyMax: CAP });
  const key = await fx.handle.service.createKey(admin, req);
  const grantRows = async (): Promise<number> =>
    (
      await fx.handle.store
        .sublevel("meta")
        .keys({ gte: `grant/${key.id}/`, lt: `grant/${key.id}0` })
        .all()
    ).length;
  return { fx, key, service: fx.handle.service, grantRows };
}

const exhausted = async (t: import("ava").ExecutionContext, p: Promise<unknown>) => {
  const e = await t.throwsAsync<LockboxError>(p);
  t.true(isLockboxError(e, "RESOURCE_EXHAUSTED"), e?.message);
};

test("a key at the cap refuses one more grant; revoking them all makes room and reclaims them", async (t) => {
  const { fx, key, service, grantRows } = await setup(t);
  const expiresAt = new Date(fx.clock.nowMs + HOUR_MS);
  const grants = [];
  for (let i = 0; i < CAP; i++)
    grants.push(await service.createGrant(admin, { keyId: key.id, grantee: `h${i}`, expiresAt }));
  await exhausted(t, service.createGrant(admin, { keyId: key.id, grantee: "extra", expiresAt }));
  for (const g of grants) await service.revokeGrant(admin, { grantId: g.id });
  t.is(await grantRows(), CAP, "revoked grants stay until the next create reclaims them");
  // Revoking twice before that returns the same revoked grant.
  t.deepEqual(await service.revokeGrant(admin, { grantId: grants[0]!.id }), {
    ...grants[0]!,
    revokedAt: fx.clock.now(),
  });

  await service.createGrant(admin, { keyId: key.id, grantee: "fresh", expiresAt });
  t.is(await grantRows(), 1, "the revoked grants were reclaimed by the create");
  const e = await t.throwsAsync<LockboxError>(service.revokeGrant(admin, { grantId: grants[0]!.id }));
  t.true(isLockboxError(e, "NOT_FOUND"), e?.message);
});

test("expired grants do not count against the cap and are reclaimed", async (t) => {
  const { fx, key, service, grantRows } = await setup(t);
  for (let i = 0; i < CAP; i++) {
    await service.createGrant(admin, {
      keyId: key.id,
      grantee: `h${i}`,
      expiresAt: new Date(fx.clock.nowMs + 60_000),
    });
  }
  await exhausted(
    t,
    service.createGrant(admin, {
      keyId: key.id,
      grantee: "extra",
      expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
    }),
  );
  fx.clock.advance(60_000); // every grant has expired now
  for (let i = 0; i < CAP; i++) {
    await service.createGrant(admin, {
      keyId: key.id,
      grantee: `n${i}`,
      expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
    });
  }
  t.is(await grantRows(), CAP);
  await exhausted(
    t,
    service.createGrant(admin, {
      keyId: key.id,
      grantee: "extra",
      expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
    }),
  );
});
