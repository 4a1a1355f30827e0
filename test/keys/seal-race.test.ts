/**
 * Sealing zeroes the cached project KEKs in place. A write that already holds a KEK when the
 * barrier seals must not go on to wrap material under the zeroed (all-zero, publicly known) key.
 */
import { createDecipheriv } from "node:crypto";
import test from "ava";
import { encodeBinding } from "../../src/crypto/binding.js";
import { ENVELOPE_HEADER_BYTES } from "../../src/crypto/envelope.js";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import type { KeyRecord } from "../../src/keys/key-model.js";
import { materialBinding, parseKeyRecord } from "../../src/keys/record-codec.js";
import { admin, dumpDb, openFixture } from "./key-service-fixture.js";

const req = { project: "p", scope: "s", name: "n", algorithm: "AES", bitLength: 256 } as const;

/** Does a record's envelope authenticate under a key of 32 zero bytes (raw AES-GCM, same AAD)? */
function opensUnderZeroKey(record: KeyRecord): boolean {
  const blob = record.wrappedMaterial!;
  const header = blob.subarray(0, ENVELOPE_HEADER_BYTES);
  const binding = materialBinding(record);
  const decipher = createDecipheriv("aes-256-gcm", new Uint8Array(32), header.subarray(5));
  decipher.setAAD(Buffer.concat([header, encodeBinding(binding)]));
  decipher.setAuthTag(blob.subarray(blob.length - 16));
  decipher.update(blob.subarray(ENVELOPE_HEADER_BYTES, blob.length - 16));
  try {
    decipher.final();
    return true;
  } catch {
    return false;
  }
}

test("creates and imports in flight when the barrier seals are refused and store nothing under a zeroed KEK", async (t) => {
  const { handle } = await openFixture(t);
  const s = handle.service;
  await s.createKey(admin, { ...req, name: "warm" }); // caches project p's KEK
  const before = await dumpDb(handle.store);

  // Each call passes its sealed check, then awaits the (cached) KEK; the seal lands meanwhile.
  const inFlight: Promise<unknown>[] = [
    s.createKey(admin, req),
    s.createKey(admin, { ...req, bitLength: 128 }),
    s.importKey(admin, { ...req, material: new Uint8Array(32).fill(0x5a) }),
  ];
  handle.barrier.seal();

  for (const call of inFlight) {
    const e = await t.throwsAsync<LockboxError>(call);
    t.true(isLockboxError(e, "FAILED_PRECONDITION"), String(e));
  }
  const after = await dumpDb(handle.store);
  t.deepEqual(after, before, "a refused write leaves the store unchanged");
  // Belt and braces: no stored record's material is an envelope under an all-zero key.
  for await (const [k, v] of handle.store.sublevel("records").iterator()) {
    const record = parseKeyRecord(v, k).unverified;
    if (record.wrappedMaterial !== undefined) t.false(opensUnderZeroKey(record), `key ${record.id}`);
  }
  t.is(s.stats().keyCount, 1);
});
