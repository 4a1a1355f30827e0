import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { randomUUID } from "node:crypto";
import { createClusterCa, issueClientCertificate } from "../../src/pki/certificate-authority.js";
import { type PeerFixture, call, clientsFor, failure, issue, startSharedPeer } from "./peer-fixture.js";

const DAY_MS = 24 * 3600 * 1000;
const MISSING_ID = "00000000-0000-4000-8000-000000000000";

// One peer for the file: each test uses its own identities and keys.
let f: PeerFixture;
let closePeer: () => Promise<void> = async () => {};
test.before(async () => {
  const shared = await startSharedPeer();
  f = shared;
  closePeer = () => shared.close();
});
test.after.always(() => closePeer());

test("a call without a client certificate gets UNAUTHENTICATED, not a failed handshake", async (t) => {
  const anonymous = clientsFor(t, f, null);
  const err = await failure(t, call(anonymous.keys, "GetKeyMetadata", { id: MISSING_ID }));
  t.is(err.code, grpc.status.UNAUTHENTICATED);
  t.regex(err.details, /client certificate/);
  // The same channel works at the TLS level: the admin identity succeeds on its own connection.
  const admin = clientsFor(t, f, f.admin);
  t.true((await call(admin.admin, "GetStatus", {})).ok);
});

test("a certificate from another CA gets UNAUTHENTICATED", async (t) => {
  const otherCa = await createClusterCa({ clusterId: "33333333-3333-4333-8333-333333333333" });
  const foreign = await issueClientCertificate(otherCa, { identity: "admin", role: "admin", projects: [] });
  const c = clientsFor(t, f, foreign);
  const err = await failure(t, call(c.admin, "GetStatus", {}));
  t.is(err.code, grpc.status.UNAUTHENTICATED);
});

test("an expired certificate of the right CA gets UNAUTHENTICATED", async (t) => {
  const expired = await issue(f, "old-host", "service", ["p1"], {
    days: 1,
    notBefore: new Date(Date.now() - 10 * DAY_MS),
  });
  const c = clientsFor(t, f, expired);
  const err = await failure(
    t,
    call(c.keys, "CreateKey", {
      project: "p1",
      scope: "v",
      name: "n",
      algorithm: "KEY_ALGORITHM_AES",
      bit_length: 256,
    }),
  );
  t.is(err.code, grpc.status.UNAUTHENTICATED);
});

test("a service identity calling the AdminService gets PERMISSION_DENIED", async (t) => {
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  for (const [method, req] of [
    ["GetStatus", {}],
    ["ListAuditEvents", {}],
  ] as const) {
    const err = await failure(t, call(svc.admin, method, req));
    t.is(err.code, grpc.status.PERMISSION_DENIED, method);
  }
  // ...while its own KeyService calls go through.
  const created = await call(svc.keys, "CreateKey", {
    project: "p1",
    scope: "vol-1",
    name: "root",
    algorithm: "KEY_ALGORITHM_AES",
    bit_length: 128,
  });
  t.true(created.ok, created.ok ? "" : created.error.message);
});

test("refused calls are audited with their outcome, and the key never reaches the audit log", async (t) => {
  const missingId = randomUUID(); // other tests in this file use MISSING_ID
  const admin = clientsFor(t, f, f.admin);
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  const anonymous = clientsFor(t, f, null);
  const created = await call(svc.keys, "CreateKey", {
    project: "p1",
    scope: "vol-9",
    name: "root",
    algorithm: "KEY_ALGORITHM_AES",
    bit_length: 256,
  });
  if (!created.ok) return t.fail(created.error.message);
  const id: string = created.value.key.id;
  const got = await call(svc.keys, "GetKey", { id });
  if (!got.ok) return t.fail(got.error.message);
  const material = got.value.material as Buffer;
  t.is(material.length, 32);
  await failure(t, call(anonymous.keys, "GetKey", { id }));
  await failure(t, call(svc.keys, "GetKey", { id: missingId }));

  const listed = await call(admin.admin, "ListAuditEvents", { key_id: id });
  if (!listed.ok) return t.fail(listed.error.message);
  const events = listed.value.events as Record<string, string>[];
  const summary = events.map((e) => [e.operation, e.identity, e.outcome, e.status]);
  // The anonymous GetKey was refused at its headers, before its body (and the key id in it) was
  // read; it is counted into an aggregate record per source (test/e2e/audit-flood.test.ts).
  t.deepEqual(summary, [
    ["CreateKey", "vol-host", "AUDIT_OUTCOME_OK", "OK"],
    ["GetKey", "vol-host", "AUDIT_OUTCOME_OK", "OK"],
  ]);
  t.true(events.every((e) => e.key_id === id));
  t.is(events[1]!.project, "p1");
  const missing = await call(admin.admin, "ListAuditEvents", { key_id: missingId });
  if (!missing.ok) return t.fail(missing.error.message);
  t.deepEqual(
    (missing.value.events as Record<string, string>[]).map((e) => [e.operation, e.outcome, e.status]),
    [["GetKey", "AUDIT_OUTCOME_NOT_FOUND", "NOT_FOUND"]],
  );
  const everything = JSON.stringify(listed.value) + JSON.stringify(missing.value);
  for (const encoding of ["hex", "base64", "base64url"] as const) {
    t.false(everything.includes(material.toString(encoding)), `audit output contains the key (${encoding})`);
  }
});

test("a refused call naming a key id in upper case is still found by the audit filter on that key", async (t) => {
  const admin = clientsFor(t, f, f.admin);
  const owner = clientsFor(t, f, await issue(f, "vol-host-2", "service", ["p1"]));
  const prober = clientsFor(t, f, await issue(f, "prober", "service", ["p2"]));
  const created = await call(owner.keys, "CreateKey", {
    project: "p1",
    scope: "vol-1",
    name: "root",
    algorithm: "KEY_ALGORITHM_AES",
    bit_length: 256,
  });
  if (!created.ok) return t.fail(created.error.message);
  const id: string = created.value.key.id;
  // UUIDs are accepted in either case; the spelling must not hide an attempt from the audit.
  for (const method of ["GetKey", "DeleteKey", "CloneKey"]) {
    const e = await failure(t, call(prober.keys, method, { id: id.toUpperCase() }));
    t.is(e.code, grpc.status.NOT_FOUND);
  }
  const e = await failure(
    t,
    call(prober.keys, "CreateGrant", {
      key_id: id.toUpperCase(),
      grantee: "prober",
      expires_at: { seconds: String(Math.floor(Date.now() / 1000) + 3600), nanos: 0 },
    }),
  );
  t.is(e.code, grpc.status.NOT_FOUND);

  const listed = await call(admin.admin, "ListAuditEvents", { key_id: id, identity: "prober" });
  if (!listed.ok) return t.fail(listed.error.message);
  const events = listed.value.events as Record<string, string>[];
  t.deepEqual(
    events.map((ev) => [ev.operation, ev.status, ev.key_id]),
    ["GetKey", "DeleteKey", "CloneKey", "CreateGrant"].map((op) => [op, "NOT_FOUND", id]),
  );
});
