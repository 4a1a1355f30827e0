/**
 * Strict decoding at the edge (issue 8 item 5), against a real peer process
 * over real gRPC: a length-delimited field claiming more bytes than its
 * message has, invalid UTF-8 in every string field of every request, and
 * out-of-range varints for `bit_length` and enums are INVALID_ARGUMENT
 * naming the field (message and `lockbox-field` trailer), and the store is
 * unchanged. Before, protobufjs replaced invalid UTF-8, truncated the varint
 * to 32 bits, and keys were created with values other than those sent.
 */
import test from "ava";
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";

import { spawnPeer, type IdentityFiles } from "../helpers/peer-process.js";
import {
  WIRE_LEN,
  bytes,
  encodeFields,
  message,
  str,
  uint,
  varint,
  type WireField,
} from "../helpers/protobuf-wire.js";

const INVALID_UTF8 = [Buffer.from([0xff, 0xfe]), Buffer.from([0xc0, 0x80]), Buffer.from([0xed, 0xa0, 0x80])];
const UUID = "6b1f0c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f";
const future = () => BigInt(Math.floor(Date.now() / 1000) + 3600);

/** A valid request per method, as fields; the test replaces one field at a time. */
const VALID: Record<string, { service: string; fields: () => WireField[]; strings: Record<number, string> }> =
  {
    CreateKey: {
      service: "KeyService",
      fields: () => [str(1, "p"), str(2, "s"), str(3, "n"), uint(4, 1), uint(5, 256), str(7, "req-1")],
      strings: { 1: "project", 2: "scope", 3: "name", 7: "client_request_id" },
    },
    ImportKey: {
      service: "KeyService",
      fields: () => [
        str(1, "p"),
        str(2, "s"),
        str(3, "n"),
        uint(4, 1),
        bytes(5, Buffer.alloc(32, 7)),
        str(9, "req-2"),
      ],
      strings: { 1: "project", 2: "scope", 3: "name", 9: "client_request_id" },
    },
    GetKey: { service: "KeyService", fields: () => [str(1, UUID)], strings: { 1: "id" } },
    GetKeyMetadata: { service: "KeyService", fields: () => [str(1, UUID)], strings: { 1: "id" } },
    ListKeys: {
      service: "KeyService",
      fields: () => [str(1, "p"), str(2, "s"), uint(3, 10), str(4, "")],
      strings: { 1: "project", 2: "scope", 4: "page_token" },
    },
    DeleteKey: { service: "KeyService", fields: () => [str(1, UUID)], strings: { 1: "id" } },
    CloneKey: {
      service: "KeyService",
      fields: () => [str(1, UUID), str(2, "c"), str(3, "req-3")],
      strings: { 1: "id", 2: "name", 3: "client_request_id" },
    },
    RekeyClone: {
      service: "KeyService",
      fields: () => [str(1, UUID), str(2, "c"), str(3, "req-4")],
      strings: { 1: "id", 2: "name", 3: "client_request_id" },
    },
    AddConsumer: {
      service: "KeyService",
      fields: () => [str(1, UUID), str(2, "cinder"), str(3, "volume"), str(4, "v-1")],
      strings: { 1: "key_id", 2: "service", 3: "resource_type", 4: "resource_id" },
    },
    RemoveConsumer: {
      service: "KeyService",
      fields: () => [str(1, UUID), str(2, "cinder"), str(3, "volume"), str(4, "v-1")],
      strings: { 1: "key_id", 2: "service", 3: "resource_type", 4: "resource_id" },
    },
    ListConsumers: { service: "KeyService", fields: () => [str(1, UUID)], strings: { 1: "key_id" } },
    CreateGrant: {
      service: "KeyService",
      fields: () => [str(1, UUID), str(2, "other"), message(3, [uint(1, future()), uint(2, 0)])],
      strings: { 1: "key_id", 2: "grantee" },
    },
    RevokeGrant: { service: "KeyService", fields: () => [str(1, UUID)], strings: { 1: "grant_id" } },
    ListAuditEvents: {
      service: "AdminService",
      fields: () => [str(1, ""), str(2, "admin"), uint(3, 10), str(4, "")],
      strings: { 1: "key_id", 2: "identity", 4: "page_token" },
    },
  };

