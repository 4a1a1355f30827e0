/**
 * Object templates. Primaries are deterministic: the same template in the
 * same hierarchy gives the same key, so the EK and an AK made from these
 * templates have the same name on every run.
 */
import { TpmsEccPoint } from "../spec/basic.js";
import { TPMA_OBJECT as O, TPM_ALG_ID as A, TPM_ECC_CURVE } from "../spec/constants.js";
import { TpmtPublic } from "../spec/public.js";
import { TpmtScheme, TpmtSymDef } from "../spec/schemes.js";

/**
 * PolicySecret(TPM_RH_ENDORSEMENT) as a policy digest (SHA-256): the default
 * EK's authPolicy (TCG EK Credential Profile, B.3.3).
 */
export const EK_POLICY_SHA256 = Uint8Array.from(
  Buffer.from("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa", "hex"),
);

/**
 * The default RSA 2048 EK template (TCG EK Credential Profile, template L-1):
 * the key swtpm_setup certifies in NV 0x01c00002 and persists at 0x81010001.
 */
export function rsaEkTemplate(): TpmtPublic {
  return new TpmtPublic(
    A.SHA256,
    O.fixedTPM | O.fixedParent | O.sensitiveDataOrigin | O.adminWithPolicy | O.restricted | O.decrypt,
    EK_POLICY_SHA256,
    { type: A.RSA, symmetric: TpmtSymDef.AES_128_CFB, scheme: TpmtScheme.NULL, keyBits: 2048, exponent: 0 },
    new Uint8Array(256),
  );
}

const AK_ATTRIBUTES =
  O.fixedTPM | O.fixedParent | O.sensitiveDataOrigin | O.userWithAuth | O.restricted | O.sign;

/** AK: restricted signing ECC P-256 key with ECDSA-SHA256. */
export function eccAkTemplate(): TpmtPublic {
  return new TpmtPublic(
    A.SHA256,
    AK_ATTRIBUTES,
    new Uint8Array(0),
    {
      type: A.ECC,
      symmetric: TpmtSymDef.NULL,
      scheme: new TpmtScheme(A.ECDSA, A.SHA256),
      curveId: TPM_ECC_CURVE.NIST_P256,
      kdf: TpmtScheme.NULL,
    },
    new TpmsEccPoint(new Uint8Array(0), new Uint8Array(0)),
  );
}

/** AK: restricted signing RSA 2048 key with RSASSA-SHA256. */
export function rsaAkTemplate(): TpmtPublic {
  return new TpmtPublic(
    A.SHA256,
    AK_ATTRIBUTES,
    new Uint8Array(0),
    {
      type: A.RSA,
      symmetric: TpmtSymDef.NULL,
      scheme: new TpmtScheme(A.RSASSA, A.SHA256),
      keyBits: 2048,
      exponent: 0,
    },
    new Uint8Array(0),
  );
}

/** Storage primary: ECC P-256 restricted decryption key with AES-128-CFB, in the owner hierarchy. */
export function eccStorageTemplate(): TpmtPublic {
  return new TpmtPublic(
    A.SHA256,
    O.fixedTPM | O.fixedParent | O.sensitiveDataOrigin | O.userWithAuth | O.noDA | O.restricted | O.decrypt,
    new Uint8Array(0),
    {
      type: A.ECC,
      symmetric: TpmtSymDef.AES_128_CFB,
      scheme: TpmtScheme.NULL,
      curveId: TPM_ECC_CURVE.NIST_P256,
      kdf: TpmtScheme.NULL,
    },
    new TpmsEccPoint(new Uint8Array(0), new Uint8Array(0)),
  );
}

/**
 * A sealed data object: keyed-hash with no scheme, usable only through
 * `authPolicy` (no userWithAuth), never duplicable (fixedTPM, fixedParent).
 */
export function sealedObjectTemplate(authPolicy: Uint8Array): TpmtPublic {
  return new TpmtPublic(
    A.SHA256,
    O.fixedTPM | O.fixedParent,
    authPolicy,
    { type: A.KEYEDHASH, scheme: TpmtScheme.NULL },
    new Uint8Array(0),
  );
}
