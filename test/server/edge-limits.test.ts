/**
 * The edge's bounds (edge-limits.ts) against a real server over real
 * sockets, each limit lowered so a test can reach it: calls in flight per
 * identity, per-method request size, connections without a certificate per
 * address and their lifetime, connections per identity, and the TLS
 * handshake time.
 */
import * as grpc from "@grpc/grpc-js";
import test from "ava";
import * as net from "node:net";
import * as tls from "node:tls";
import type { CertifiedKey } from "../../src/pki/certificate-authority.js";
import {
  call,
  clientsFor,
  failure,
  issue,
  startEdgeWith,
  startGatedEdge,
  type PeerFixture,
} from "./peer-fixture.js";

test("an identity with callsInFlightPerIdentityMax calls in flight gets RESOURCE_EXHAUSTED at once; others are not held up (slow key service is a wrapper of the real one)", async (t) => {
  const { f, entered, release } = await startGatedEdge(t, { callsInFlightPerIdentityMax: 3 });
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  const admin = clientsFor(t, f, f.admin);
  const created = await call(svc.keys, "CreateKey", {
    project: "p1",
    scope: "s",
    name: "n",
    algorithm: "KEY_ALGORITHM_AES",
    bit_length: 256,
  });
  if (!created.ok) return t.fail(created.error.message);
  const id = created.value.key.id as string;
  const calls = Array.from({ length: 5 }, () => call(svc.keys, "GetKeyMetadata", { id }));
  const refused = await Promise.all(calls.slice(3));
  for (const r of refused) {
    t.false(r.ok);
    if (!r.ok) {
      t.is(r.error.code, grpc.status.RESOURCE_EXHAUSTED);
      t.regex(r.error.details, /vol-host has 3 calls in flight/);
    }
  }
  t.is(entered(), 3);
  // Another identity is admitted meanwhile.
  const listed = await call(admin.keys, "ListKeys", { project: "p1" });
  t.true(listed.ok);
  release();
  for (const r of await Promise.all(calls.slice(0, 3))) t.true(r.ok);
  t.true((await call(svc.keys, "GetKeyMetadata", { id })).ok, "the slots are free again");
});

test("a request over its method's size limit is RESOURCE_EXHAUSTED naming the limit, before decoding; one over the largest limit is refused by its announced length", async (t) => {
  const f = await startEdgeWith(t, () => ({}));
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  const big = await failure(t, call(svc.keys, "GetKey", { id: "x".repeat(2000) }));
  t.is(big.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(big.details, /^request: is 200\d bytes; GetKey accepts at most 1024/);
  const huge = await failure(t, call(svc.keys, "GetKey", { id: "x".repeat(10_000) }));
  t.is(huge.code, grpc.status.RESOURCE_EXHAUSTED);
});

test("connections without a certificate: at most unauthenticatedConnectionsPerSourceMax per address, each closed after its lifetime; authenticated ones unaffected", async (t) => {
  const f = await startEdgeWith(t, () => ({
    limits: { unauthenticatedConnectionsPerSourceMax: 2, unauthenticatedConnectionLifetimeMs: 1_500 },
  }));
  const anonymous = await Promise.all([0, 1, 2].map(() => connectTls(t, f, null)));
  const closed = await Promise.all(anonymous.map((c) => closedWithin(c, 500)));
  t.deepEqual(
    closed.filter((c) => c).length,
    1,
    "exactly one of three connections without a certificate is closed at once",
  );
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  t.true((await call(svc.keys, "ListKeys", { project: "p1" })).ok);
  const authenticated = await connectTls(t, f, await issue(f, "other", "service", ["p1"]));
  // The two kept ones go after their lifetime; the authenticated one stays.
  t.true((await Promise.all(anonymous.map((c) => closedWithin(c, 3_000)))).every((c) => c));
  t.false(authenticated.destroyed || authenticated.closed);
});

test("a source refused more than refusalsPerSourcePerSecondMax calls in a second cools down: its unauthenticated connections are closed and refused; authenticated calls go on", async (t) => {
  const f = await startEdgeWith(t, () => ({
    limits: { refusalsPerSourcePerSecondMax: 5, refusalCooldownMs: 1_500 },
  }));
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  t.true((await call(svc.keys, "ListKeys", { project: "p1" })).ok);
  const anonymous = clientsFor(t, f, null);
  const codes: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await call(anonymous.keys, "ListKeys", { project: "p1" });
    codes.push(r.ok ? grpc.status.OK : r.error.code);
  }
  const unauthenticated = codes.filter((c) => c === grpc.status.UNAUTHENTICATED).length;
  t.true(unauthenticated >= 5 && unauthenticated <= 7, `codes ${codes.join(",")}`);
  t.is(codes.at(-1), grpc.status.UNAVAILABLE, "cooling down: refused at connect");
  t.true((await call(svc.keys, "ListKeys", { project: "p1" })).ok, "the authenticated client goes on");
  // After the cooldown (and the client's own reconnect backoff), a friendly answer again.
  let after = grpc.status.UNAVAILABLE;
  for (let i = 0; i < 40 && after !== grpc.status.UNAUTHENTICATED; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const r = await call(anonymous.keys, "ListKeys", { project: "p1" });
    after = r.ok ? grpc.status.OK : r.error.code;
  }
  t.is(after, grpc.status.UNAUTHENTICATED);
});

