/**
 * Converts a TPM public area (TPMT_PUBLIC) to a node:crypto KeyObject, so
 * signatures, certificates and encryption to the key can use node:crypto.
 * Only the key material is converted; callers check attributes themselves.
 */
import { type KeyObject, createPublicKey } from "node:crypto";
import { TPM_ALG_ID, TPM_ECC_CURVE } from "../spec/constants.js";
import type { TpmtPublic } from "../spec/public.js";

export class TpmPublicKeyError extends Error {
  override readonly name = "TpmPublicKeyError";
  constructor(
    readonly code: "unsupported-type" | "unsupported-curve" | "bad-key",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const CURVES: ReadonlyMap<number, { jwk: string; bytes: number }> = new Map([
  [TPM_ECC_CURVE.NIST_P256, { jwk: "P-256", bytes: 32 }],
  [TPM_ECC_CURVE.NIST_P384, { jwk: "P-384", bytes: 48 }],
  [TPM_ECC_CURVE.NIST_P521, { jwk: "P-521", bytes: 66 }],
]);

const DEFAULT_RSA_EXPONENT = 65537;

/** The public key of an RSA or ECC (NIST curve) TPM object. */
export function publicKeyFromTpmt(pub: TpmtPublic): KeyObject {
  try {
    if (pub.type === TPM_ALG_ID.RSA) {
      const exponent = pub.rsaParms().exponent === 0 ? DEFAULT_RSA_EXPONENT : pub.rsaParms().exponent;
      return createPublicKey({
        key: { kty: "RSA", n: b64url(stripLeadingZeros(pub.rsaModulus())), e: b64url(uintBytes(exponent)) },
        format: "jwk",
      });
    }
    if (pub.type === TPM_ALG_ID.ECC) {
      const curve = CURVES.get(pub.eccParms().curveId);
      if (curve === undefined) {
        throw new TpmPublicKeyError(
          "unsupported-curve",
          `ECC curve 0x${pub.eccParms().curveId.toString(16)} is not supported`,
        );
      }
      const point = pub.eccPoint();
      return createPublicKey({
        key: {
          kty: "EC",
          crv: curve.jwk,
          x: b64url(leftPad(point.x, curve.bytes)),
          y: b64url(leftPad(point.y, curve.bytes)),
        },
        format: "jwk",
      });
    }
  } catch (err) {
    if (err instanceof TpmPublicKeyError) throw err;
    throw new TpmPublicKeyError("bad-key", "the TPM public area does not hold a valid public key", {
      cause: err,
    });
  }
  throw new TpmPublicKeyError("unsupported-type", `object type 0x${pub.type.toString(16)} has no public key`);
}

/** Bytes of one coordinate (and of ECDSA r and s) on a supported curve, or undefined. */
export function eccCoordinateBytes(curveId: number): number | undefined {
  return CURVES.get(curveId)?.bytes;
}

/** Left-pads a big-endian integer to `bytes`; longer input is refused (it is not a coordinate). */
export function leftPad(value: Uint8Array, bytes: number): Uint8Array {
  if (value.length > bytes)
    throw new TpmPublicKeyError("bad-key", `coordinate is ${value.length} bytes, over ${bytes}`);
  const out = new Uint8Array(bytes);
  out.set(value, bytes - value.length);
  return out;
}

function stripLeadingZeros(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

function uintBytes(n: number): Uint8Array {
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v % 256);
  return Uint8Array.from(out);
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b).toString("base64url");
}
