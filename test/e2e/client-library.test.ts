/**
 * LockboxClient against a real peer: failover past a dead endpoint, bounded
 * retries, per-call deadlines, typed errors, the key cache (hits do not
 * reach the peer, DeleteKey evicts, bypassCache asks again), and client
 * request ids (a create whose answer was lost is retried without making a
 * second key, also across a peer killed with SIGKILL), consumers and the
 * new key model over gRPC.
 */
import test from "ava";
import { connect, createServer, type Socket } from "node:net";

import { LockboxClient, isLockboxClientError } from "../../src/client/index.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

let peer: PeerProcess;

test.before(async () => {
  peer = await spawnPeer();
});

test.after.always(async () => {
  await peer?.teardown();
});

/** A loopback address where nothing listens: bound once by us, then released. */
async function deadAddress(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

const tlsOf = (p: PeerProcess) => ({ ca: p.admin.ca, cert: p.admin.cert, key: p.admin.key });

test("a dead first endpoint is skipped: the call succeeds on the next one", async (t) => {
  const client = new LockboxClient({ endpoints: [await deadAddress(), peer.address], tls: tlsOf(peer) });
  t.teardown(() => client.close());
  const key = await client.createKey({ project: "fo", scope: "s", name: "n" });
  t.is((await client.getKeyMetadata(key.id)).id, key.id);
});

test("with every endpoint dead the call fails UNAVAILABLE after its bounded attempts", async (t) => {
  const endpoints = [await deadAddress(), await deadAddress()];
  const client = new LockboxClient({ endpoints, tls: tlsOf(peer), attemptsMax: 4, backoffInitialMs: 10 });
  t.teardown(() => client.close());
  const err = await t.throwsAsync(client.getStatus());
  t.true(isLockboxClientError(err, "UNAVAILABLE"), String(err));
  t.true(isLockboxClientError(err) && endpoints.includes(err.endpoint!));
});

test("a per-call deadline that cannot be met is DEADLINE_EXCEEDED", async (t) => {
  // A listener that accepts TCP and never speaks TLS: the call can only time out.
  const sockets = new Set<import("node:net").Socket>();
  const silent = createServer((socket) => void sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const address = `127.0.0.1:${(silent.address() as { port: number }).port}`;
  const client = new LockboxClient({ endpoints: [address], tls: tlsOf(peer), attemptsMax: 1 });
  t.teardown(() => client.close());
  const err = await t.throwsAsync(client.getStatus({ deadlineMs: 300 }));
  t.true(isLockboxClientError(err, "DEADLINE_EXCEEDED"), String(err));
});

test("peer errors arrive typed: status name, and the field for INVALID_ARGUMENT", async (t) => {
  const client = peer.client();
  const bad = await t.throwsAsync(client.createKey({ project: "p", scope: "s", name: "n", bitLength: 100 }));
  t.true(isLockboxClientError(bad, "INVALID_ARGUMENT"), String(bad));
  t.is(isLockboxClientError(bad) ? bad.field : undefined, "bit_length");
  const missing = await t.throwsAsync(client.getKey(crypto.randomUUID()));
  t.true(isLockboxClientError(missing, "NOT_FOUND"), String(missing));
  t.is(isLockboxClientError(missing) ? missing.grpcCode : -1, 5);
});

test("a cached key is served without asking the peer; bypassCache asks again", async (t) => {
  const client = peer.client(peer.admin, { cache: { entriesMax: 10, ageMaxMs: 60_000 } });
  const key = await client.createKey({ project: "cache", scope: "s", name: "n" });
  const first = await client.getKey(key.id);
  const second = await client.getKey(key.id);
  t.deepEqual(second.material, first.material);
  t.not(second.material, first.material); // each caller gets its own copy
  t.is(client.cachedKeyCount, 1);
  t.is(await getKeyEvents(key.id), 1);
  await client.getKey(key.id, { bypassCache: true });
  t.is(await getKeyEvents(key.id), 2);
});

test("DeleteKey through the client evicts the key from its cache", async (t) => {
  const client = peer.client(peer.admin, { cache: { entriesMax: 10, ageMaxMs: 60_000 } });
  const key = await client.createKey({ project: "cache", scope: "s", name: "gone" });
  await client.getKey(key.id);
  t.is(client.cachedKeyCount, 1);
  await client.deleteKey(key.id);
  t.is(client.cachedKeyCount, 0);
  const err = await t.throwsAsync(client.getKey(key.id));
  t.true(isLockboxClientError(err) && ["FAILED_PRECONDITION", "NOT_FOUND"].includes(err.code), String(err));
});

test("a client and its cache never show key material when logged or serialised", async (t) => {
  const client = peer.client(peer.admin, { cache: { entriesMax: 10, ageMaxMs: 60_000 } });
  const key = await client.createKey({ project: "cache", scope: "s", name: "secret" });
  const { material } = await client.getKey(key.id);
  const { inspect } = await import("node:util");
  const shown = JSON.stringify(client) + inspect(client, { depth: 10, showHidden: true });
  t.false(shown.includes(material.toString("hex")));
  t.false(shown.includes(material.toString("base64")));
});

async function getKeyEvents(keyId: string): Promise<number> {
  const audit = peer.client(peer.admin, { cache: false });
  const page = await audit.listAuditEvents({ keyId, pageSize: 1000 });
  return page.items.filter((e) => e.operation === "GetKey").length;
}

/**
 * A TCP proxy to `target` whose answers can be muted: with `mute` set, bytes from the peer are
 * dropped, so a request still arrives and runs but its answer never comes back (a lost reply).
 */
async function muteableProxy(target: string): Promise<{ address: string; mute(): void; close(): void }> {
  const [host, port] = [
    target.slice(0, target.lastIndexOf(":")),
    Number(target.slice(target.lastIndexOf(":") + 1)),
  ];
  let muted = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, host);
    sockets.add(client).add(upstream);
    client.on("data", (b) => upstream.write(b));
    upstream.on("data", (b) => {
      if (!muted) client.write(b);
    });
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on("error", () => b.destroy());
      a.on("close", () => b.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    mute: () => void (muted = true),
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

test("a create whose answer is lost is retried after DEADLINE_EXCEEDED with the same client request id: one key, the first one", async (t) => {
  const proxy = await muteableProxy(peer.address);
  t.teardown(() => proxy.close());
  const client = new LockboxClient({
    endpoints: [proxy.address, peer.address],
    tls: tlsOf(peer),
    // Long enough for a loaded peer to run the first attempt before the client gives up on it.
    deadlineMs: 6000,
    attemptsMax: 2,
    cache: false,
  });
  t.teardown(() => client.close());
  await client.getStatus(); // the channel through the proxy is up; now its answers are lost
  proxy.mute();
  const key = await client.createKey({ project: "lost-reply", scope: "s", name: "n", bitLength: 512 });
  const clone = await client.cloneKey(key.id, "snap");
  const all = await peer.client(peer.admin, { cache: false }).listAllKeys({ project: "lost-reply" });
  t.deepEqual(all.map((k) => k.id).sort(), [key.id, clone.id].sort(), "each call made exactly one key");
  // The first attempt did run (this test is about a lost answer, not a lost request): both
  // attempts are audited as CreateKey OK for the same key.
  const audit = await peer
    .client(peer.admin, { cache: false })
    .listAuditEvents({ keyId: key.id, pageSize: 100 });
  t.is(audit.items.filter((e) => e.operation === "CreateKey" && e.outcome === "OK").length, 2);
});

test("a client request id outlives a peer killed with SIGKILL: the retry returns the first key; another request under it is INVALID_ARGUMENT", async (t) => {
  const p = await spawnPeer();
  t.teardown(() => p.teardown());
  const input = { project: "restart", scope: "vol-1", name: "root", bitLength: 256 };
  const first = await p
    .client(p.admin, { cache: false })
    .createKey(input, { clientRequestId: "create-vol-1" });
  await p.kill("SIGKILL");
  await p.restart();
  const client = p.client(p.admin, { cache: false });
  t.deepEqual(await client.createKey(input, { clientRequestId: "create-vol-1" }), first);
  const other = await t.throwsAsync(
    client.createKey({ ...input, name: "other" }, { clientRequestId: "create-vol-1" }),
  );
  t.true(isLockboxClientError(other, "INVALID_ARGUMENT"), String(other));
  t.is(isLockboxClientError(other) ? other.field : undefined, "client_request_id");
  t.is((await client.listAllKeys({ project: "restart" })).length, 1);
});

test("the key model over gRPC: 192/512-bit keys, passphrase secrets, expiration, consumers and delete protection", async (t) => {
  const client = peer.client(peer.admin, { cache: false });
  const xts = await client.createKey({ project: "model", scope: "vol-9", name: "xts", bitLength: 512 });
  t.like(xts, { secretType: "SYMMETRIC", algorithm: "AES", bitLength: 512, state: "ACTIVE" });
  t.deepEqual(xts.updatedAt, xts.createdAt);
  t.is((await client.getKey(xts.id)).material.length, 64);
  t.is(
    (
      await client.getKey(
        (await client.createKey({ project: "model", scope: "s", name: "n", bitLength: 192 })).id,
      )
    ).material.length,
    24,
  );
  const expiresAt = new Date(Date.now() + 3_600_000);
  const passphrase = Buffer.from("vtpm passphrase for instance 42");
  const secret = await client.importKey({
    project: "model",
    scope: "instance-42",
    name: "vtpm",
    secretType: "passphrase",
    material: passphrase,
    expiresAt,
  });
  t.like(secret, { secretType: "PASSPHRASE", algorithm: "UNSPECIFIED", bitLength: 0 });
  t.is(secret.expiresAt?.getTime(), expiresAt.getTime());
  t.deepEqual((await client.getKey(secret.id)).material, passphrase);
  const consumer = { service: "cinder", resourceType: "volume", resourceId: "vol-9" };
  const added = await client.addConsumer(xts.id, consumer);
  t.true(added.changed);
  t.deepEqual(
    added.consumers.map(({ service, resourceType, resourceId }) => ({ service, resourceType, resourceId })),
    [consumer],
  );
  t.false((await client.addConsumer(xts.id, consumer)).changed);
  t.is((await client.listConsumers(xts.id)).length, 1);
  const refused = await t.throwsAsync(client.deleteKey(xts.id));
  t.true(isLockboxClientError(refused, "FAILED_PRECONDITION"), String(refused));
  t.is((await client.getKeyMetadata(xts.id)).state, "ACTIVE");
  t.is((await client.deleteKey(xts.id, { force: true })).state, "DESTROYED");
  t.deepEqual(await client.listConsumers(xts.id), []);
});
