/**
 * KeyService.Batch (key-call-batch.ts) against a real peer over real sockets, driven by a raw
 * grpc-js stream so that each test chooses the bytes: a call in a batch gets its unary call's
 * answer and audit line; what the stream refuses (unknown method, tag in use, too many calls,
 * undecodable bytes, a request over its method's limit, no client certificate) changes nothing
 * else; the identity's in-flight bound holds inside a stream; and a client that stops reading
 * replies stops the peer reading its calls.
 */
import * as grpc from "@grpc/grpc-js";
import test, { type ExecutionContext } from "ava";
import type { CertifiedKey } from "../../src/pki/certificate-authority.js";
import { CALLS_PER_BATCH_MAX } from "../../src/server/key-call-batch.js";
import { serverProtos } from "../../src/server/proto-definitions.js";
import {
  type PeerFixture,
  call,
  clientsFor,
  credentialsFor,
  issue,
  startEdgeWith,
  startGatedEdge,
  startTestPeer,
  withHook,
} from "./peer-fixture.js";

interface Reply {
  tag: string;
  code: number;
  message: string;
  field: string;
  response: Buffer;
}

interface WireCall {
  tag: number;
  method: string;
  request: Buffer;
}

const methods = serverProtos().keyService;
const encode = (method: string, request: object): Buffer => methods[method]!.requestSerialize(request);
const decode = <T>(method: string, bytes: Buffer): T => methods[method]!.responseDeserialize(bytes) as T;
const MISSING_ID = "0c4a1f3e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

