/**
 * Grants between identities of different projects: without a grant a key of
 * another project is NOT_FOUND; with one it can be fetched until the deadline
 * and not after; a revoke ends it early.
 */
import test from "ava";
import { setTimeout as sleep } from "node:timers/promises";

import { isLockboxClientError, type LockboxClient } from "../../src/client/index.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

let peer: PeerProcess;
let owner: LockboxClient;
let grantee: LockboxClient;

test.before(async () => {
  peer = await spawnPeer();
  const volumeHost = await peer.issueIdentity("volume-host-1", "service", ["volumes"]);
  const computeHost = await peer.issueIdentity("compute-host-2", "service", ["images"]);
  // Caches off: every fetch must be the peer's decision at that moment.
  owner = peer.client(volumeHost, { cache: false });
  grantee = peer.client(computeHost, { cache: false });
});

test.after.always(async () => {
  await peer?.teardown();
});

async function refusedAsMissing(
  t: import("ava").ExecutionContext,
  p: Promise<unknown>,
  what: string,
): Promise<void> {
  const err = await t.throwsAsync(p, undefined, what);
  t.true(isLockboxClientError(err, "NOT_FOUND"), `${what}: expected NOT_FOUND, got ${String(err)}`);
}

test("without a grant another project's key is NOT_FOUND, exactly like a missing key", async (t) => {
  const key = await owner.createKey({ project: "volumes", scope: "vol-1", name: "disk" });
  await refusedAsMissing(t, grantee.getKey(key.id), "GetKey");
  await refusedAsMissing(t, grantee.getKeyMetadata(key.id), "GetKeyMetadata");
  await refusedAsMissing(t, grantee.cloneKey(key.id), "CloneKey");
  await refusedAsMissing(
    t,
    grantee.getKey("0b6f2d1e-8a3c-4e5f-9d7b-1c2a3e4f5a6b"),
    "GetKey of a missing key",
  );
  const err = await t.throwsAsync(grantee.createKey({ project: "volumes", scope: "vol-x", name: "disk" }));
  t.true(isLockboxClientError(err) && ["PERMISSION_DENIED", "NOT_FOUND"].includes(err.code), String(err));
});

test("a grant lets the grantee fetch the key until its deadline, and not after", async (t) => {
  const key = await owner.createKey({ project: "volumes", scope: "vol-2", name: "disk" });
  const other = await owner.createKey({ project: "volumes", scope: "vol-2", name: "disk" });
  const material = (await owner.getKey(key.id)).material;
  // Short, yet long enough that the calls before the deadline finish in time on a loaded machine.
  const expiresAt = new Date(Date.now() + 5000);
  const grant = await owner.createGrant({ keyId: key.id, grantee: "compute-host-2", expiresAt });
  t.like(grant, { keyId: key.id, grantee: "compute-host-2", grantedBy: "volume-host-1" });

  const fetched = await grantee.getKey(key.id);
  t.deepEqual(fetched.material, material);
  t.is(fetched.key.id, key.id);
  // The grant covers that one key, and only GetKey.
  await refusedAsMissing(t, grantee.getKey(other.id), "GetKey of an ungranted key of the same project");
  await refusedAsMissing(t, grantee.deleteKey(key.id), "DeleteKey by the grantee");

  // Wait past the deadline (bounded: at most 5 s plus a margin for clock granularity).
  await sleep(Math.max(0, expiresAt.getTime() - Date.now()) + 300);
  await refusedAsMissing(t, grantee.getKey(key.id), "GetKey after the deadline");
  t.deepEqual((await owner.getKey(key.id)).material, material);
});

test("a revoked grant is refused before its deadline", async (t) => {
  const key = await owner.createKey({ project: "volumes", scope: "vol-3", name: "disk" });
  const grant = await owner.createGrant({
    keyId: key.id,
    grantee: "compute-host-2",
    expiresAt: new Date(Date.now() + 600_000),
  });
  t.truthy(await grantee.getKey(key.id));
  const revoked = await owner.revokeGrant(grant.id);
  t.truthy(revoked.revokedAt);
  await refusedAsMissing(t, grantee.getKey(key.id), "GetKey after revoke");
});

test("grants with a past or too distant deadline are INVALID_ARGUMENT naming expires_at", async (t) => {
  const key = await owner.createKey({ project: "volumes", scope: "vol-x", name: "disk" });
  for (const expiresAt of [new Date(Date.now() - 1000), new Date(Date.now() + 31 * 86_400_000)]) {
    const err = await t.throwsAsync(
      owner.createGrant({ keyId: key.id, grantee: "compute-host-2", expiresAt }),
    );
    t.true(isLockboxClientError(err, "INVALID_ARGUMENT"), String(err));
    t.is((err as { field?: string }).field, "expires_at");
  }
  await refusedAsMissing(t, grantee.getKey(key.id), "GetKey without a valid grant");
});
