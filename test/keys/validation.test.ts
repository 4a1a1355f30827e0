import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import type { KeyService } from "../../src/keys/key-service.js";
import { admin, dumpDb, openFixture } from "./key-service-fixture.js";

type Call = (s: KeyService, existingId: string) => Promise<unknown>;
const good = { project: "tenant-a", scope: "vol-1", name: "key", algorithm: "AES" as const, bitLength: 256 };
const in1Day = new Date(Date.UTC(2026, 0, 2));

/** [description, call, expected field] — every one must be refused before anything is written. */
const cases: [string, Call, string][] = [
  ["request not an object", (s) => s.createKey(admin, null as never), "request"],
  ["project missing", (s) => s.createKey(admin, { ...good, project: undefined as never }), "project"],
  ["project empty", (s) => s.createKey(admin, { ...good, project: "" }), "project"],
  ["project with a slash", (s) => s.createKey(admin, { ...good, project: "a/b" }), "project"],
  ["project too long", (s) => s.createKey(admin, { ...good, project: "p".repeat(129) }), "project"],
  ["project starting with a dot", (s) => s.createKey(admin, { ...good, project: ".hidden" }), "project"],
  ["project not a string", (s) => s.createKey(admin, { ...good, project: 7 as never }), "project"],
  ["scope empty", (s) => s.createKey(admin, { ...good, scope: "" }), "scope"],
  ["scope with a space", (s) => s.createKey(admin, { ...good, scope: "a b" }), "scope"],
  ["name empty", (s) => s.createKey(admin, { ...good, name: "" }), "name"],
  ["name too long", (s) => s.createKey(admin, { ...good, name: "n".repeat(256) }), "name"],
  ["name with a newline", (s) => s.createKey(admin, { ...good, name: "a\nb" }), "name"],
  ["name with a lone surrogate", (s) => s.createKey(admin, { ...good, name: "a\ud800" }), "name"],
  ["algorithm unspecified", (s) => s.createKey(admin, { ...good, algorithm: "" as never }), "algorithm"],
  ["algorithm unknown", (s) => s.createKey(admin, { ...good, algorithm: "DES" as never }), "algorithm"],
  ["bit length 384", (s) => s.createKey(admin, { ...good, bitLength: 384 }), "bit_length"],
  ["bit length 0", (s) => s.createKey(admin, { ...good, bitLength: 0 }), "bit_length"],
  ["bit length as a string", (s) => s.createKey(admin, { ...good, bitLength: "256" as never }), "bit_length"],
  [
    "import material 15 bytes",
    (s) => s.importKey(admin, { ...good, material: new Uint8Array(15) }),
    "material",
  ],
  [
    "import material 48 bytes",
    (s) => s.importKey(admin, { ...good, material: new Uint8Array(48) }),
    "material",
  ],
  ["import material empty", (s) => s.importKey(admin, { ...good, material: new Uint8Array(0) }), "material"],
  [
    "import material not bytes",
    (s) => s.importKey(admin, { ...good, material: "x".repeat(32) as never }),
    "material",
  ],
  [
    "import project bad",
    (s) => s.importKey(admin, { ...good, project: "", material: new Uint8Array(32) }),
    "project",
  ],
  ["get id empty", (s) => s.getKey(admin, { id: "" }), "id"],
  ["get id not a uuid", (s) => s.getKey(admin, { id: "not-a-uuid" }), "id"],
  ["get id with trailing text", (s, id) => s.getKey(admin, { id: `${id}x` }), "id"],
  ["meta id not a uuid", (s) => s.getKeyMetadata(admin, { id: "../../etc" }), "id"],
  ["delete id not a uuid", (s) => s.deleteKey(admin, { id: "123" }), "id"],
  ["delete force not a boolean", (s, id) => s.deleteKey(admin, { id, force: "yes" as never }), "force"],
  [
    "create expires_at a string",
    (s) => s.createKey(admin, { ...good, expiresAt: "2027" as never }),
    "expires_at",
  ],
  [
    "create client_request_id with a slash",
    (s) => s.createKey(admin, { ...good, clientRequestId: "a/b" }),
    "client_request_id",
  ],
  [
    "clone client_request_id not a string",
    (s, id) => s.cloneKey(admin, { id, clientRequestId: 5 as never }),
    "client_request_id",
  ],
  [
    "import secret_type unknown",
    (s) => s.importKey(admin, { ...good, secretType: "rsa" as never, material: new Uint8Array(32) }),
    "secret_type",
  ],
  [
    "consumer key_id not a uuid",
    (s) => s.addConsumer(admin, { keyId: "k", service: "a", resourceType: "b", resourceId: "c" }),
    "key_id",
  ],
  [
    "consumer service empty",
    (s, id) => s.addConsumer(admin, { keyId: id, service: "", resourceType: "b", resourceId: "c" }),
    "service",
  ],
  [
    "remove consumer resource_id too long",
    (s, id) =>
      s.removeConsumer(admin, { keyId: id, service: "a", resourceType: "b", resourceId: "r".repeat(256) }),
    "resource_id",
  ],
  ["list consumers key_id missing", (s) => s.listConsumers(admin, {} as never), "key_id"],
  ["clone id not a uuid", (s) => s.cloneKey(admin, { id: "zz" }), "id"],
  ["clone name with control char", (s, id) => s.cloneKey(admin, { id, name: "a\u0007" }), "name"],
  ["rekey id missing", (s) => s.rekeyClone(admin, {} as never), "id"],
  ["rekey name too long", (s, id) => s.rekeyClone(admin, { id, name: "x".repeat(300) }), "name"],
  ["list project missing", (s) => s.listKeys(admin, { project: "" }), "project"],
  ["list scope bad", (s) => s.listKeys(admin, { project: "tenant-a", scope: "a/b" }), "scope"],
  ["list page size too big", (s) => s.listKeys(admin, { project: "tenant-a", pageSize: 1001 }), "page_size"],
  ["list page size negative", (s) => s.listKeys(admin, { project: "tenant-a", pageSize: -1 }), "page_size"],
  [
    "list page size fractional",
    (s) => s.listKeys(admin, { project: "tenant-a", pageSize: 1.5 }),
    "page_size",
  ],
  [
    "list page token garbage",
    (s) => s.listKeys(admin, { project: "tenant-a", pageToken: "garbage" }),
    "page_token",
  ],
  [
    "list page token oversize",
    (s) => s.listKeys(admin, { project: "tenant-a", pageToken: "a".repeat(600) }),
    "page_token",
  ],
  [
    "grant key id bad",
    (s) => s.createGrant(admin, { keyId: "x", grantee: "g", expiresAt: in1Day }),
    "key_id",
  ],
  [
    "grant grantee empty",
    (s, id) => s.createGrant(admin, { keyId: id, grantee: "", expiresAt: in1Day }),
    "grantee",
  ],
  [
    "grant grantee bad chars",
    (s, id) => s.createGrant(admin, { keyId: id, grantee: "a b", expiresAt: in1Day }),
    "grantee",
  ],
  [
    "grant expiry in the past",
    (s, id) => s.createGrant(admin, { keyId: id, grantee: "g", expiresAt: new Date(Date.UTC(2025, 11, 31)) }),
    "expires_at",
  ],
  [
    "grant expiry now",
    (s, id) => s.createGrant(admin, { keyId: id, grantee: "g", expiresAt: new Date(Date.UTC(2026, 0, 1)) }),
    "expires_at",
  ],
  [
    "grant expiry beyond 30 days",
    (s, id) =>
      s.createGrant(admin, { keyId: id, grantee: "g", expiresAt: new Date(Date.UTC(2026, 0, 31, 0, 0, 1)) }),
    "expires_at",
  ],
  [
    "grant expiry missing",
    (s, id) => s.createGrant(admin, { keyId: id, grantee: "g" } as never),
    "expires_at",
  ],
  [
    "grant expiry invalid date",
    (s, id) => s.createGrant(admin, { keyId: id, grantee: "g", expiresAt: new Date(NaN) }),
    "expires_at",
  ],
  ["revoke grant id bad", (s) => s.revokeGrant(admin, { grantId: "nope" }), "grant_id"],
];

