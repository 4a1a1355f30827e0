/**
 * Every key call on the ring (src/keys/key-service.ts with `replication`), each through a different
 * peer: three peer cores (openPeerCore, as serving peers build them) on three real ReplicationNodes in
 * this process (real gRPC with peer mTLS, real LevelDB), one CMK and one project-KEK store shared as
 * the control state shares them. Import, get, metadata, clone, rekey, grants (created through one
 * peer, used through another, revoked through a third), consumers, delete with and without force,
 * listing by project and by scope, and an opaque secret that expires: each answer through any peer is
 * what the single-peer key service answers.
 */
import test from "ava";
import { LockboxError } from "../../src/errors.js";
import { startRingKeyCores } from "../helpers/ring-key-cores.js";
import { serviceOf } from "./key-service-fixture.js";

const SALT = new Uint8Array(32).fill(3);
const POWER = 5;

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (e) {
    if (e instanceof LockboxError) return e.code;
    throw e;
  }
}

test("every key call answers the same through any peer of the ring", async (t) => {
  t.timeout(120_000);
  const { keys, clock } = await startRingKeyCores(t, {
    salt: SALT,
    partitionPower: POWER,
    dirPrefix: "lockbox-keys-on-ring",
  });
  const [a, b, c] = keys;

  const owner = serviceOf("svc-owner", "proj");
  const other = serviceOf("svc-other", "elsewhere");
  const material = new Uint8Array(32).map((_, i) => i + 1);
  const key = await a.importKey(owner, {
    project: "proj",
    scope: "vol-1",
    name: "root",
    algorithm: "AES",
    material,
  });
  t.deepEqual((await b.getKey(owner, { id: key.id })).material, material);
  t.is((await c.getKeyMetadata(owner, { id: key.id })).name, "root");
  t.is(await code(c.getKey(other, { id: key.id })), "NOT_FOUND", "a caller without access sees nothing");

  const clone = await b.cloneKey(owner, { id: key.id, name: "snap" });
  t.is(clone.parentId, key.id);
  t.is(clone.scope, "vol-1");
  t.deepEqual((await c.getKey(owner, { id: clone.id })).material, material);
  const rekeyed = await c.rekeyClone(owner, { id: key.id });
  const fresh = (await a.getKey(owner, { id: rekeyed.id })).material;
  t.is(fresh.length, 32);
  t.notDeepEqual(fresh, material);

  // A grant made through a, used through b, revoked through c.
  const grant = await a.createGrant(owner, {
    keyId: key.id,
    grantee: "svc-other",
    expiresAt: new Date(Date.now() + 3_600_000),
  });
  t.deepEqual((await b.getKey(other, { id: key.id })).material, material);
  const revoked = await c.revokeGrant(owner, { grantId: grant.id });
  t.not(revoked.revokedAt, undefined);
  t.is(await code(a.getKey(other, { id: key.id })), "NOT_FOUND", "a revoked grant is no grant");
  t.is((await b.revokeGrant(owner, { grantId: grant.id })).id, grant.id, "revoking again is idempotent");

  // Consumers: added through a, seen through b, block a plain delete through c.
  const ref = { service: "cinder", resourceType: "volume", resourceId: "vol/1" };
  t.true((await a.addConsumer(owner, { keyId: key.id, ...ref })).changed);
  t.false((await b.addConsumer(owner, { keyId: key.id, ...ref })).changed);
  t.deepEqual(
    (await b.listConsumers(owner, { keyId: key.id })).consumers.map((x) => x.resourceId),
    ["vol/1"],
  );
  t.is(await code(c.deleteKey(owner, { id: key.id })), "FAILED_PRECONDITION");
  t.true((await b.removeConsumer(owner, { keyId: key.id, ...ref })).changed);
  const deleted = await c.deleteKey(owner, { id: key.id });
  t.is(deleted.state, "destroyed");
  t.is(await code(a.getKey(owner, { id: key.id })), "FAILED_PRECONDITION", "destroyed: no material");
  t.is((await b.getKeyMetadata(owner, { id: key.id })).state, "destroyed");
  t.is((await a.deleteKey(owner, { id: key.id })).state, "destroyed", "deleting again is idempotent");
  // A forced delete removes the consumers with the key.
  await a.addConsumer(owner, { keyId: clone.id, ...ref });
  t.is((await b.deleteKey(owner, { id: clone.id, force: true })).state, "destroyed");
  t.deepEqual((await c.listConsumers(owner, { keyId: clone.id })).consumers, []);

  // An opaque secret with no declared length, and one that expires.
  const secret = await b.importKey(owner, {
    project: "proj",
    scope: "vol-2",
    name: "passphrase",
    secretType: "passphrase",
    algorithm: "",
    material: new TextEncoder().encode("correct horse"),
  });
  t.is(new TextDecoder().decode((await c.getKey(owner, { id: secret.id })).material), "correct horse");
  t.is((await a.getKeyMetadata(owner, { id: secret.id })).secretType, "passphrase");
  const expiring = await c.createKey(owner, {
    project: "proj",
    scope: "vol-3",
    name: "short-lived",
    algorithm: "AES",
    bitLength: 128,
    expiresAt: new Date(clock.nowMs + 3_600_000),
  });
  t.is((await a.getKey(owner, { id: expiring.id })).material.length, 16);
  t.is((await b.listKeys(owner, { project: "proj", scope: "vol-3" })).keys.length, 1);
  clock.advance(2 * 3_600_000);
  t.is(await code(a.getKey(owner, { id: expiring.id })), "NOT_FOUND", "past its expiration: not served");
  t.is((await b.listKeys(owner, { project: "proj", scope: "vol-3" })).keys.length, 0);

  // Listing through every peer: tombstones included; by scope, only that scope.
  for (const svc of [a, b, c]) {
    const all = [];
    let pageToken = "";
    do {
      const page = await svc.listKeys(owner, { project: "proj", pageSize: 2, pageToken });
      all.push(...page.keys);
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    t.deepEqual(all.map((k) => k.id).sort(), [key.id, clone.id, rekeyed.id, secret.id].sort());
    const scoped = await svc.listKeys(owner, { project: "proj", scope: "vol-2" });
    t.deepEqual(
      scoped.keys.map((k) => k.id),
      [secret.id],
    );
  }
  t.is(await code(a.listKeys(other, { project: "proj" })), "PERMISSION_DENIED");
});
