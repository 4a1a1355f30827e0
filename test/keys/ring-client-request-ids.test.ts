/**
 * Client request ids on the ring, retried through ANOTHER peer (issue 10 must-have 4): three peer
 * cores (openPeerCore) on three real ReplicationNodes in this process (real gRPC with peer mTLS, real
 * LevelDB), one CMK and one project-KEK store shared as the control state shares them. A create-like
 * call retried with the same id through any peer answers the key the first attempt made (one key id,
 * one material), the same id with a different request is INVALID_ARGUMENT as on one peer, and
 * concurrent attempts through all three peers answer one key.
 */
import test from "ava";
import { scopePartition } from "../../cluster/ring/index.js";
import { LockboxError } from "../../src/errors.js";
import { startRingKeyCores } from "../helpers/ring-key-cores.js";
import type { TestNode } from "../replication/replication-nodes.js";
import { serviceOf } from "./key-service-fixture.js";

const SALT = new Uint8Array(32).fill(5);
const POWER = 5;

const RING = { salt: SALT, partitionPower: POWER, dirPrefix: "lockbox-ring-request-ids" };

const owner = serviceOf("svc-owner", "proj");
const create = (name: string, clientRequestId: string, bitLength = 256) => ({
  project: "proj",
  scope: "vol-1",
  name,
  algorithm: "AES" as const,
  bitLength,
  clientRequestId,
});

/** Every replica holds the same bytes for `id`, within a bounded wait (the last copies land after the answer). */
async function converged(nodes: TestNode[], id: string): Promise<boolean> {
  const partition = scopePartition(SALT, "proj", "vol-1", POWER);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const held = await Promise.all(nodes.map((n) => n.node.replica.localRecord(partition, id)));
    if (held.every((h) => h !== undefined && Buffer.from(h).equals(Buffer.from(held[0]!)))) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function errorOf(p: Promise<unknown>): Promise<LockboxError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof LockboxError) return e;
    throw e;
  }
  throw new Error("expected an error");
}

test("CreateKey retried with the same client request id through each other peer answers the first key", async (t) => {
  t.timeout(120_000);
  const { keys: services, nodes } = await startRingKeyCores(t, RING);
  const [a, b, c] = services;
  const first = await a.createKey(owner, create("root", "req-1"));
  const throughB = await b.createKey(owner, create("root", "req-1"));
  const throughC = await c.createKey(owner, create("root", "req-1"));
  t.is(throughB.id, first.id);
  t.is(throughC.id, first.id);
  const material = (await a.getKey(owner, { id: first.id })).material;
  for (const s of services) t.deepEqual((await s.getKey(owner, { id: first.id })).material, material);
  const listed = await c.listKeys(owner, { project: "proj", scope: "vol-1" });
  t.deepEqual(
    listed.keys.map((k) => k.id),
    [first.id],
    "one key for the request in its partition",
  );
  // Every replica converges on the one version (the rivals the retries wrote are gone).
  t.true(await converged(nodes, first.id));
});

test("the same client request id with a different request through another peer is INVALID_ARGUMENT, as on one peer", async (t) => {
  t.timeout(120_000);
  const { keys: services } = await startRingKeyCores(t, RING);
  const [a, b, c] = services;
  const first = await a.createKey(owner, create("root", "req-2"));
  const samePeer = await errorOf(a.createKey(owner, create("root", "req-2", 128)));
  t.is(samePeer.code, "INVALID_ARGUMENT");
  t.is(samePeer.field, "client_request_id");
  for (const [s, request] of [
    [b, create("root", "req-2", 128)],
    [c, create("other-name", "req-2")],
  ] as const) {
    const e = await errorOf(s.createKey(owner, request));
    t.is(e.code, "INVALID_ARGUMENT", e.message);
    t.is(e.field, "client_request_id");
  }
  // The same id for an import of the same names, and a clone of that key in its scope: other methods.
  const imported = await errorOf(
    b.importKey(owner, { ...create("root", "req-2"), material: new Uint8Array(32).fill(1) }),
  );
  t.is(imported.code, "INVALID_ARGUMENT");
  const cloned = await errorOf(c.cloneKey(owner, { id: first.id, clientRequestId: "req-2" }));
  t.is(cloned.code, "INVALID_ARGUMENT");
  // The key itself is untouched, and another identity's same request id is its own request.
  t.is((await c.getKeyMetadata(owner, { id: first.id })).bitLength, 256);
  const otherOwner = serviceOf("svc-other", "proj");
  const theirs = await b.createKey(otherOwner, create("root", "req-2"));
  t.not(theirs.id, first.id);
});

test("ImportKey, CloneKey and RekeyClone retried through another peer answer the first key", async (t) => {
  t.timeout(120_000);
  const { keys: services } = await startRingKeyCores(t, RING);
  const [a, b, c] = services;
  const material = new Uint8Array(32).map((_, i) => i + 7);
  const imported = await a.importKey(owner, { ...create("imp", "req-imp"), material });
  t.is((await b.importKey(owner, { ...create("imp", "req-imp"), material })).id, imported.id);
  const clone = await b.cloneKey(owner, { id: imported.id, name: "snap", clientRequestId: "req-clone" });
  t.is(
    (await c.cloneKey(owner, { id: imported.id, name: "snap", clientRequestId: "req-clone" })).id,
    clone.id,
  );
  const rekeyed = await c.rekeyClone(owner, { id: imported.id, clientRequestId: "req-rekey" });
  t.is((await a.rekeyClone(owner, { id: imported.id, clientRequestId: "req-rekey" })).id, rekeyed.id);
  const fresh = (await b.getKey(owner, { id: rekeyed.id })).material;
  t.notDeepEqual(fresh, material);
  for (const s of services) t.deepEqual((await s.getKey(owner, { id: rekeyed.id })).material, fresh);
});

test("concurrent attempts of one request through all three peers answer one key with one material", async (t) => {
  t.timeout(120_000);
  const { keys: services, nodes } = await startRingKeyCores(t, RING);
  for (let round = 0; round < 5; round++) {
    const requestId = `req-race-${round}`;
    const answers = await Promise.allSettled(
      services.map((s) => s.createKey(owner, create("race", requestId))),
    );
    const ok = answers.flatMap((x) => (x.status === "fulfilled" ? [x.value] : []));
    for (const x of answers) {
      // A settle that could not finish is retryable; it never answers another key.
      if (x.status === "rejected") t.is((x.reason as LockboxError).code, "UNAVAILABLE", String(x.reason));
    }
    t.true(ok.length >= 1, "at least one attempt answered");
    t.true(
      ok.every((k) => k.id === ok[0]!.id),
      "every answered attempt names one key",
    );
    const materials = await Promise.all(services.map((s) => s.getKey(owner, { id: ok[0]!.id })));
    for (const m of materials)
      t.deepEqual(m.material, materials[0]!.material, "one material through every peer");
    t.true(await converged(nodes, ok[0]!.id), "every replica holds the same version");
  }
  const rivals = nodes.reduce((n, x) => n + x.node.coordinator.metrics.rivalRefusals, 0);
  t.true(rivals > 0, "the attempts did meet as rivals on the replicas");
});