test("a call whose headers exceed headerListBytesMax is refused; ordinary metadata passes", async (t) => {
  const f = await startEdgeWith(t, () => ({ limits: { headerListBytesMax: 4096 } }));
  const svc = clientsFor(t, f, await issue(f, "vol-host", "service", ["p1"]));
  const withMetadata = (bytes: number) =>
    new Promise<number>((resolve) => {
      const metadata = new grpc.Metadata();
      metadata.set("x-pad", "a".repeat(bytes));
      (svc.keys as unknown as grpc.Client).makeUnaryRequest(
        "/lockbox.v1.KeyService/ListKeys",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0x02, 0x70, 0x31]), // project "p1"
        metadata,
        { deadline: Date.now() + 5_000 },
        (err) => resolve(err === null ? grpc.status.OK : err.code),
      );
    });
  t.is(await withMetadata(100), grpc.status.OK);
  t.not(await withMetadata(20_000), grpc.status.OK, "20 KB of metadata is refused");
  t.is(await withMetadata(100), grpc.status.OK, "and the client can go on");
});

test("an identity may hold connectionsPerIdentityMax connections", async (t) => {
  const f = await startEdgeWith(t, () => ({ limits: { connectionsPerIdentityMax: 1 } }));
  const id = await issue(f, "vol-host", "service", ["p1"]);
  const first = await connectTls(t, f, id);
  const second = await connectTls(t, f, id);
  t.true(await closedWithin(second, 1_000), "the second connection of the identity is closed");
  t.false(await closedWithin(first, 200));
});

test("a client that does not finish the TLS handshake is cut off after handshakeTimeoutMs", async (t) => {
  const f = await startEdgeWith(t, () => ({ limits: { handshakeTimeoutMs: 300 } }));
  const socket = net.connect(f.peer.port, "127.0.0.1");
  t.teardown(() => socket.destroy());
  socket.on("error", () => {});
  await new Promise((r) => socket.once("connect", r));
  const started = Date.now();
  t.true(await closedWithin(socket, 3_000), "closed");
  t.true(Date.now() - started >= 250, `closed after ${Date.now() - started} ms`);
});

/** The real key service, with `pause` run before each GetKeyMetadata. */

async function connectTls(
  t: { teardown(fn: () => void): void },
  f: PeerFixture,
  identity: CertifiedKey | null,
): Promise<tls.TLSSocket> {
  const socket = tls.connect({
    host: "127.0.0.1",
    port: f.peer.port,
    servername: "localhost",
    ca: f.ca.certificatePem,
    ALPNProtocols: ["h2"],
    ...(identity === null ? {} : { cert: identity.certificatePem, key: identity.privateKeyPem }),
  });
  t.teardown(() => socket.destroy());
  socket.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    // Read (and drop) what the server sends, so that its closing the connection is seen.
    socket.once("secureConnect", () => resolve(void socket.resume()));
    socket.once("close", () => reject(new Error("closed before the handshake completed")));
  });
  return socket;
}

function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.destroyed || socket.closed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