test("truncated fields, invalid UTF-8 in every string field and out-of-range varints are INVALID_ARGUMENT naming the field; the store is unchanged", async (t) => {
  const peer = await spawnPeer();
  t.teardown(() => peer.teardown());
  const admin = peer.client(peer.admin, { cache: false, attemptsMax: 1 });
  await admin.createKey({ project: "p", scope: "s", name: "before" });
  const raw = rawClient(peer.address, peer.admin);
  t.teardown(() => raw.close());
  const snapshot = async () => ({
    count: (await admin.getStatus()).keyCount,
    keys: (await admin.listAllKeys({ project: "p" })).map((k) => `${k.id}/${k.name}`).sort(),
  });
  const before = await snapshot();

  const cases: { method: string; body: Buffer; field: string; why: string }[] = [];
  for (const [method, spec] of Object.entries(VALID)) {
    for (const [no, field] of Object.entries(spec.strings)) {
      for (const bad of INVALID_UTF8) {
        const fields = spec.fields().map((f) => (f.no === Number(no) ? bytes(f.no, bad) : f));
        cases.push({
          method,
          body: encodeFields(fields),
          field,
          why: `invalid UTF-8 ${bad.toString("hex")}`,
        });
      }
      // The field claims 40 bytes; 3 follow: the last field of the message, cut short.
      const rest = spec.fields().filter((f) => f.no !== Number(no));
      const tag = varint((BigInt(no) << 3n) | BigInt(WIRE_LEN));
      const truncated = Buffer.concat([encodeFields(rest), tag, varint(40n), Buffer.from("abc")]);
      cases.push({ method, body: truncated, field, why: "truncated length-delimited field" });
    }
  }
  // bit_length 2^32 + 256 was read as 256; and 2^32 exactly as 0.
  for (const v of [(1n << 32n) + 256n, 1n << 32n, (1n << 64n) - 1n]) {
    const fields = VALID.CreateKey!.fields().map((f) => (f.no === 5 ? uint(5, v) : f));
    cases.push({
      method: "CreateKey",
      body: encodeFields(fields),
      field: "bit_length",
      why: `bit_length ${v}`,
    });
  }
  const enumTooBig = VALID.CreateKey!.fields().map((f) => (f.no === 4 ? uint(4, 1n << 40n) : f));
  cases.push({ method: "CreateKey", body: encodeFields(enumTooBig), field: "algorithm", why: "enum 2^40" });
  // A nested message cut short inside: expires_at's seconds varint never ends.
  const grant = VALID.CreateGrant!.fields().filter((f) => f.no !== 3);
  const cutTimestamp = Buffer.concat([encodeFields(grant), Buffer.from([0x1a, 0x02, 0x08, 0xff])]);
  cases.push({
    method: "CreateGrant",
    body: cutTimestamp,
    field: "expires_at.seconds",
    why: "nested varint cut",
  });

  for (const c of cases) {
    const res = await send(raw, `/lockbox.v1.${VALID[c.method]!.service}/${c.method}`, c.body);
    const label = `${c.method} ${c.field}: ${c.why}`;
    t.is(res.code, grpc.status.INVALID_ARGUMENT, `${label} -> ${res.code} ${res.details}`);
    t.is(res.field, c.field, label);
    t.true(res.details.startsWith(`${c.field}: `), `${label}: ${res.details}`);
  }
  t.deepEqual(await snapshot(), before, "no refused request changed the store");
  t.log(`${cases.length} malformed requests refused, each naming its field`);

  // The well-formed requests themselves are accepted (the cases differ from them in one field only).
  const ok = await send(raw, "/lockbox.v1.KeyService/CreateKey", encodeFields(VALID.CreateKey!.fields()));
  t.is(ok.code, grpc.status.OK, ok.details);
});

function rawClient(address: string, id: IdentityFiles): grpc.Client {
  const creds = grpc.credentials.createSsl(readFileSync(id.ca), readFileSync(id.key), readFileSync(id.cert));
  return new grpc.Client(address, creds);
}

function send(
  client: grpc.Client,
  path: string,
  body: Buffer,
): Promise<{ code: number; details: string; field: string | undefined }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      path,
      (b) => b,
      (b) => b,
      body,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (err) =>
        resolve(
          err === null
            ? { code: grpc.status.OK, details: "", field: undefined }
            : {
                code: err.code,
                details: err.details,
                field: err.metadata.get("lockbox-field")[0] as string | undefined,
              },
        ),
    );
  });
}
