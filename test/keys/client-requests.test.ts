/**
 * Client request ids (issue 10 item 4's idempotency): a create-like call retried with the same id
 * by the same identity returns the key the first attempt made, also after a restart; the same id
 * with another request is refused; ids are kept for a bounded time and count.
 */
import { randomBytes } from "node:crypto";
import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { CLIENT_REQUEST_TTL_MS } from "../../src/keys/key-service.js";
import { admin, dumpDb, openFixture, serviceOf } from "./key-service-fixture.js";

const req = { project: "tenant-a", scope: "vol-1", name: "n", algorithm: "AES", bitLength: 256 } as const;
const keyCount = async (s: {
  listKeys: (c: typeof admin, r: { project: string }) => Promise<{ keys: unknown[] }>;
}) => (await s.listKeys(admin, { project: "tenant-a" })).keys.length;

test("a create retried with the same client request id returns the first key, also after a restart, and makes no second key", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const first = await s.createKey(admin, { ...req, clientRequestId: "req-1" });
  const material = (await s.getKey(admin, first)).material;
  t.deepEqual(await s.createKey(admin, { ...req, clientRequestId: "req-1" }), first);
  const reopened = (await fx.reopen()).service;
  t.deepEqual(await reopened.createKey(admin, { ...req, clientRequestId: "req-1" }), first);
  t.deepEqual((await reopened.getKey(admin, first)).material, material);
  t.is(await keyCount(reopened), 1);
  // Without an id, or with another, every call is a new key.
  await reopened.createKey(admin, req);
  await reopened.createKey(admin, { ...req, clientRequestId: "req-2" });
  t.is(await keyCount(reopened), 3);
});

test("concurrent attempts with one client request id make one key", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const all = await Promise.all(
    Array.from({ length: 8 }, () => s.createKey(admin, { ...req, clientRequestId: "burst" })),
  );
  t.is(new Set(all.map((k) => k.id)).size, 1);
  t.is(await keyCount(s), 1);
});

test("the same client request id with a different request is INVALID_ARGUMENT client_request_id and writes nothing", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const made = await s.createKey(admin, { ...req, clientRequestId: "r" });
  const before = await dumpDb(fx.handle.store);
  const others: [string, () => Promise<unknown>][] = [
    ["another name", () => s.createKey(admin, { ...req, name: "m", clientRequestId: "r" })],
    ["another length", () => s.createKey(admin, { ...req, bitLength: 512, clientRequestId: "r" })],
    ["another scope", () => s.createKey(admin, { ...req, scope: "vol-2", clientRequestId: "r" })],
    ["another project", () => s.createKey(admin, { ...req, project: "tenant-b", clientRequestId: "r" })],
    [
      "an expiration",
      () => s.createKey(admin, { ...req, expiresAt: new Date(fx.clock.nowMs + 1000), clientRequestId: "r" }),
    ],
    ["an import", () => s.importKey(admin, { ...req, material: new Uint8Array(32), clientRequestId: "r" })],
    ["a clone", () => s.cloneKey(admin, { id: made.id, clientRequestId: "r" })],
    ["a rekey", () => s.rekeyClone(admin, { id: made.id, clientRequestId: "r" })],
  ];
  for (const [what, call] of others) {
    const e = await t.throwsAsync<LockboxError>(call(), undefined, what);
    t.true(isLockboxError(e, "INVALID_ARGUMENT"), what);
    t.is(e!.field, "client_request_id", what);
    t.regex(e!.message, /was used by ops-admin for a different request \(CreateKey\)/, what);
  }
  t.deepEqual(await dumpDb(fx.handle.store), before);
  // Malformed ids are refused before anything else.
  for (const bad of ["has space", "a/b", "x".repeat(129), "-leading", 7]) {
    const e = await t.throwsAsync<LockboxError>(
      s.createKey(admin, { ...req, clientRequestId: bad as never }),
    );
    t.is(e!.field, "client_request_id");
  }
  t.deepEqual(await dumpDb(fx.handle.store), before);
});

test("client request ids are per identity: another caller's same id makes its own key", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const a = serviceOf("cinder-1", "tenant-a");
  const b = serviceOf("cinder-2", "tenant-a");
  const ka = await s.createKey(a, { ...req, clientRequestId: "same" });
  const kb = await s.createKey(b, { ...req, clientRequestId: "same" });
  t.not(ka.id, kb.id);
  t.deepEqual(await s.createKey(a, { ...req, clientRequestId: "same" }), ka);
  t.deepEqual(await s.createKey(b, { ...req, clientRequestId: "same" }), kb);
});

test("import, clone and rekey retried with their client request id return the first key (a deleted one as its tombstone)", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const material = new Uint8Array(randomBytes(64));
  const { bitLength: _, ...importReq } = req;
  const imported = await s.importKey(admin, { ...importReq, material, clientRequestId: "imp" });
  t.deepEqual(await s.importKey(admin, { ...importReq, material, clientRequestId: "imp" }), imported);
  // Other bytes under the same id are another request.
  const other = new Uint8Array(material);
  other[0] ^= 1;
  const e = await t.throwsAsync<LockboxError>(
    s.importKey(admin, { ...importReq, material: other, clientRequestId: "imp" }),
  );
  t.is(e!.field, "client_request_id");
  const clone = await s.cloneKey(admin, { id: imported.id, name: "snap", clientRequestId: "cl" });
  t.deepEqual(await s.cloneKey(admin, { id: imported.id, name: "snap", clientRequestId: "cl" }), clone);
  const rekeyed = await s.rekeyClone(admin, { id: imported.id, clientRequestId: "rk" });
  t.deepEqual(await s.rekeyClone(admin, { id: imported.id, clientRequestId: "rk" }), rekeyed);
  t.is(await keyCount(s), 3);
  const tombstone = await s.deleteKey(admin, { id: rekeyed.id });
  t.deepEqual(await s.rekeyClone(admin, { id: imported.id, clientRequestId: "rk" }), tombstone);
  // Nothing stored reveals the material: no hex or base64 of it in the entry.
  const entries = await fx.handle.store
    .sublevel("meta")
    .values({ gte: "client-request/", lt: "client-request0" })
    .all();
  t.is(entries.length, 3);
  for (const v of entries) {
    const text = Buffer.from(v).toString();
    t.false(text.includes(Buffer.from(material).toString("base64")));
    t.false(text.includes(Buffer.from(material).toString("hex")));
  }
});

