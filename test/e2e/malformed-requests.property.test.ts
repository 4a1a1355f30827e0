/**
 * Property tests over real gRPC: random and malformed requests (hand-encoded
 * protobuf with wrong wire types, unknown fields and enum numbers, oversize
 * and non-UTF-8 strings, out-of-range integers, plain garbage) to every RPC.
 * The peer never crashes, answers only with documented status codes (never
 * INTERNAL or UNKNOWN), and a request that fails leaves the store unchanged.
 */
import test from "ava";
import * as fc from "fast-check";
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";

import type { KeyMetadata, LockboxClient } from "../../src/client/index.js";
import { spawnPeer, type IdentityFiles, type PeerProcess } from "../helpers/peer-process.js";
import {
  WIRE_FIXED32,
  WIRE_FIXED64,
  WIRE_LEN,
  WIRE_VARINT,
  bytes,
  encodeFields,
  message,
  str,
  uint,
  type WireField,
} from "../helpers/protobuf-wire.js";

const RUNS_PER_RPC = 150;
const SEED = Number(process.env.LOCKBOX_PROPERTY_SEED ?? Date.now() % 2 ** 31);

/** Every status the key and admin services document for a bad or unlucky request. */
const DOCUMENTED = new Set([
  grpc.status.OK,
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.PERMISSION_DENIED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.ALREADY_EXISTS,
  grpc.status.RESOURCE_EXHAUSTED,
]);

type Kind = "string" | "uint32" | "enum" | "bytes" | "timestamp" | "bool";

/** Field numbers and kinds of each request message, as in keys.proto and admin.proto. */
const RPCS: Record<string, Record<number, Kind>> = {
  "lockbox.v1.KeyService/CreateKey": {
    1: "string",
    2: "string",
    3: "string",
    4: "enum",
    5: "uint32",
    6: "timestamp",
    7: "string",
  },
  "lockbox.v1.KeyService/ImportKey": {
    1: "string",
    2: "string",
    3: "string",
    4: "enum",
    5: "bytes",
    6: "enum",
    7: "uint32",
    8: "timestamp",
    9: "string",
  },
  "lockbox.v1.KeyService/GetKey": { 1: "string" },
  "lockbox.v1.KeyService/GetKeyMetadata": { 1: "string" },
  "lockbox.v1.KeyService/ListKeys": { 1: "string", 2: "string", 3: "uint32", 4: "string" },
  "lockbox.v1.KeyService/CloneKey": { 1: "string", 2: "string", 3: "string" },
  "lockbox.v1.KeyService/RekeyClone": { 1: "string", 2: "string", 3: "string" },
  "lockbox.v1.KeyService/CreateGrant": { 1: "string", 2: "string", 3: "timestamp" },
  "lockbox.v1.KeyService/RevokeGrant": { 1: "string" },
  "lockbox.v1.KeyService/AddConsumer": { 1: "string", 2: "string", 3: "string", 4: "string" },
  "lockbox.v1.KeyService/RemoveConsumer": { 1: "string", 2: "string", 3: "string", 4: "string" },
  "lockbox.v1.KeyService/ListConsumers": { 1: "string" },
  // Last of the key RPCs: it destroys seeded keys the others use.
  "lockbox.v1.KeyService/DeleteKey": { 1: "string", 2: "bool" },
  "lockbox.v1.AdminService/GetStatus": {},
  "lockbox.v1.AdminService/ListAuditEvents": { 1: "string", 2: "string", 3: "uint32", 4: "string" },
};

/** Projects whose keys the snapshot compares; generated project names come from here or are invalid. */
const PROJECTS = ["p0", "p1", "prop"];

let peer: PeerProcess;
let admin: LockboxClient;
let rawAdmin: grpc.Client;
let rawService: grpc.Client;
/** Ids that exist on the peer, so requests also reach the code behind the id checks. */
const knownIds: string[] = [];

test.before(async () => {
  peer = await spawnPeer();
  admin = peer.client(peer.admin, { cache: false });
  const service = await peer.issueIdentity("fuzz-service", "service", ["p0", "prop"]);
  for (const project of PROJECTS) {
    const k = await admin.createKey({ project, scope: "seed", name: "seed" });
    knownIds.push(k.id, (await admin.cloneKey(k.id)).id);
  }
  const grant = await admin.createGrant({
    keyId: knownIds[0]!,
    grantee: "fuzz-service",
    expiresAt: new Date(Date.now() + 3_600_000),
  });
  knownIds.push(grant.id);
  rawAdmin = rawClient(peer.address, peer.admin);
  rawService = rawClient(peer.address, service);
});

