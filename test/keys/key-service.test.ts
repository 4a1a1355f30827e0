import { randomBytes } from "node:crypto";
import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { admin, openFixture, serviceOf } from "./key-service-fixture.js";

/** RFC 9562 version 8, variant 0b10. */
const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test("createKey returns metadata; getKey returns material of the requested length", async (t) => {
  const { handle, clock } = await openFixture(t);
  for (const bitLength of [128, 192, 256, 512]) {
    const meta = await handle.service.createKey(admin, {
      project: "tenant-a",
      scope: "vol-1",
      name: "volume key",
      algorithm: "AES",
      bitLength,
    });
    t.regex(meta.id, UUID_V8);
    t.like(meta, { project: "tenant-a", scope: "vol-1", name: "volume key", algorithm: "AES", bitLength });
    t.is(meta.state, "active");
    t.is(meta.parentId, "");
    t.is(meta.destroyedAt, undefined);
    t.is(meta.createdAt.getTime(), clock.nowMs);
    t.is(meta.updatedAt.getTime(), clock.nowMs);
    t.is(meta.secretType, "symmetric");
    t.is(meta.expiresAt, undefined);
    const got = await handle.service.getKey(admin, { id: meta.id });
    t.deepEqual(got.key, meta);
    t.is(got.material.length, bitLength / 8);
    t.deepEqual(await handle.service.getKeyMetadata(admin, { id: meta.id }), meta);
  }
  const a = await handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  const b = await handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  t.not(a.id, b.id);
  t.notDeepEqual(
    (await handle.service.getKey(admin, a)).material,
    (await handle.service.getKey(admin, b)).material,
  );
});

test("importKey stores the caller's material exactly and derives the bit length", async (t) => {
  const { handle } = await openFixture(t);
  for (const size of [16, 24, 32, 64]) {
    const material = new Uint8Array(randomBytes(size));
    const meta = await handle.service.importKey(admin, {
      project: "tenant-a",
      scope: "img",
      name: "imported",
      algorithm: "AES",
      material,
    });
    t.is(meta.bitLength as number, size * 8);
    t.deepEqual((await handle.service.getKey(admin, { id: meta.id })).material, material);
  }
});

test("keys, their material and the live count survive a restart", async (t) => {
  const fx = await openFixture(t);
  const meta = await fx.handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  const material = (await fx.handle.service.getKey(admin, meta)).material;
  const gone = await fx.handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 128,
  });
  await fx.handle.service.deleteKey(admin, gone);
  t.is(fx.handle.service.stats().keyCount, 1);
  const reopened = await fx.reopen();
  t.is(reopened.service.stats().keyCount, 1);
  t.deepEqual((await reopened.service.getKey(admin, meta)).material, material);
  t.is((await reopened.service.getKeyMetadata(admin, gone)).state, "destroyed");
});

test("deleteKey leaves a tombstone: metadata stays, material is gone, a second delete changes nothing", async (t) => {
  const { handle, clock } = await openFixture(t);
  const meta = await handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  clock.advance(5000);
  const tomb = await handle.service.deleteKey(admin, { id: meta.id });
  t.is(tomb.state, "destroyed");
  t.is(tomb.destroyedAt?.getTime(), clock.nowMs);
  t.like(tomb, { id: meta.id, project: "p", scope: "s", name: "n", bitLength: 256 });
  t.deepEqual(await handle.service.getKeyMetadata(admin, meta), tomb);
  const e = await t.throwsAsync<LockboxError>(handle.service.getKey(admin, meta));
  t.true(isLockboxError(e, "FAILED_PRECONDITION"));
  t.regex(e!.message, /destroyed/);
  // The stored record holds no wrapped material any more.
  const stored = (await handle.store.sublevel("records").values().all()).map((v) =>
    JSON.parse(Buffer.from(v).toString()),
  );
  t.is(stored.length, 1);
  t.is(stored[0].wrappedMaterial, undefined);
  clock.advance(5000);
  t.deepEqual(await handle.service.deleteKey(admin, meta), tomb);
  t.is(handle.service.stats().keyCount, 0);
});