test("every bad field is INVALID_ARGUMENT naming the proto field, and the database is unchanged", async (t) => {
  const { handle } = await openFixture(t);
  const existing = await handle.service.createKey(admin, good);
  const before = await dumpDb(handle.store);
  for (const [what, call, field] of cases) {
    const e = await t.throwsAsync<LockboxError>(call(handle.service, existing.id), undefined, what);
    t.true(isLockboxError(e, "INVALID_ARGUMENT"), `${what}: ${e?.message}`);
    t.is(e?.field, field, what);
    t.true(e!.message.startsWith(`${field}:`), what);
  }
  t.deepEqual(await dumpDb(handle.store), before);
  t.is(handle.service.stats().keyCount, 1);
});

test("limits at the boundary are accepted", async (t) => {
  const { handle } = await openFixture(t);
  const meta = await handle.service.createKey(admin, {
    ...good,
    project: `P${"x".repeat(127)}`,
    scope: "a._:-9",
    name: "ü".repeat(255),
  });
  t.is(meta.name.length, 255);
  const upper = await handle.service.getKeyMetadata(admin, { id: meta.id.toUpperCase() });
  t.is(upper.id, meta.id);
  const grant = await handle.service.createGrant(admin, {
    keyId: meta.id,
    grantee: "svc@host.example:1",
    expiresAt: new Date(Date.UTC(2026, 0, 31)),
  });
  t.is(grant.grantee, "svc@host.example:1");
  t.is((await handle.service.listKeys(admin, { project: meta.project, pageSize: 1000 })).keys.length, 1);
});