test(`client request ids expire after ${CLIENT_REQUEST_TTL_MS / 3600_000} h: the id then makes a new key, and the old entry is reclaimed`, async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const first = await s.createKey(admin, { ...req, clientRequestId: "old" });
  fx.clock.advance(CLIENT_REQUEST_TTL_MS - 1);
  t.deepEqual(await s.createKey(admin, { ...req, clientRequestId: "old" }), first);
  fx.clock.advance(1);
  const second = await s.createKey(admin, { ...req, clientRequestId: "old" });
  t.not(second.id, first.id);
  t.deepEqual(await s.createKey(admin, { ...req, clientRequestId: "old" }), second);
  // A write past the oldest entry's due time reclaims it in the background.
  fx.clock.advance(CLIENT_REQUEST_TTL_MS);
  await s.createKey(admin, { ...req, clientRequestId: "new" });
  await s.idle();
  const index = await fx.handle.store
    .sublevel("meta")
    .keys({ gte: "client-request-at/", lt: "client-request-at0" })
    .all();
  t.is(index.length, 1, index.join(", "));
  t.is(s.clientRequestCount(), 1);
  // A restart counts what is on disk.
  await fx.reopen();
  t.is(fx.handle.service.clientRequestCount(), 1);
});

test("at most entriesMax client request ids are kept: the oldest go first, the newest still answer", async (t) => {
  const fx = await openFixture(t, { clientRequests: { entriesMax: 5 } });
  const s = fx.handle.service;
  const made = [];
  for (let i = 0; i < 12; i++) {
    made.push(await s.createKey(admin, { ...req, clientRequestId: `r${i}` }));
    fx.clock.advance(1);
  }
  await s.idle();
  await fx.reopen();
  const r = fx.handle.service;
  await r.idle();
  t.true(r.clientRequestCount() <= 5, `${r.clientRequestCount()} kept`);
  const kept = await fx.handle.store
    .sublevel("meta")
    .keys({ gte: "client-request/", lt: "client-request0" })
    .all();
  t.deepEqual(
    kept.sort(),
    ["r10", "r11", "r7", "r8", "r9"].map((id) => `client-request/ops-admin/${id}`).sort(),
  );
  t.deepEqual(await r.createKey(admin, { ...req, clientRequestId: "r11" }), made[11]);
  t.not((await r.createKey(admin, { ...req, clientRequestId: "r0" })).id, made[0]!.id);
});

test("a client request entry edited on disk is DATA_LOSS on retry, never another key", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  await s.createKey(admin, { ...req, clientRequestId: "x" });
  const other = await s.createKey(admin, req);
  const key = "client-request/ops-admin/x";
  const stored = JSON.parse(Buffer.from((await fx.handle.store.get("meta", key))!).toString()) as Record<
    string,
    unknown
  >;
  for (const edit of [
    (r: Record<string, unknown>) => (r.keyId = other.id),
    (r: Record<string, unknown>) => (r.createdAtMs = Number(r.createdAtMs) + 1),
    (r: Record<string, unknown>) => (r.requestId = "y"),
  ]) {
    const copy = structuredClone(stored);
    edit(copy);
    await fx.handle.store.write([
      { type: "put", sublevel: "meta", key, value: Buffer.from(JSON.stringify(copy)) },
    ]);
    const e = await t.throwsAsync(s.createKey(admin, { ...req, clientRequestId: "x" }));
    t.true(isLockboxError(e, "DATA_LOSS"), String(e));
  }
  t.is(await keyCount(s), 2);
});

test("an id reused after it expired leaves two index entries; both fall due and are reclaimed in one pass", async (t) => {
  const fx = await openFixture(t);
  const s = fx.handle.service;
  const first = await s.createKey(admin, { ...req, clientRequestId: "reused" });
  fx.clock.advance(CLIENT_REQUEST_TTL_MS);
  const second = await s.createKey(admin, { ...req, clientRequestId: "reused" });
  t.not(second.id, first.id);
  const indexKeys = () =>
    fx.handle.store.sublevel("meta").keys({ gte: "client-request-at/", lt: "client-request-at0" }).all();
  // The first write past the old entry's due time reclaimed only the stale index entry.
  await s.idle();
  t.is((await indexKeys()).length, 1);
  t.deepEqual(await s.createKey(admin, { ...req, clientRequestId: "reused" }), second);
  fx.clock.advance(CLIENT_REQUEST_TTL_MS);
  // Reuse it again, so a stale and a current entry of one id are both due in the next pass.
  const third = await s.createKey(admin, { ...req, clientRequestId: "reused" });
  fx.clock.advance(CLIENT_REQUEST_TTL_MS);
  await s.createKey(admin, { ...req, clientRequestId: "other" });
  await s.idle();
  t.deepEqual(
    (await indexKeys()).map((k) => k.slice(k.lastIndexOf("/") + 1)),
    ["other"],
  );
  t.is(s.clientRequestCount(), 1);
  t.not((await s.createKey(admin, { ...req, clientRequestId: "reused" })).id, third.id);
});