test.after.always(async () => {
  rawAdmin?.close();
  rawService?.close();
  await peer?.teardown();
});

function rawClient(address: string, id: IdentityFiles): grpc.Client {
  const creds = grpc.credentials.createSsl(readFileSync(id.ca), readFileSync(id.key), readFileSync(id.cert));
  return new grpc.Client(address, creds);
}

/** Sends bytes as they are; the answer's status code (and the details for the report). */
function sendRaw(
  client: grpc.Client,
  path: string,
  body: Buffer,
): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      `/${path}`,
      (b) => b,
      (b) => b,
      body,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (err) =>
        resolve(
          err === null ? { code: grpc.status.OK, details: "" } : { code: err.code, details: err.details },
        ),
    );
  });
}

// ---- generators ----------------------------------------------------------

const oversize = (maxLength: number): fc.Arbitrary<string> =>
  fc
    .integer({ min: 257, max: maxLength })
    .chain((n) => fc.constantFrom("a", "é", "/", "0").map((c) => c.repeat(n)));

const stringValue = (): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc
      .constantFrom(
        ...PROJECTS,
        "",
        "seed",
        "admin",
        "fuzz-service",
        "..",
        "a/b",
        "\u0000",
        "-lead",
        "KEY_STATE_ACTIVE",
      )
      .map(utf8),
    fc.constantFrom(...knownIds).map(utf8),
    fc.uuid().map(utf8),
    fc.string({ maxLength: 40 }).map(utf8),
    fc.string({ unit: "grapheme", maxLength: 20 }).map(utf8),
    oversize(70_000).map(utf8),
    // Not UTF-8 at all: lone continuation bytes, overlong encodings, surrogates.
    fc.uint8Array({ minLength: 1, maxLength: 40 }),
    fc.constantFrom(Uint8Array.of(0xc0, 0x80), Uint8Array.of(0xed, 0xa0, 0x80), Uint8Array.of(0xff, 0xfe)),
  );

const varintValue: fc.Arbitrary<bigint> = fc.oneof(
  fc.constantFrom(
    0n,
    1n,
    2n,
    99n,
    100n,
    128n,
    129n,
    192n,
    255n,
    256n,
    512n,
    1000n,
    1001n,
    4294967295n,
    4294967296n,
  ),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.bigInt({ min: -(1n << 63n), max: -1n }),
);

const timestampValue: fc.Arbitrary<Uint8Array> = fc
  .record({
    seconds: fc.oneof(
      // Near now: just before it (refused even with the largest nanos), or an hour and more ahead. Not seconds ahead: a key
      // created with such an expiry would expire during a later request and look like a changed store.
      fc
        .oneof(fc.integer({ min: -5, max: -1 }), fc.integer({ min: 3_600, max: 40 * 86_400 }))
        .map((d) => BigInt(Math.floor(Date.now() / 1000) + d)),
      fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
    ),
    nanos: fc.oneof(
      fc.integer({ min: 0, max: 999_999_999 }),
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    ),
    extra: fc.boolean(),
  })
  .map(({ seconds, nanos, extra }) => {
    const fields: WireField[] = [
      { no: 1, wire: WIRE_VARINT, value: seconds },
      { no: 2, wire: WIRE_VARINT, value: BigInt(nanos) },
    ];
    if (extra) fields.push({ no: 7, wire: WIRE_LEN, value: utf8("unknown") });
    return encodeFields(fields);
  });

/** A value of the right wire type for `kind`, with a hostile or ordinary value. */
function wellTyped(no: number, kind: Kind): fc.Arbitrary<WireField> {
  switch (kind) {
    case "string":
      return stringValue().map((value) => ({ no, wire: WIRE_LEN, value }));
    case "uint32":
    case "enum":
    case "bool":
      return varintValue.map((value) => ({ no, wire: WIRE_VARINT, value }));
    case "bytes":
      return fc
        .oneof(
          fc.uint8Array({ maxLength: 48 }),
          fc.constantFrom(16, 32).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
          fc.integer({ min: 1000, max: 100_000 }).map((n) => new Uint8Array(n)),
        )
        .map((value) => ({ no, wire: WIRE_LEN, value }));
    case "timestamp":
      return timestampValue.map((value) => ({ no, wire: WIRE_LEN, value }));
  }
}

