/**
 * A fenced peer serves no key calls (src/edge/fenced-peer-guard.ts), here around a real KeyService (a
 * real LevelDB, built by the peer's own core): while fenced, every key operation is refused
 * UNAVAILABLE naming the fence and changes nothing; the service's other members still answer; once
 * unfenced the same key is served again. The real-process case (a PCR extended on a running peer) is
 * test/attestation/fencing-process.test.ts.
 */
import test from "ava";
import { KEY_OPERATIONS, guardKeyCalls } from "../../src/edge/fenced-peer-guard.js";
import { isLockboxError } from "../../src/errors.js";
import type { KeyServiceApi } from "../../src/server/key-service-handlers.js";
import { admin, openFixture } from "../keys/key-service-fixture.js";

/** Every KeyService call the edges make: a new one fails to compile here until it is listed (and guarded). */
const EDGE_KEY_CALLS: Record<keyof KeyServiceApi, true> = {
  createKey: true,
  importKey: true,
  getKey: true,
  getKeyMetadata: true,
  listKeys: true,
  deleteKey: true,
  cloneKey: true,
  rekeyClone: true,
  createGrant: true,
  revokeGrant: true,
  addConsumer: true,
  removeConsumer: true,
  listConsumers: true,
};

test("every key call the edges make (KeyServiceApi) is a guarded key operation", (t) => {
  t.deepEqual(Object.keys(EDGE_KEY_CALLS).sort(), [...KEY_OPERATIONS].sort());
});

test("while fenced every key call is refused UNAVAILABLE naming the fence and changes nothing; other members answer; unfenced, the key is served again", async (t) => {
  const { handle } = await openFixture(t);
  let fence: string | null = null;
  const keys = guardKeyCalls(handle.service, () => fence);
  const made = await keys.createKey(admin, {
    project: "p",
    scope: "vol-1",
    name: "k",
    algorithm: "AES",
    bitLength: 256,
  });
  const material = Buffer.from((await keys.getKey(admin, { id: made.id })).material).toString("hex");

  fence = "re-quote failed: pcr-policy/policy-pcr-value-not-approved";
  const refused = async (call: Promise<unknown>): Promise<void> => {
    const e = await call.then(
      () => undefined,
      (err: unknown) => err,
    );
    t.true(isLockboxError(e, "UNAVAILABLE"), String(e));
    t.regex(
      (e as Error).message,
      /^this peer is fenced \(re-quote failed: pcr-policy\/.*\): it serves no key calls/,
    );
    t.false((e as Error).message.includes(material));
  };
  await refused(keys.getKey(admin, { id: made.id }));
  await refused(keys.getKeyMetadata(admin, { id: made.id }));
  await refused(keys.listKeys(admin, { project: "p", scope: "", pageSize: 10, pageToken: "" }));
  await refused(
    keys.createKey(admin, { project: "p", scope: "vol-1", name: "k2", algorithm: "AES", bitLength: 256 }),
  );
  await refused(keys.deleteKey(admin, { id: made.id, force: true }));
  t.is(keys.stats().keyCount, 1, "status still answers; nothing was created or deleted");

  fence = null;
  const again = await keys.getKey(admin, { id: made.id });
  t.is(Buffer.from(again.material).toString("hex"), material);
});
