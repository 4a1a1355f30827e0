/**
 * Seal a secret under a PCR policy to the storage primary, and unseal it.
 * Unsealing runs PolicyPCR in a policy session salted to the storage
 * primary, and asks for response parameter encryption, so the secret is
 * AES-CFB encrypted on the bus and only this process can decrypt it.
 */
import { timingSafeEqual } from "node:crypto";
import { withSession, withTransient } from "../client/scoped.js";
import type { Tpm, TpmObject } from "../client/tpm.js";
import { TpmClientError } from "../client/tpm-error.js";
import { TpmDecodeError } from "../marshal/decode-error.js";
import { decodeExact } from "../marshal/reader.js";
import { encode } from "../marshal/writer.js";
import { TPM_ALG_ID } from "../spec/constants.js";
import { objectName } from "../spec/name.js";
import { LIMITS } from "../spec/limits.js";
import { TpmlPcrSelection } from "../spec/pcr.js";
import { Tpm2bPublic, type TpmtPublic } from "../spec/public.js";
import { TpmsSensitiveCreate } from "../spec/sensitive.js";
import { createStoragePrimary } from "../keys/storage.js";
import { sealedObjectTemplate } from "../keys/templates.js";
import { policyPcrDigest } from "./pcr-policy.js";

/** What must be stored to unseal later: the wrapped object and the PCRs its policy names. */
export interface SealedBlob {
  readonly outPrivate: Uint8Array;
  readonly outPublic: TpmtPublic;
  readonly pcrs: TpmlPcrSelection;
  /**
   * The name of the storage primary at seal time (nameAlg || H(public area),
   * computed here, not taken from the TPM's response). Unseal salts its
   * session to the primary only if it still has this name: the primary's
   * public key crosses the bus unauthenticated, and an interposer that swaps
   * it would learn the session key and read the secret. Absent in blobs
   * from before it was recorded; those unseal without the check.
   */
  readonly srkName?: Uint8Array;
}

/** Largest secret a sealed data object holds on every TPM (MAX_SYM_DATA). */
export const SEALED_SECRET_BYTES_MAX = 128;

export interface SealOptions {
  readonly secret: Uint8Array;
  /** The PCRs whose current values the secret is bound to (SHA-256 bank expected). */
  readonly pcrs: TpmlPcrSelection;
  /**
   * The storage primary's name from an earlier seal (SealedBlob.srkName). The
   * secret travels to the TPM in a session salted to the primary; with this
   * set, a primary of another name (a key swapped on the bus) is refused
   * before the session starts. Without it the first seal trusts the bus.
   */
  readonly srkName?: Uint8Array;
}

/**
 * Seals `secret` to the current values of `pcrs`. The Create command's
 * sensitive data travels encrypted too (a salted session with decrypt).
 * Runs under the TPM's operation lock (Tpm.exclusive).
 */
export async function sealSecret(tpm: Tpm, options: SealOptions): Promise<SealedBlob> {
  if (options.secret.length === 0 || options.secret.length > SEALED_SECRET_BYTES_MAX) {
    throw new TpmClientError("BAD_ARGUMENT", `secret must be 1..${SEALED_SECRET_BYTES_MAX} bytes`);
  }
  return tpm.exclusive(async () => {
    const { values } = await tpm.pcrRead(options.pcrs);
    const policy = policyPcrDigest(
      TPM_ALG_ID.SHA256,
      options.pcrs,
      values.map((v) => v.digest),
    );
    return withTransient(
      tpm,
      () => createStoragePrimary(tpm),
      (srk) => {
        checkPinnedSrk(srk, options);
        return withSession(tpm, tpm.startAuthSession({ type: "hmac", saltKey: srk }), async (session) => {
          const created = await tpm.create(srk, sealedObjectTemplate(policy), {
            sensitive: new TpmsSensitiveCreate(new Uint8Array(0), options.secret),
            parentAuth: session,
            encryptSensitive: true,
          });
          return {
            outPrivate: created.outPrivate,
            outPublic: created.outPublic,
            pcrs: options.pcrs,
            srkName: objectName(srk.publicArea),
          };
        });
      },
    );
  });
}

/**
 * Unseals a blob. The policy session is salted to the storage primary, or
 * to `options.saltKey` (any loaded decryption key, e.g. the RSA EK). Fails
 * with TpmError TPM_RC_POLICY_FAIL (0x99d) when the PCRs no longer hold the
 * values it was sealed to. Flushes every object and session it made, also on
 * failure. Runs under the TPM's operation lock (Tpm.exclusive).
 */
export async function unsealSecret(
  tpm: Tpm,
  blob: SealedBlob,
  options: { saltKey?: TpmObject } = {},
): Promise<Uint8Array> {
  return tpm.exclusive(() => unsealLocked(tpm, blob, options));
}

function unsealLocked(tpm: Tpm, blob: SealedBlob, options: { saltKey?: TpmObject }): Promise<Uint8Array> {
  return withTransient(
    tpm,
    () => createStoragePrimary(tpm),
    (srk) => {
      checkPinnedSrk(srk, blob);
      return withTransient(
        tpm,
        () => tpm.load(srk, blob.outPrivate, blob.outPublic),
        (item) =>
          withSession(
            tpm,
            tpm.startAuthSession({ type: "policy", saltKey: options.saltKey ?? srk }),
            async (session) => {
              await tpm.policyPcr(session, blob.pcrs);
              return tpm.unseal(item, session, { encryptResponse: true });
            },
          ),
      );
    },
  );
}

/** Refuses a storage primary whose public area is not the pinned one (the one a blob was sealed under). */
function checkPinnedSrk(srk: TpmObject, pin: { readonly srkName?: Uint8Array }): void {
  if (pin.srkName === undefined) return;
  const name = objectName(srk.publicArea);
  if (name.length !== pin.srkName.length || !timingSafeEqual(name, pin.srkName)) {
    throw new TpmClientError(
      "SALT_KEY_MISMATCH",
      "the storage primary's public key is not the one this blob was sealed under: refusing to salt a session to it",
    );
  }
}

/** Serializes a sealed blob: TPM2B_PRIVATE || TPM2B_PUBLIC || TPML_PCR_SELECTION [|| TPM2B_NAME srkName]. */
export function encodeSealedBlob(blob: SealedBlob): Uint8Array {
  return encode((w) => {
    w.tpm2b(blob.outPrivate);
    new Tpm2bPublic(blob.outPublic).marshal(w);
    blob.pcrs.marshal(w);
    if (blob.srkName !== undefined) w.tpm2b(blob.srkName);
  });
}

export function decodeSealedBlob(bytes: Uint8Array): SealedBlob {
  return decodeExact(bytes, "sealed blob", (r) => {
    const outPrivate = r.tpm2b("sealed blob.outPrivate", LIMITS.privateBytes);
    if (outPrivate.length === 0) throw new TpmDecodeError("INCONSISTENT", "sealed blob.outPrivate", "empty");
    const outPublic = Tpm2bPublic.unmarshal(r).publicArea;
    const pcrs = TpmlPcrSelection.unmarshal(r);
    if (r.remaining === 0) return { outPrivate, outPublic, pcrs };
    const srkName = r.tpm2b("sealed blob.srkName", LIMITS.nameBytes);
    if (srkName.length < 2)
      throw new TpmDecodeError("INCONSISTENT", "sealed blob.srkName", "too short for a name");
    return { outPrivate, outPublic, pcrs, srkName };
  });
}