test("cloneKey keeps the material under a new id with the parent recorded; rekeyClone gets fresh material", async (t) => {
  const { handle } = await openFixture(t);
  const parent = await handle.service.createKey(admin, {
    project: "p",
    scope: "vol-9",
    name: "vol",
    algorithm: "AES",
    bitLength: 256,
  });
  const parentMaterial = (await handle.service.getKey(admin, parent)).material;

  const clone = await handle.service.cloneKey(admin, { id: parent.id });
  t.not(clone.id, parent.id);
  t.like(clone, {
    project: "p",
    scope: "vol-9",
    name: "vol",
    bitLength: 256,
    parentId: parent.id,
    state: "active",
  });
  t.deepEqual((await handle.service.getKey(admin, clone)).material, parentMaterial);

  const named = await handle.service.cloneKey(admin, { id: parent.id, name: "snap-1" });
  t.is(named.name, "snap-1");

  const rekeyed = await handle.service.rekeyClone(admin, { id: parent.id, name: "clone-vol" });
  t.like(rekeyed, { project: "p", scope: "vol-9", name: "clone-vol", bitLength: 256, parentId: parent.id });
  const rekeyedMaterial = (await handle.service.getKey(admin, rekeyed)).material;
  t.is(rekeyedMaterial.length, 32);
  t.notDeepEqual(rekeyedMaterial, parentMaterial);
  t.is(handle.service.stats().keyCount, 4);
});

test("clone and rekey of a destroyed key are FAILED_PRECONDITION and create nothing", async (t) => {
  const { handle } = await openFixture(t);
  const parent = await handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 128,
  });
  await handle.service.deleteKey(admin, parent);
  t.true(
    isLockboxError(
      await t.throwsAsync(handle.service.cloneKey(admin, { id: parent.id })),
      "FAILED_PRECONDITION",
    ),
  );
  t.true(
    isLockboxError(
      await t.throwsAsync(handle.service.rekeyClone(admin, { id: parent.id })),
      "FAILED_PRECONDITION",
    ),
  );
  t.is((await handle.service.listKeys(admin, { project: "p" })).keys.length, 1);
});

