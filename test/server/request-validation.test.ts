import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { REQUEST_BYTES_MAX } from "../../src/server/lockbox-server.js";
import { call, clientsFor, failure, issue, startTestPeer } from "./peer-fixture.js";

const valid = {
  project: "p1",
  scope: "vol-1",
  name: "root",
  algorithm: "KEY_ALGORITHM_AES",
  bit_length: 256,
};

test("bad requests get INVALID_ARGUMENT naming the field, and change nothing", async (t) => {
  const f = await startTestPeer(t);
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  const admin = clientsFor(t, f, f.admin);
  const cases: [string, string, Record<string, unknown>, string][] = [
    ["unknown enum number", "CreateKey", { ...valid, algorithm: 7 }, "algorithm"],
    ["unspecified enum", "CreateKey", { ...valid, algorithm: "KEY_ALGORITHM_UNSPECIFIED" }, "algorithm"],
    ["wrong bit length", "CreateKey", { ...valid, bit_length: 384 }, "bit_length"],
    [
      "unknown secret type",
      "ImportKey",
      { ...valid, bit_length: 0, secret_type: 9, material: Buffer.alloc(32) },
      "secret_type",
    ],
    [
      "expiry in the past",
      "CreateKey",
      { ...valid, expires_at: { seconds: "1000", nanos: 0 } },
      "expires_at",
    ],
    ["bad client request id", "CreateKey", { ...valid, client_request_id: "a b" }, "client_request_id"],
    [
      "consumer without service",
      "AddConsumer",
      { key_id: "00000000-0000-4000-8000-000000000000", resource_type: "v", resource_id: "r" },
      "service",
    ],
    ["oversize name", "CreateKey", { ...valid, name: "n".repeat(300) }, "name"],
    ["oversize project", "CreateKey", { ...valid, project: "p".repeat(200) }, "project"],
    ["missing scope", "CreateKey", { ...valid, scope: "" }, "scope"],
    ["short material", "ImportKey", { ...valid, material: Buffer.alloc(15) }, "material"],
    ["malformed id", "GetKey", { id: "not-a-uuid" }, "id"],
    ["missing id", "GetKeyMetadata", {}, "id"],
    ["bad page token", "ListKeys", { project: "p1", page_token: "garbage" }, "page_token"],
    ["page size too big", "ListKeys", { project: "p1", page_size: 5000 }, "page_size"],
    [
      "missing deadline",
      "CreateGrant",
      { key_id: "00000000-0000-4000-8000-000000000000", grantee: "x" },
      "expires_at",
    ],
    [
      "deadline out of range",
      "CreateGrant",
      {
        key_id: "00000000-0000-4000-8000-000000000000",
        grantee: "x",
        expires_at: { seconds: "99999999999999", nanos: 0 },
      },
      "expires_at",
    ],
  ];
  for (const [what, method, request, field] of cases) {
    const err = await failure(t, call(svc.keys, method, request));
    t.is(err.code, grpc.status.INVALID_ARGUMENT, `${what}: ${err.details}`);
    t.true(err.details.startsWith(`${field}:`), `${what}: details '${err.details}' should name ${field}`);
    t.deepEqual(err.metadata.get("lockbox-field"), [field], what);
  }
  const status = await call(admin.admin, "GetStatus", {});
  if (!status.ok) return t.fail(status.error.message);
  t.is(status.value.key_count, "0", "no bad request created a key");
});

test("a request larger than the cap is refused before it reaches the key service", async (t) => {
  const f = await startTestPeer(t);
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  const err = await failure(
    t,
    call(svc.keys, "ImportKey", { ...valid, material: Buffer.alloc(REQUEST_BYTES_MAX + 1) }),
  );
  t.is(err.code, grpc.status.RESOURCE_EXHAUSTED);
});

test("a key of another project is NOT_FOUND, exactly like a missing key", async (t) => {
  const f = await startTestPeer(t);
  const owner = clientsFor(t, f, await issue(f, "owner", "service", ["p1"]));
  const stranger = clientsFor(t, f, await issue(f, "stranger", "service", ["p2"]));
  const created = await call(owner.keys, "CreateKey", valid);
  if (!created.ok) return t.fail(created.error.message);
  const foreign = await failure(t, call(stranger.keys, "GetKey", { id: created.value.key.id }));
  const missing = await failure(
    t,
    call(stranger.keys, "GetKey", { id: "00000000-0000-4000-8000-000000000000" }),
  );
  t.is(foreign.code, grpc.status.NOT_FOUND);
  t.is(missing.code, grpc.status.NOT_FOUND);
  t.is(
    foreign.details.replace(created.value.key.id, "ID"),
    missing.details.replace("00000000-0000-4000-8000-000000000000", "ID"),
  );
});

test("bytes that are not a protobuf message get INVALID_ARGUMENT naming the field, after authentication", async (t) => {
  const f = await startTestPeer(t);
  const raw = (identity: { certificatePem: string; privateKeyPem: string } | null) => {
    const ca = Buffer.from(f.ca.certificatePem);
    const creds =
      identity === null
        ? grpc.credentials.createSsl(ca)
        : grpc.credentials.createSsl(
            ca,
            Buffer.from(identity.privateKeyPem),
            Buffer.from(identity.certificatePem),
          );
    const client = new grpc.Client(f.peer.address, creds, { "grpc.ssl_target_name_override": "localhost" });
    t.teardown(() => client.close());
    return (bytes: Buffer) =>
      new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest(
          "/lockbox.v1.KeyService/GetKey",
          (b: Buffer) => b,
          (b: Buffer) => b,
          bytes,
          (err) => resolve(err),
        ),
      );
  };
  // Field 1 (length-delimited) cut off before its length.
  const truncated = Buffer.from([0x0a]);
  const svcErr = await raw(await issue(f, "vol-host", "service", ["p1"]))(truncated);
  t.is(svcErr?.code, grpc.status.INVALID_ARGUMENT);
  t.regex(svcErr?.details ?? "", /^id: is truncated/);
  t.deepEqual(svcErr?.metadata.get("lockbox-field"), ["id"]);
  const anonErr = await raw(null)(truncated);
  t.is(
    anonErr?.code,
    grpc.status.UNAUTHENTICATED,
    "garbage from an unknown caller is refused as unauthenticated first",
  );
});