/** A field with a wire type its number does not have, or a wire type that does not exist. */
function wronglyTyped(no: number): fc.Arbitrary<WireField> {
  return fc.oneof(
    varintValue.map((value): WireField => ({ no, wire: WIRE_VARINT, value })),
    fc
      .uint8Array({ minLength: 8, maxLength: 8 })
      .map((value): WireField => ({ no, wire: WIRE_FIXED64, value })),
    fc
      .uint8Array({ minLength: 4, maxLength: 4 })
      .map((value): WireField => ({ no, wire: WIRE_FIXED32, value })),
    fc.uint8Array({ maxLength: 30 }).map((value): WireField => ({ no, wire: WIRE_LEN, value })),
    fc
      .record({ wire: fc.constantFrom(3, 4, 6, 7), value: fc.uint8Array({ maxLength: 12 }) })
      .map(({ wire, value }): WireField => ({ no, wire, value, raw: true })),
  );
}

/**
 * A valid request of each RPC (by field number), so that "one field wrong"
 * requests reach deep into the handlers, and some succeed and change the store.
 */
function validFields(path: string): fc.Arbitrary<WireField[]> {
  const id = fc.constantFrom(...knownIds).map((v) => str(1, v));
  const project = (no: number): fc.Arbitrary<WireField> =>
    fc.constantFrom(...PROJECTS).map((v) => str(no, v));
  const name = (no: number): fc.Arbitrary<WireField> =>
    fc.constantFrom("fz", "disk-1", "é").map((v) => str(no, v));
  const expires = fc
    .integer({ min: 60, max: 86_400 })
    .map((d) => message(3, [uint(1, Math.floor(Date.now() / 1000) + d), uint(2, 0)]));
  switch (path.split("/")[1]) {
    case "CreateKey":
      return fc.tuple(
        project(1),
        name(2),
        name(3),
        fc.constant(uint(4, 1)),
        fc.constantFrom(128, 256).map((b) => uint(5, b)),
      );
    case "ImportKey":
      return fc.tuple(
        project(1),
        name(2),
        name(3),
        fc.constant(uint(4, 1)),
        fc
          .constantFrom(16, 32)
          .chain((n) => fc.uint8Array({ minLength: n, maxLength: n }))
          .map((b) => bytes(5, b)),
      );
    case "ListKeys":
    case "ListAuditEvents":
      return fc.tuple(
        project(1),
        fc.constantFrom(1, 2, 100).map((n) => uint(3, n)),
      );
    case "CloneKey":
    case "RekeyClone":
      return fc.tuple(id, name(2));
    case "AddConsumer":
    case "RemoveConsumer":
      return fc.tuple(
        id,
        fc.constantFrom("cinder", "nova").map((v) => str(2, v)),
        fc.constant(str(3, "volume")),
        name(4),
      );
    case "CreateGrant":
      return fc.tuple(
        id.map((f) => ({ ...f, no: 1 })),
        fc.constant(str(2, "fuzz-service")),
        expires,
      );
    case "GetStatus":
      return fc.constant([]);
    default:
      return fc.tuple(id);
  }
}

