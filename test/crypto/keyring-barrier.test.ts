import { randomBytes } from "node:crypto";
import test from "ava";
import { Barrier } from "../../src/crypto/barrier.js";
import type { EnvelopeBinding } from "../../src/crypto/envelope.js";
import { Keyring } from "../../src/crypto/keyring.js";
import { isLockboxError } from "../../src/errors.js";

const binding: EnvelopeBinding = {
  kind: "project-kek",
  id: "p",
  attributes: { algorithm: "AES", bitLength: 256 },
};
const k1 = () => new Uint8Array(randomBytes(32));

test("keyring is copy-on-write: withEpoch leaves the original untouched", (t) => {
  const a = Keyring.empty().withEpoch(1, k1());
  const b = a.withEpoch(2, k1());
  t.deepEqual(a.epochs, [1]);
  t.deepEqual(b.epochs, [1, 2]);
  t.is(a.activeEpoch, 1);
  t.is(b.activeEpoch, 2);
  t.throws(() => b.withEpoch(2, k1()), { instanceOf: RangeError });
  t.throws(() => b.withEpoch(0, k1()), { instanceOf: RangeError });
  t.throws(() => b.withEpoch(3, new Uint8Array(16)), { instanceOf: RangeError });
});

test("keyring copies key bytes in and zeroize wipes them", (t) => {
  const source = k1();
  const ring = Keyring.empty().withEpoch(1, source);
  source.fill(7);
  t.notDeepEqual(ring.key(1), source);
  const held = ring.key(1)!;
  ring.zeroize();
  t.true(held.every((b) => b === 0));
});

test("a sealed barrier refuses wrap and unwrap with FAILED_PRECONDITION", (t) => {
  const barrier = new Barrier();
  t.true(barrier.sealed);
  const e1 = t.throws(() => barrier.wrap(new Uint8Array(32), binding));
  t.true(isLockboxError(e1, "FAILED_PRECONDITION"));
  t.is(e1?.message, "sealed");
  t.true(
    isLockboxError(
      t.throws(() => barrier.unwrap(new Uint8Array(64), binding)),
      "FAILED_PRECONDITION",
    ),
  );
  t.true(
    isLockboxError(
      t.throws(() => barrier.deriveKey("x")),
      "FAILED_PRECONDITION",
    ),
  );
});

test("an unsealed barrier round-trips; after seal it refuses again", (t) => {
  const barrier = new Barrier();
  barrier.unseal(Keyring.empty().withEpoch(1, k1()));
  const secret = new Uint8Array(randomBytes(32));
  const blob = barrier.wrap(secret, binding);
  t.deepEqual(barrier.unwrap(blob, binding), secret);
  barrier.seal();
  t.true(
    isLockboxError(
      t.throws(() => barrier.unwrap(blob, binding)),
      "FAILED_PRECONDITION",
    ),
  );
});

test("blobs of an older epoch still unwrap after a new epoch is added; unknown epochs are DATA_LOSS", (t) => {
  const e1 = k1();
  const old = Keyring.empty().withEpoch(1, e1);
  const barrier = new Barrier();
  barrier.unseal(old);
  const secret = new Uint8Array(randomBytes(16));
  const blobV1 = barrier.wrap(secret, binding);
  barrier.unseal(Keyring.empty().withEpoch(1, e1).withEpoch(2, k1()));
  t.is(barrier.activeEpoch, 2);
  t.deepEqual(barrier.unwrap(blobV1, binding), secret);
  const blobV2 = barrier.wrap(secret, binding);
  t.is(blobV2[4], 2);

  const onlyOne = new Barrier();
  onlyOne.unseal(Keyring.empty().withEpoch(1, e1));
  t.true(
    isLockboxError(
      t.throws(() => onlyOne.unwrap(blobV2, binding)),
      "DATA_LOSS",
    ),
  );
});

test("derived subkeys differ by purpose and are stable", (t) => {
  const barrier = new Barrier();
  barrier.unseal(Keyring.empty().withEpoch(1, k1()));
  t.deepEqual(barrier.deriveKey("a"), barrier.deriveKey("a"));
  t.notDeepEqual(barrier.deriveKey("a"), barrier.deriveKey("b"));
  t.is(barrier.mac("a", new Uint8Array([1])).length, 32);
});

test("a rotation's keyring: a staged epoch is held but not used for wraps until activated; a retired one is dropped, never the active one", (t) => {
  const barrier = new Barrier();
  barrier.unseal(Keyring.empty().withEpoch(1, k1()));
  const secret = new Uint8Array(randomBytes(16));
  const underOne = barrier.wrap(secret, binding);
  t.true(barrier.addEpoch(2, k1()));
  t.false(barrier.addEpoch(2, k1()), "already held");
  t.deepEqual(barrier.heldEpochs, [1, 2]);
  t.is(barrier.activeEpoch, 1, "staged, not active");
  t.is(barrier.wrap(secret, binding)[4], 1);
  barrier.activate(2);
  const underTwo = barrier.wrap(secret, binding);
  t.is(underTwo[4], 2);
  t.deepEqual(barrier.unwrap(underOne, binding), secret);
  t.throws(() => barrier.dropEpoch(2), { instanceOf: RangeError });
  const copy = barrier.releaseKey(1)!;
  t.true(barrier.dropEpoch(1));
  t.deepEqual(barrier.heldEpochs, [2]);
  t.false(
    copy.key.every((b) => b === 0),
    "a released copy is the caller's",
  );
  t.true(
    isLockboxError(
      t.throws(() => barrier.unwrap(underOne, binding)),
      "DATA_LOSS",
    ),
  );
  t.deepEqual(barrier.unwrap(underTwo, binding), secret);
});

test("an epoch the cluster announced and this peer does not hold yet is UNAVAILABLE (retryable), any other unknown epoch DATA_LOSS", (t) => {
  const ahead = new Barrier();
  ahead.unseal(Keyring.empty().withEpoch(1, k1()).withEpoch(2, k1()));
  const underTwo = ahead.wrap(new Uint8Array(8), binding);
  const behind = new Barrier();
  behind.unseal(Keyring.empty().withEpoch(1, k1()));
  t.true(
    isLockboxError(
      t.throws(() => behind.unwrap(underTwo, binding)),
      "DATA_LOSS",
    ),
  );
  behind.announce([1, 2]);
  t.true(
    isLockboxError(
      t.throws(() => behind.unwrap(underTwo, binding)),
      "UNAVAILABLE",
    ),
  );
});
