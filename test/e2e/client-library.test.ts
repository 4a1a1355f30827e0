/**
 * LockboxClient against a real peer: failover past a dead endpoint, bounded
 * retries, per-call deadlines, typed errors, and the key cache (hits do not
 * reach the peer, DeleteKey evicts, bypassCache asks again).
 */
import test from "ava";
import { createServer } from "node:net";

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
