/**
 * The salt of a salted session (TPM 2.0 Part 1 Annex B.10 and C.7): a random
 * secret sent encrypted to a loaded decryption key, RSA-OAEP with label
 * "SECRET" or ECDH with KDFe. Only the TPM holding that key learns the salt,
 * so only it can derive the session key.
 */
import { constants, createECDH, publicEncrypt, randomBytes } from "node:crypto";
import { kdfe } from "../crypto/kdf.js";
import { encode } from "../marshal/writer.js";
import { TpmsEccPoint } from "../spec/basic.js";
import { TPMA_OBJECT, TPM_ALG_ID } from "../spec/constants.js";
import { digestSize } from "../spec/hash.js";
import type { TpmtPublic } from "../spec/public.js";
import { eccCurveInfo, fixedWidth, publicKeyFromTpmt } from "../keys/public-key.js";
import { kdfHashName } from "./sessions.js";
import { TpmClientError } from "./tpm-error.js";

export interface Salt {
  readonly salt: Uint8Array;
  /** The TPM2B_ENCRYPTED_SECRET contents. */
  readonly encryptedSalt: Uint8Array;
}

export function makeSalt(tpmKey: TpmtPublic): Salt {
  if (!tpmKey.hasAttribute(TPMA_OBJECT.decrypt)) {
    throw new TpmClientError("BAD_ARGUMENT", "the salt key must be a decryption key");
  }
  const hashName = kdfHashName(tpmKey.nameAlg);
  const saltBytes = digestSize(tpmKey.nameAlg)!;
  if (tpmKey.type === TPM_ALG_ID.RSA) {
    const salt = new Uint8Array(randomBytes(saltBytes));
    const encryptedSalt = publicEncrypt(
      {
        key: publicKeyFromTpmt(tpmKey),
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: hashName,
        oaepLabel: Buffer.from("SECRET\0", "latin1"),
      },
      salt,
    );
    return { salt, encryptedSalt: new Uint8Array(encryptedSalt) };
  }
  if (tpmKey.type === TPM_ALG_ID.ECC) {
    const curve = eccCurveInfo(tpmKey.eccParms().curveId);
    const point = tpmKey.eccPoint();
    const tpmX = fixedWidth(point.x, curve.bytes);
    const tpmY = fixedWidth(point.y, curve.bytes);
    const ecdh = createECDH(curve.node);
    const ephemeral = ecdh.generateKeys();
    const z = ecdh.computeSecret(Buffer.concat([Uint8Array.of(4), tpmX, tpmY]));
    const ephX = ephemeral.subarray(1, 1 + curve.bytes);
    const ephY = ephemeral.subarray(1 + curve.bytes);
    const salt = kdfe(hashName, z, "SECRET", ephX, tpmX, saltBytes * 8);
    const encryptedSalt = encode((w) => new TpmsEccPoint(ephX, ephY).marshal(w));
    return { salt, encryptedSalt };
  }
  throw new TpmClientError("BAD_ARGUMENT", "the salt key must be RSA or ECC");
}
