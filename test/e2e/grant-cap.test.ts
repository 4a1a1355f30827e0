/**
 * The grant cap counts live grants only: against a real peer process, a key that reached 1,000
 * grants refuses the next one, and once those are revoked (or expired) they are reclaimed and new
 * grants succeed again.
 */
import test from "ava";

import { isLockboxClientError } from "../../src/client/index.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

const CAP = 1000;
/** Calls in flight at once while filling the cap (bounded, and gentle on a shared machine). */
const PARALLEL = 16;

let peer: PeerProcess;

test.before(async () => {
  peer = await spawnPeer();
});

test.after.always(async () => {
  await peer?.teardown();
});

/** Runs `task(i)` for i in 0..count-1, PARALLEL at a time. */
async function inParallel<T>(count: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return out;
}

test("after 1,000 grants are created and all revoked, a new grant succeeds", async (t) => {
  const client = peer.client(peer.admin, { cache: false, deadlineMs: 30_000 });
  const key = await client.createKey({ project: "volumes", scope: "vol-cap", name: "disk" });
  const expiresAt = new Date(Date.now() + 3_600_000);
  const grants = await inParallel(CAP, (i) =>
    client.createGrant({ keyId: key.id, grantee: `host-${i}`, expiresAt }),
  );
  t.is(new Set(grants.map((g) => g.id)).size, CAP);

  // At the cap, one more is refused.
  const over = await t.throwsAsync(client.createGrant({ keyId: key.id, grantee: "host-extra", expiresAt }));
  t.true(isLockboxClientError(over, "RESOURCE_EXHAUSTED"), String(over));

  await inParallel(CAP, (i) => client.revokeGrant(grants[i]!.id));
  const fresh = await client.createGrant({ keyId: key.id, grantee: "host-new", expiresAt });
  t.like(fresh, { keyId: key.id, grantee: "host-new" });

  // The revoked grants were reclaimed by that create: revoking one again finds nothing.
  const gone = await t.throwsAsync(client.revokeGrant(grants[0]!.id));
  t.true(isLockboxClientError(gone, "NOT_FOUND"), String(gone));
});
