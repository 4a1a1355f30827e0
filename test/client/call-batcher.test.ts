/**
 * The client library's batched calls (call-batcher.ts) against real peers: many concurrent calls
 * through one client are all answered without meeting the peer's in-flight bound; a batched call
 * past its deadline fails DEADLINE_EXCEEDED and the stream goes on; a peer closing fails its
 * stream's calls retryably and the client carries on elsewhere; and a peer without Batch (an
 * older version, stood in by a grpc-js server serving only unary KeyService methods) gets unary
 * calls.
 */
import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LockboxClient, isLockboxClientError } from "../../src/client/index.js";
import type { CertifiedKey } from "../../src/pki/certificate-authority.js";
import { serverProtos } from "../../src/server/proto-definitions.js";
import { type PeerFixture, issue, startEdgeWith, startTestPeer, withHook } from "../server/peer-fixture.js";

const MISSING_ID = "0c4a1f3e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

function clientOf(f: PeerFixture | { address: string; ca: CertifiedKey }, identity: CertifiedKey, more = {}) {
  const address = "peer" in f ? f.peer.address : f.address;
  return new LockboxClient({
    endpoints: [address],
    tls: { ca: f.ca.certificatePem, cert: identity.certificatePem, key: identity.privateKeyPem },
    serverName: "localhost",
    ...more,
  });
}

test("300 concurrent calls through one client are all answered: the batcher keeps the peer's in-flight bound", async (t) => {
  const f = await startTestPeer(t);
  const client = clientOf(f, await issue(f, "vol-host", "service", ["p1"]), { cache: false });
  t.teardown(() => client.close());
  const created = await Promise.all(
    Array.from({ length: 300 }, (_, i) =>
      client.createKey({ project: "p1", scope: `s${i % 7}`, name: `k${i}` }),
    ),
  );
  t.is(new Set(created.map((k) => k.id)).size, 300);
  const fetched = await Promise.all(created.map((k) => client.getKey(k.id)));
  t.true(fetched.every((k, i) => k.key.id === created[i]!.id && k.material.length === 32));
});

test("a batched call past its deadline fails DEADLINE_EXCEEDED; its late answer is dropped and the stream serves the next call (slow key service is a wrapper of the real one)", async (t) => {
  let slow = true;
  const f = await startEdgeWith(t, (real) => ({
    keys: withHook(real.keys, "getKeyMetadata", async () => {
      if (slow) await new Promise((r) => setTimeout(r, 1_000));
    }),
  }));
  const client = clientOf(f, await issue(f, "vol-host", "service", ["p1"]), { attemptsMax: 1 });
  t.teardown(() => client.close());
  const err = await t.throwsAsync(client.getKeyMetadata(MISSING_ID, { deadlineMs: 200 }));
  t.true(isLockboxClientError(err, "DEADLINE_EXCEEDED"), String(err));
  slow = false;
  await new Promise((r) => setTimeout(r, 1_200)); // the late NOT_FOUND arrives and is dropped
  const again = await t.throwsAsync(client.getKeyMetadata(MISSING_ID));
  t.true(isLockboxClientError(again, "NOT_FOUND"), String(again));
});

test("a peer that closes fails its stream's calls in flight retryably: the client's retry goes to the next endpoint", async (t) => {
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  const first = await startEdgeWith(t, (real) => ({
    keys: withHook(real.keys, "getKeyMetadata", async () => {
      entered();
      await new Promise(() => {}); // never answers: only the peer's close ends it
    }),
  }));
  const second = await startTestPeer(t);
  // One CA per fixture: the client trusts the second's; the first is reached through its own.
  const identity = await issue(first, "vol-host", "service", ["p1"]);
  const client = clientOf(first, identity, { attemptsMax: 1 });
  t.teardown(() => client.close());
  const pending = client.getKeyMetadata(MISSING_ID, { deadlineMs: 20_000 });
  await inside;
  await first.peer.close(200);
  const err = await t.throwsAsync(pending);
  t.true(isLockboxClientError(err, "UNAVAILABLE"), `a dropped stream is retryable: ${String(err)}`);
  // A client of both endpoints carries on at the next one (the same idempotent read, retried).
  const both = new LockboxClient({
    endpoints: [first.peer.address, second.peer.address],
    tls: {
      ca: second.ca.certificatePem,
      ...(await issue(second, "vol-host", "service", ["p1"]).then((c) => ({
        cert: c.certificatePem,
        key: c.privateKeyPem,
      }))),
    },
    serverName: "localhost",
  });
  t.teardown(() => both.close());
  const missing = await t.throwsAsync(both.getKeyMetadata(MISSING_ID));
  t.true(isLockboxClientError(missing, "NOT_FOUND"), String(missing));
  t.is((missing as { endpoint?: string }).endpoint, second.peer.address);
});

test("a peer without Batch (an older version, stood in by a grpc-js server serving only unary KeyService methods) gets unary calls", async (t) => {
  const f = await startTestPeer(t);
  const peerKey = { cert: readPem(f, "peer"), key: readPem(f, "peer-key") };
  const protos = serverProtos();
  const unaryOnly = Object.fromEntries(
    Object.entries(protos.keyService).filter(([name]) => name !== "Batch"),
  );
  const server = new grpc.Server();
  let unaryCalls = 0;
  server.addService(unaryOnly, {
    GetKeyMetadata: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
      unaryCalls += 1;
      callback({ code: grpc.status.NOT_FOUND, details: `key ${MISSING_ID} not found` });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createSsl(
        Buffer.from(f.ca.certificatePem),
        [{ cert_chain: Buffer.from(peerKey.cert), private_key: Buffer.from(peerKey.key) }],
        true,
      ),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  t.teardown(() => server.forceShutdown());
  const client = clientOf(
    { address: `127.0.0.1:${port}`, ca: f.ca },
    await issue(f, "vol-host", "service", ["p1"]),
  );
  t.teardown(() => client.close());
  for (let i = 0; i < 3; i++) {
    const err = await t.throwsAsync(client.getKeyMetadata(MISSING_ID));
    t.true(isLockboxClientError(err, "NOT_FOUND"), String(err));
  }
  t.is(unaryCalls, 3, "every call reached the unary method");
});

/** The fixture peer's certificate or key, as `lockbox init` wrote them. */
const readPem = (f: PeerFixture, name: "peer" | "peer-key"): string =>
  readFileSync(join(f.dir, name === "peer" ? "peer.crt" : "peer.key"), "utf8");