function request(path: string, schema: Record<number, Kind>): fc.Arbitrary<Buffer> {
  const known = Object.entries(schema).map(([no, kind]) =>
    fc.option(
      fc.oneof(
        { weight: 4, arbitrary: wellTyped(Number(no), kind) },
        { weight: 1, arbitrary: wronglyTyped(Number(no)) },
      ),
      { freq: 4 },
    ),
  );
  const unknownField = fc
    .integer({ min: 1, max: 536_870_911 })
    .filter((no) => !(no in schema))
    .chain((no) => wronglyTyped(no));
  const structured = fc
    .tuple(fc.tuple(...known), fc.array(unknownField, { maxLength: 3 }), fc.boolean(), fc.nat({ max: 8 }))
    .map(([fields, unknown, shuffle, truncateBy]) => {
      const all = [...fields.filter((f): f is WireField => f !== null), ...unknown];
      if (shuffle) all.reverse();
      const body = encodeFields(all);
      // Sometimes cut the message short, mid-field.
      return truncateBy > 0 && truncateBy < 3
        ? body.subarray(0, Math.max(0, body.length - truncateBy))
        : body;
    });
  // A valid request with one field replaced by a hostile value of the right wire type (or left as is).
  const entries = Object.entries(schema);
  const oneFieldWrong = fc
    .tuple(
      validFields(path),
      entries.length > 0 ? fc.constantFrom(...entries) : fc.constant(undefined),
      fc.boolean(),
    )
    .chain(([valid, entry, keep]) => {
      if (entry === undefined || keep) return fc.constant(encodeFields(valid));
      const no = Number(entry[0]);
      return wellTyped(no, entry[1]).map((bad) => encodeFields([...valid.filter((f) => f.no !== no), bad]));
    });
  return fc.oneof(
    { weight: 4, arbitrary: structured },
    { weight: 3, arbitrary: oneFieldWrong },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
  );
}

// ---- the store's observable state ----------------------------------------

interface Snapshot {
  keyCount: string;
  keys: Record<
    string,
    Pick<KeyMetadata, "id" | "project" | "scope" | "name" | "state" | "bitLength" | "parentId">[]
  >;
}

/** Every key of every project requests can name, and the peer's key count; the calls run together. */
async function snapshot(): Promise<Snapshot> {
  const [keyCount, ...lists] = await Promise.all([
    admin.getStatus().then((s) => s.keyCount),
    ...PROJECTS.map((project) => admin.listAllKeys({ project, pageSize: 1000 })),
  ]);
  const keys: Snapshot["keys"] = {};
  PROJECTS.forEach((project, i) => {
    keys[project] = lists[i]!.map(({ id, project, scope, name, state, bitLength, parentId }) => ({
      id,
      project,
      scope,
      name,
      state,
      bitLength,
      parentId,
    })).sort((x, y) => x.id.localeCompare(y.id));
  });
  return { keyCount: keyCount as string, keys };
}

// ---- one property per RPC ------------------------------------------------

for (const [path, schema] of Object.entries(RPCS)) {
  test.serial(
    `${path.split("/")[1]}: malformed requests get documented codes, leave the store unchanged, crash nothing`,
    async (t) => {
      let before = await snapshot();
      const seen = new Map<string, number>();
      await fc.assert(
        fc.asyncProperty(request(path, schema), fc.boolean(), async (body, asAdmin) => {
          const { code, details } = await sendRaw(asAdmin ? rawAdmin : rawService, path, body);
          seen.set(grpc.status[code]!, (seen.get(grpc.status[code]!) ?? 0) + 1);
          if (!DOCUMENTED.has(code)) {
            throw new Error(
              `undocumented status ${grpc.status[code] ?? code} (${details}) for ${body.length} bytes: ${body.subarray(0, 64).toString("hex")}`,
            );
          }
          const after = await snapshot();
          if (code === grpc.status.OK) {
            before = after; // a valid request may change the store
          } else if (JSON.stringify(after) !== JSON.stringify(before)) {
            throw new Error(
              `${grpc.status[code]} changed the store: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`,
            );
          }
        }),
        { numRuns: RUNS_PER_RPC, seed: SEED, endOnFailure: true, includeErrorInReport: true },
      );
      t.log(`seed ${SEED}: ${[...seen].map(([k, v]) => `${k} ${v}`).join(", ")}`);
      // Not all garbage: some requests got past decoding to the service's own answers.
      t.true(
        [...seen.keys()].some((k) => k !== "INVALID_ARGUMENT"),
        JSON.stringify([...seen]),
      );
      // The peer is alive and well.
      t.is((await admin.getStatus()).sealState, "unsealed");
    },
  );
}

test.serial("after every property, the peer process is still the one that started", async (t) => {
  t.truthy(peer.pid);
  t.notThrows(() => process.kill(peer.pid!, 0));
  t.is((await admin.getStatus()).sealState, "unsealed");
});

function utf8(s: string): Uint8Array {
  return Buffer.from(s, "utf8");
}
