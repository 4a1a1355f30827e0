/**
 * The CMK on its way to a joiner that passed attestation: wrapped to the
 * ephemeral P-256 key whose hash its quote signed (quote-binding.ts).
 *
 *   shared  = ECDH(verifier's one-use key, joiner's ephemeral key)
 *   key     = HKDF-SHA256(shared, salt = the join nonce, info, 32 bytes)
 *   info    = "lockbox cmk to joiner v1\0" || len || peer id || epoch (u64)
 *   wrapped = AES-256-GCM(key, random 12-byte IV, CMK, AAD = info)
 *
 * The info names lockbox, the peer and the epoch, so a wrapped CMK opens only
 * for the peer and epoch it was made for. Both ephemeral private keys are
 * dropped after one use: a recorded join cannot be opened later.
 */
import {
  type KeyObject,
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
} from "node:crypto";
import { EPHEMERAL_PUBLIC_KEY_BYTES } from "./quote-binding.js";

const INFO_CONTEXT = Buffer.from("lockbox cmk to joiner v1\0", "latin1");
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
/** A CMK is 32 bytes; anything far larger on the wire is refused before decrypting. */
const CMK_BYTES_MAX = 64;

export interface WrappedCmk {
  readonly epoch: number;
  /** The verifier's one-use public key, uncompressed P-256. */
  readonly verifierPublicKey: Uint8Array;
  readonly iv: Uint8Array;
  /** Ciphertext followed by the 16-byte GCM tag. */
  readonly ciphertext: Uint8Array;
}

export interface EphemeralKeyPair {
  readonly privateKey: KeyObject;
  /** Uncompressed P-256 point, 65 bytes. */
  readonly publicKey: Uint8Array;
}

export class KeyWrapError extends Error {
  override readonly name = "KeyWrapError";
  constructor(
    readonly code: "bad-public-key" | "bad-wrapped-key" | "unwrap-failed",
    message: string,
  ) {
    super(message);
  }
}

export function generateEphemeralKeyPair(): EphemeralKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { privateKey, publicKey: rawPoint(publicKey) };
}

/** The joiner's ephemeral public key as a KeyObject; throws KeyWrapError("bad-public-key") unless a valid P-256 point. */
export function ephemeralPublicKey(raw: Uint8Array): KeyObject {
  if (raw.length !== EPHEMERAL_PUBLIC_KEY_BYTES || raw[0] !== 0x04) {
    throw new KeyWrapError(
      "bad-public-key",
      `must be an uncompressed P-256 point (${EPHEMERAL_PUBLIC_KEY_BYTES} bytes)`,
    );
  }
  try {
    // node checks that the point lies on the curve.
    return createPublicKey({
      key: { kty: "EC", crv: "P-256", x: b64url(raw.subarray(1, 33)), y: b64url(raw.subarray(33)) },
      format: "jwk",
    });
  } catch {
    throw new KeyWrapError("bad-public-key", "is not a point on P-256");
  }
}

export function wrapCmkToJoiner(p: {
  cmk: Uint8Array;
  epoch: number;
  peerId: string;
  nonce: Uint8Array;
  joinerPublicKey: Uint8Array;
}): WrappedCmk {
  const joiner = ephemeralPublicKey(p.joinerPublicKey);
  const mine = generateEphemeralKeyPair();
  const info = wrapInfo(p.peerId, p.epoch);
  const key = deriveKey(diffieHellman({ privateKey: mine.privateKey, publicKey: joiner }), p.nonce, info);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(info);
  const ciphertext = Buffer.concat([cipher.update(p.cmk), cipher.final(), cipher.getAuthTag()]);
  key.fill(0);
  return { epoch: p.epoch, verifierPublicKey: mine.publicKey, iv, ciphertext };
}

/** The joiner's side; throws KeyWrapError when anything was changed on the way. The caller zeroes the result. */
export function unwrapCmkFromVerifier(p: {
  wrapped: WrappedCmk;
  peerId: string;
  nonce: Uint8Array;
  ephemeral: EphemeralKeyPair;
}): Uint8Array {
  const { wrapped } = p;
  if (!Number.isSafeInteger(wrapped.epoch) || wrapped.epoch < 0) {
    throw new KeyWrapError("bad-wrapped-key", "epoch is not a non-negative integer");
  }
  if (wrapped.iv.length !== IV_BYTES)
    throw new KeyWrapError("bad-wrapped-key", `IV must be ${IV_BYTES} bytes`);
  if (wrapped.ciphertext.length <= TAG_BYTES || wrapped.ciphertext.length > CMK_BYTES_MAX + TAG_BYTES) {
    throw new KeyWrapError("bad-wrapped-key", "ciphertext has an impossible length");
  }
  const verifier = ephemeralPublicKey(wrapped.verifierPublicKey);
  const info = wrapInfo(p.peerId, wrapped.epoch);
  const key = deriveKey(
    diffieHellman({ privateKey: p.ephemeral.privateKey, publicKey: verifier }),
    p.nonce,
    info,
  );
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, wrapped.iv);
    decipher.setAAD(info);
    decipher.setAuthTag(wrapped.ciphertext.subarray(wrapped.ciphertext.length - TAG_BYTES));
    return Buffer.concat([
      decipher.update(wrapped.ciphertext.subarray(0, wrapped.ciphertext.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new KeyWrapError("unwrap-failed", "the wrapped CMK does not open for this peer, epoch and key");
  } finally {
    key.fill(0);
  }
}

function wrapInfo(peerId: string, epoch: number): Buffer {
  const id = Buffer.from(peerId, "utf8");
  const out = Buffer.alloc(INFO_CONTEXT.length + 4 + id.length + 8);
  INFO_CONTEXT.copy(out, 0);
  out.writeUInt32BE(id.length, INFO_CONTEXT.length);
  id.copy(out, INFO_CONTEXT.length + 4);
  out.writeBigUInt64BE(BigInt(epoch), INFO_CONTEXT.length + 4 + id.length);
  return out;
}

function deriveKey(shared: Buffer, salt: Uint8Array, info: Buffer): Buffer {
  const key = Buffer.from(hkdfSync("sha256", shared, salt, info, KEY_BYTES));
  shared.fill(0);
  return key;
}

function rawPoint(publicKey: KeyObject): Uint8Array {
  const jwk = publicKey.export({ format: "jwk" });
  return Buffer.concat([
    Buffer.from([0x04]),
    Buffer.from(jwk.x!, "base64url"),
    Buffer.from(jwk.y!, "base64url"),
  ]);
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b).toString("base64url");
}