test("another project's key is NOT_FOUND exactly like a missing key, for every by-id operation", async (t) => {
  const { handle } = await openFixture(t);
  const owner = serviceOf("volume-host-1", "tenant-a");
  const stranger = serviceOf("volume-host-2", "tenant-b");
  const meta = await handle.service.createKey(owner, {
    project: "tenant-a",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  const missing = "00000000-0000-4000-8000-000000000000";
  const ops = [
    (id: string) => handle.service.getKey(stranger, { id }),
    (id: string) => handle.service.getKeyMetadata(stranger, { id }),
    (id: string) => handle.service.deleteKey(stranger, { id }),
    (id: string) => handle.service.cloneKey(stranger, { id }),
    (id: string) => handle.service.rekeyClone(stranger, { id }),
    (id: string) =>
      handle.service.createGrant(stranger, {
        keyId: id,
        grantee: "x",
        expiresAt: new Date(Date.UTC(2026, 0, 2)),
      }),
  ];
  for (const op of ops) {
    const hidden = await t.throwsAsync<LockboxError>(op(meta.id));
    const absent = await t.throwsAsync<LockboxError>(op(missing));
    t.is(hidden!.code, "NOT_FOUND");
    t.is(absent!.code, "NOT_FOUND");
    t.is(hidden!.message.replace(meta.id, "<id>"), absent!.message.replace(missing, "<id>"));
  }
  // The owner's key is untouched, and the owner and an admin still see it.
  t.is((await handle.service.getKeyMetadata(owner, meta)).state, "active");
  t.is((await handle.service.getKey(admin, meta)).key.id, meta.id);
  t.is(handle.service.stats().keyCount, 1);
});

test("a service caller may not create, import or list in a project it does not hold (PERMISSION_DENIED)", async (t) => {
  const { handle } = await openFixture(t);
  const caller = serviceOf("object-server", "tenant-a");
  const denied = (p: Promise<unknown>) =>
    t.throwsAsync(p).then((e) => t.true(isLockboxError(e, "PERMISSION_DENIED")));
  await denied(
    handle.service.createKey(caller, {
      project: "tenant-b",
      scope: "s",
      name: "n",
      algorithm: "AES",
      bitLength: 256,
    }),
  );
  await denied(
    handle.service.importKey(caller, {
      project: "tenant-b",
      scope: "s",
      name: "n",
      algorithm: "AES",
      material: new Uint8Array(16),
    }),
  );
  await denied(handle.service.listKeys(caller, { project: "tenant-b" }));
  t.is(handle.service.stats().keyCount, 0);
});

test("sealing the barrier makes every key operation fail FAILED_PRECONDITION sealed, despite cached KEKs", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  const req = { project: "p", scope: "s", name: "n", algorithm: "AES", bitLength: 256 } as const;
  const meta = await s.createKey(admin, req);
  t.is((await s.getKey(admin, meta)).material.length, 32); // the project KEK is now cached
  handle.barrier.seal();
  const inAnHour = new Date(Date.UTC(2026, 0, 1, 1));
  const calls: Promise<unknown>[] = [
    s.createKey(admin, req),
    s.importKey(admin, { ...req, material: new Uint8Array(32) }),
    s.getKey(admin, meta),
    s.getKeyMetadata(admin, meta),
    s.listKeys(admin, { project: "p" }),
    s.deleteKey(admin, meta),
    s.cloneKey(admin, meta),
    s.rekeyClone(admin, meta),
    s.createGrant(admin, { keyId: meta.id, grantee: "g", expiresAt: inAnHour }),
  ];
  for (const call of calls) {
    const e = await t.throwsAsync<LockboxError>(call);
    t.true(isLockboxError(e, "FAILED_PRECONDITION"));
    t.is(e!.message, "sealed");
  }
  t.is(s.stats().keyCount, 1);
});

test("a different master key cannot open an existing store", async (t) => {
  const fx = await openFixture(t);
  await fx.handle.service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "n",
    algorithm: "AES",
    bitLength: 256,
  });
  await fx.handle.close();
  const { DevelopmentFileProtector } = await import("../../src/crypto/development-file-protector.js");
  const other = await DevelopmentFileProtector.create(`${fx.dir}/other.key`, { log: () => {} });
  t.true(isLockboxError(await t.throwsAsync(fx.open(other)), "FAILED_PRECONDITION"));
  // The refused open released the store: the right key still opens it.
  const again = await fx.open();
  t.is(again.service.stats().keyCount, 1);
  await again.close();
});

test("concurrent creates in a new project share one project KEK and all succeed", async (t) => {
  const { handle } = await openFixture(t);
  const metas = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      handle.service.createKey(admin, {
        project: "fresh",
        scope: `s${i % 3}`,
        name: `k${i}`,
        algorithm: "AES",
        bitLength: 256,
      }),
    ),
  );
  const keks = await handle.store.sublevel("meta").keys({ gte: "kek/", lt: "kek0" }).all();
  t.deepEqual(keks, ["kek/fresh"]);
  await handle.service.close(); // force the KEK to be read back from the store
  for (const m of metas) t.is((await handle.service.getKey(admin, m)).material.length, 32);
});

test("group commit: N concurrent creates use fewer synced batches than N and every create is durable", async (t) => {
  const fx = await openFixture(t);
  const service = fx.handle.service;
  await service.createKey(admin, {
    project: "p",
    scope: "s",
    name: "warm",
    algorithm: "AES",
    bitLength: 256,
  });
  const before = fx.handle.store.commitMetrics();
  const n = 50;
  const metas = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      service.createKey(admin, { project: "p", scope: "s", name: `k${i}`, algorithm: "AES", bitLength: 256 }),
    ),
  );
  const after = fx.handle.store.commitMetrics();
  t.is(after.writes - before.writes, n);
  t.true(after.batches - before.batches < n, `batches ${after.batches - before.batches} for ${n} creates`);
  const materials = await Promise.all(metas.map(async (m) => (await service.getKey(admin, m)).material));
  const reopened = await fx.reopen();
  for (let i = 0; i < n; i++)
    t.deepEqual((await reopened.service.getKey(admin, metas[i]!)).material, materials[i]);
});
