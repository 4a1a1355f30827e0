import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { admin, openFixture, serviceOf } from "./key-service-fixture.js";

const HOUR_MS = 3600_000;
const owner = serviceOf("image-store", "tenant-a");
const grantee = serviceOf("compute-7", "tenant-z");

async function setup(t: import("ava").ExecutionContext) {
  const fx = await openFixture(t);
  const key = await fx.handle.service.createKey(owner, {
    project: "tenant-a",
    scope: "img",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  const material = (await fx.handle.service.getKey(owner, key)).material;
  return { fx, key, material };
}

const notFound = async (t: import("ava").ExecutionContext, p: Promise<unknown>) => {
  const e = await t.throwsAsync<LockboxError>(p);
  t.true(isLockboxError(e, "NOT_FOUND"), e?.message);
};

test("a grantee can GetKey the granted key until the deadline and not after", async (t) => {
  const { fx, key, material } = await setup(t);
  const service = fx.handle.service;
  await notFound(t, service.getKey(grantee, key)); // no grant yet
  const expiresAt = new Date(fx.clock.nowMs + 2 * HOUR_MS);
  const grant = await service.createGrant(owner, { keyId: key.id, grantee: grantee.identity, expiresAt });
  t.like(grant, { keyId: key.id, grantee: "compute-7", grantedBy: "image-store" });
  t.is(grant.expiresAt.getTime(), expiresAt.getTime());
  t.is(grant.revokedAt, undefined);

  t.deepEqual((await service.getKey(grantee, key)).material, material);
  fx.clock.advance(2 * HOUR_MS - 1);
  t.deepEqual((await service.getKey(grantee, key)).material, material);
  fx.clock.advance(1); // exactly at the deadline: expired
  await notFound(t, service.getKey(grantee, key));
  // The owner is unaffected.
  t.deepEqual((await service.getKey(owner, key)).material, material);
});

test("a grant covers GetKey only, only for that identity and that key", async (t) => {
  const { fx, key } = await setup(t);
  const service = fx.handle.service;
  const other = await service.createKey(owner, {
    project: "tenant-a",
    scope: "img",
    name: "m",
    algorithm: "AES",
    bitLength: 256,
  });
  await service.createGrant(owner, {
    keyId: key.id,
    grantee: grantee.identity,
    expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
  });
  await notFound(t, service.getKey(grantee, other));
  await notFound(t, service.getKey(serviceOf("compute-8", "tenant-z"), key));
  await notFound(t, service.getKeyMetadata(grantee, key));
  await notFound(t, service.deleteKey(grantee, key));
  await notFound(t, service.cloneKey(grantee, key));
  await notFound(t, service.rekeyClone(grantee, key));
  await notFound(
    t,
    service.createGrant(grantee, {
      keyId: key.id,
      grantee: "x",
      expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
    }),
  );
  t.is((await service.getKeyMetadata(owner, key)).state, "active");
});

test("a revoked grant is refused exactly like no grant; revoking twice returns the same grant", async (t) => {
  const { fx, key, material } = await setup(t);
  const service = fx.handle.service;
  const grant = await service.createGrant(owner, {
    keyId: key.id,
    grantee: grantee.identity,
    expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
  });
  t.deepEqual((await service.getKey(grantee, key)).material, material);
  fx.clock.advance(1000);
  const revoked = await service.revokeGrant(owner, { grantId: grant.id });
  t.is(revoked.revokedAt?.getTime(), fx.clock.nowMs);
  await notFound(t, service.getKey(grantee, key));
  fx.clock.advance(1000);
  t.deepEqual(await service.revokeGrant(admin, { grantId: grant.id }), revoked);
  // Revocation survives a restart.
  const reopened = await fx.reopen();
  await notFound(t, reopened.service.getKey(grantee, key));
});

test("only callers who may see the key may revoke its grants; unknown grants are NOT_FOUND", async (t) => {
  const { fx, key } = await setup(t);
  const service = fx.handle.service;
  const grant = await service.createGrant(owner, {
    keyId: key.id,
    grantee: grantee.identity,
    expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
  });
  await notFound(t, service.revokeGrant(grantee, { grantId: grant.id }));
  await notFound(t, service.revokeGrant(owner, { grantId: "11111111-2222-4333-8444-555555555555" }));
  t.is((await service.getKey(grantee, key)).key.id, key.id);
});

test("a grantee of a destroyed key gets FAILED_PRECONDITION; granting a destroyed key is refused", async (t) => {
  const { fx, key } = await setup(t);
  const service = fx.handle.service;
  await service.createGrant(owner, {
    keyId: key.id,
    grantee: grantee.identity,
    expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
  });
  await service.deleteKey(owner, key);
  t.true(isLockboxError(await t.throwsAsync(service.getKey(grantee, key)), "FAILED_PRECONDITION"));
  t.true(
    isLockboxError(
      await t.throwsAsync(
        service.createGrant(owner, {
          keyId: key.id,
          grantee: "x",
          expiresAt: new Date(fx.clock.nowMs + HOUR_MS),
        }),
      ),
      "FAILED_PRECONDITION",
    ),
  );
});
