/** Converts a TPM public area to a node:crypto KeyObject (RSA, or ECC on the NIST curves). */
import { type KeyObject, createPublicKey } from "node:crypto";
import { TPM_ALG_ID, TPM_ECC_CURVE } from "../spec/constants.js";
import type { TpmtPublic } from "../spec/public.js";

export class TpmKeyError extends Error {
  override readonly name = "TpmKeyError";
  constructor(
    readonly code: "UNSUPPORTED_KEY" | "BAD_KEY",
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

const CURVES: ReadonlyMap<number, { jwk: string; node: string; bytes: number }> = new Map([
  [TPM_ECC_CURVE.NIST_P256, { jwk: "P-256", node: "prime256v1", bytes: 32 }],
  [TPM_ECC_CURVE.NIST_P384, { jwk: "P-384", node: "secp384r1", bytes: 48 }],
  [TPM_ECC_CURVE.NIST_P521, { jwk: "P-521", node: "secp521r1", bytes: 66 }],
]);

/** node:crypto's curve name and coordinate size for a TPM curve id. */
export function eccCurveInfo(curveId: number): { jwk: string; node: string; bytes: number } {
  const c = CURVES.get(curveId);
  if (c === undefined)
    throw new TpmKeyError("UNSUPPORTED_KEY", `unsupported ECC curve 0x${curveId.toString(16)}`);
  return c;
}

/** Left-pads (or refuses) a big-endian integer to exactly `bytes`. */
export function fixedWidth(value: Uint8Array, bytes: number): Uint8Array {
  let v = value;
  while (v.length > bytes && v[0] === 0) v = v.subarray(1);
  if (v.length > bytes) throw new TpmKeyError("BAD_KEY", `integer of ${v.length} bytes exceeds ${bytes}`);
  const out = new Uint8Array(bytes);
  out.set(v, bytes - v.length);
  return out;
}

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

export function publicKeyFromTpmt(publicArea: TpmtPublic): KeyObject {
  try {
    if (publicArea.type === TPM_ALG_ID.RSA) {
      const parms = publicArea.rsaParms();
      const exponent = parms.exponent === 0 ? 65537 : parms.exponent;
      const e = Buffer.alloc(4);
      e.writeUInt32BE(exponent);
      let start = 0;
      while (start < 3 && e[start] === 0) start++;
      return createPublicKey({
        key: { kty: "RSA", n: b64url(publicArea.rsaModulus()), e: b64url(e.subarray(start)) },
        format: "jwk",
      });
    }
    if (publicArea.type === TPM_ALG_ID.ECC) {
      const curve = eccCurveInfo(publicArea.eccParms().curveId);
      const point = publicArea.eccPoint();
      return createPublicKey({
        key: {
          kty: "EC",
          crv: curve.jwk,
          x: b64url(fixedWidth(point.x, curve.bytes)),
          y: b64url(fixedWidth(point.y, curve.bytes)),
        },
        format: "jwk",
      });
    }
  } catch (err) {
    if (err instanceof TpmKeyError) throw err;
    throw new TpmKeyError("BAD_KEY", "the public area does not hold a valid key", { cause: err });
  }
  throw new TpmKeyError(
    "UNSUPPORTED_KEY",
    `object type 0x${publicArea.type.toString(16)} is not an asymmetric key`,
  );
}