/** A raw Batch stream presenting `identity` (null: no client certificate). */
function openBatch(t: ExecutionContext, f: PeerFixture, identity: CertifiedKey | null) {
  const client = new grpc.Client(f.peer.address, credentialsFor(f, identity), {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": "localhost",
  });
  t.teardown(() => client.close());
  const batch = methods.Batch!;
  const stream = client.makeBidiStreamRequest(
    batch.path,
    (v: Buffer | { calls: WireCall[] }) => (Buffer.isBuffer(v) ? v : batch.requestSerialize(v)),
    (b: Buffer) => batch.responseDeserialize(b) as { replies: Reply[] },
    new grpc.Metadata(),
    {},
  );
  const replies = new Map<string, Reply>();
  let waiters: (() => void)[] = [];
  stream.on("data", (m: { replies: Reply[] }) => {
    for (const r of m.replies) replies.set(r.tag, r);
    const w = waiters;
    waiters = [];
    w.forEach((f) => f());
  });
  const status = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
  stream.on("error", () => {}); // the status promise reports it
  const reply = async (tag: number): Promise<Reply> => {
    const deadline = Date.now() + 20_000;
    while (!replies.has(String(tag))) {
      if (Date.now() > deadline) throw new Error(`no reply for tag ${tag}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
    return replies.get(String(tag))!;
  };
  return {
    stream,
    replies,
    status,
    reply,
    send: (calls: WireCall[]) => stream.write({ calls }),
    sendRaw: (bytes: Buffer) => stream.write(bytes),
  };
}

const createRequest = (bitLength = 256) => ({
  project: "p1",
  scope: "s",
  name: "n",
  algorithm: "KEY_ALGORITHM_AES",
  bit_length: bitLength,
});

test("calls in one Batch message get their unary calls' answers by tag, and each is audited as its method", async (t) => {
  const f = await startTestPeer(t);
  const identity = await issue(f, "vol-host", "service", ["p1"]);
  const b = openBatch(t, f, identity);
  b.send([
    { tag: 1, method: "CreateKey", request: encode("CreateKey", createRequest()) },
    { tag: 2, method: "GetKey", request: encode("GetKey", { id: MISSING_ID }) },
    { tag: 3, method: "CreateKey", request: encode("CreateKey", createRequest(100)) },
  ]);
  const created = await b.reply(1);
  t.is(created.code, grpc.status.OK);
  const id = decode<{ key: { id: string } }>("CreateKey", created.response).key.id;
  const missing = await b.reply(2);
  t.is(missing.code, grpc.status.NOT_FOUND);
  t.regex(missing.message, new RegExp(MISSING_ID));
  const bad = await b.reply(3);
  t.is(bad.code, grpc.status.INVALID_ARGUMENT);
  t.is(bad.field, "bit_length", "the field at fault, as the unary call's lockbox-field trailer names it");
  t.is(bad.response.length, 0);

  b.send([{ tag: 4, method: "GetKey", request: encode("GetKey", { id }) }]);
  const got = await b.reply(4);
  t.is(got.code, grpc.status.OK);
  const batched = decode<{ material: Buffer }>("GetKey", got.response).material;
  const unary = await call(clientsFor(t, f, identity).keys, "GetKey", { id });
  if (!unary.ok) return t.fail(unary.error.message);
  t.is(batched.length, 32);
  t.true(
    Buffer.compare(batched, unary.value.material as Buffer) === 0,
    "the same material as the unary GetKey",
  );

  const audit = await call(clientsFor(t, f, f.admin).admin, "ListAuditEvents", { identity: "vol-host" });
  if (!audit.ok) return t.fail(audit.error.message);
  const lines = (audit.value.events as { operation: string; status: string; key_id: string }[]).map(
    (e) => `${e.operation} ${e.status}`,
  );
  t.deepEqual(
    lines.filter((l) => /^(CreateKey|GetKey) /.test(l)).sort(),
    ["CreateKey INVALID_ARGUMENT", "CreateKey OK", "GetKey NOT_FOUND", "GetKey OK", "GetKey OK"].sort(),
  );
});

test("a Batch stream refuses an unknown method and requests that are too large or undecodable, call by call; the stream goes on", async (t) => {
  const f = await startTestPeer(t);
  const identity = await issue(f, "vol-host", "service", ["p1"]);
  const b = openBatch(t, f, identity);
  b.send([
    { tag: 1, method: "DropAllKeys", request: Buffer.alloc(0) },
    { tag: 2, method: "Batch", request: Buffer.alloc(0) },
    { tag: 4, method: "GetKey", request: encode("GetKey", { id: "x".repeat(2000) }) },
    { tag: 5, method: "GetKey", request: Buffer.from([0x0a, 0xff, 0xff, 0xff]) },
  ]);
  for (const tag of [1, 2]) {
    const r = await b.reply(tag);
    t.is(r.code, grpc.status.UNIMPLEMENTED);
    t.is(r.field, "method");
  }
  const big = await b.reply(4);
  t.is(big.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(big.message, /GetKey accepts at most 1024/);
  const garbage = await b.reply(5);
  t.is(garbage.code, grpc.status.INVALID_ARGUMENT);
  b.send([{ tag: 6, method: "ListKeys", request: encode("ListKeys", { project: "p1" }) }]);
  t.is((await b.reply(6)).code, grpc.status.OK, "the stream still serves");
});

test("a tag in use is refused INVALID_ARGUMENT naming the tag (the first call still answered)", async (t) => {
  const { f, release } = await startGatedEdge(t);
  const b = openBatch(t, f, await issue(f, "vol-host", "service", ["p1"]));
  const request = encode("GetKeyMetadata", { id: MISSING_ID });
  b.send([{ tag: 9, method: "GetKeyMetadata", request }]);
  await new Promise((r) => setTimeout(r, 200));
  b.send([{ tag: 9, method: "GetKeyMetadata", request }]);
  const twin = await b.reply(9);
  t.is(twin.code, grpc.status.INVALID_ARGUMENT);
  t.is(twin.field, "tag");
  t.regex(twin.message, /tag 9 is in use/);
  b.replies.clear();
  release();
  t.is((await b.reply(9)).code, grpc.status.NOT_FOUND, "the first call with tag 9 is answered");
});

test("a Batch message of more than CALLS_PER_BATCH_MAX calls, or of bytes that are no CallBatch, ends the stream before any call runs", async (t) => {
  const f = await startTestPeer(t);
  const identity = await issue(f, "vol-host", "service", ["p1"]);
  const many = openBatch(t, f, identity);
  const create = encode("CreateKey", createRequest());
  many.send(
    Array.from({ length: CALLS_PER_BATCH_MAX + 1 }, (_, i) => ({
      tag: i + 1,
      method: "CreateKey",
      request: create,
    })),
  );
  const status = await many.status;
  t.is(status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(status.details, /at most 256/);
  const garbage = openBatch(t, f, identity);
  garbage.sendRaw(Buffer.from([0x0a, 0x05, 0x08, 0x01, 0x12]));
  t.is((await garbage.status).code, grpc.status.INVALID_ARGUMENT);
  const listed = await call(clientsFor(t, f, identity).keys, "ListKeys", { project: "p1" });
  if (!listed.ok) return t.fail(listed.error.message);
  t.deepEqual(listed.value.keys, [], "no call of a refused message ran");
});

test("a Batch stream without a client certificate is refused UNAUTHENTICATED at its headers", async (t) => {
  const f = await startTestPeer(t);
  const b = openBatch(t, f, null);
  b.send([{ tag: 1, method: "CreateKey", request: encode("CreateKey", createRequest()) }]);
  const status = await b.status;
  t.is(status.code, grpc.status.UNAUTHENTICATED);
  t.is(b.replies.size, 0);
});

test("calls in a Batch stream take their identity's in-flight slots: beyond the bound they are RESOURCE_EXHAUSTED (slow key service is a wrapper of the real one)", async (t) => {
  const { f, entered, release } = await startGatedEdge(t, { callsInFlightPerIdentityMax: 3 });
  const b = openBatch(t, f, await issue(f, "vol-host", "service", ["p1"]));
  const request = encode("GetKeyMetadata", { id: MISSING_ID });
  b.send(Array.from({ length: 5 }, (_, i) => ({ tag: i + 1, method: "GetKeyMetadata", request })));
  for (const tag of [4, 5]) {
    const r = await b.reply(tag);
    t.is(r.code, grpc.status.RESOURCE_EXHAUSTED);
    t.regex(r.message, /vol-host has 3 calls in flight/);
  }
  t.is(entered(), 3);
  release();
  for (const tag of [1, 2, 3]) t.is((await b.reply(tag)).code, grpc.status.NOT_FOUND);
  b.send([{ tag: 6, method: "GetKeyMetadata", request }]);
  t.is((await b.reply(6)).code, grpc.status.NOT_FOUND, "the slots are free again");
});

test("a client that stops reading replies stops the peer reading its calls; once it reads, every call is answered", async (t) => {
  let handled = 0;
  const f = await startEdgeWith(t, (real) => ({
    keys: withHook(real.keys, "getKeyMetadata", async () => {
      handled += 1;
    }),
    // No in-flight refusals: every call read is run, so `handled` counts the calls the peer read.
    limits: { callsInFlightPerIdentityMax: 1_000_000 },
  }));
  const b = openBatch(t, f, await issue(f, "vol-host", "service", ["p1"]));
  b.stream.pause();
  const request = encode("GetKeyMetadata", { id: MISSING_ID });
  const messages = 120;
  const total = messages * CALLS_PER_BATCH_MAX;
  for (let m = 0; m < messages; m++) {
    b.send(
      Array.from({ length: CALLS_PER_BATCH_MAX }, (_, i) => ({
        tag: m * CALLS_PER_BATCH_MAX + i + 1,
        method: "GetKeyMetadata",
        request,
      })),
    );
  }
  // Wait until the peer stops taking calls (no change for a second), bounded.
  let last = -1;
  for (let i = 0; i < 60 && handled !== last; i++) {
    last = handled;
    await new Promise((r) => setTimeout(r, 1000));
  }
  t.log(`calls handled while the client read nothing: ${handled} of ${total}`);
  t.true(handled < total / 2, `the peer stopped reading: ${handled} of ${total} calls handled`);
  b.stream.resume();
  const deadline = Date.now() + 60_000;
  while (b.replies.size < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  t.is(b.replies.size, total, "every call answered once the client reads");
});
