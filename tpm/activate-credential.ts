/**
 * ActivateCredential, attester side: the TPM releases the credential that a
 * verifier wrapped to our EK (MakeCredential) only if the named AK is loaded
 * in the same TPM. Proves EK and AK live together.
 */
import { withTransient } from "./client/scoped.js";
import type { Tpm, TpmObject } from "./client/tpm.js";
import { createEk, withEkPolicySession } from "./keys/ek.js";
import type { TpmsIdObject } from "./spec/credential.js";

export interface CredentialChallenge {
  /** TPM2B_ID_OBJECT contents: integrity HMAC and encrypted credential. */
  readonly credentialBlob: TpmsIdObject;
  /** TPM2B_ENCRYPTED_SECRET contents: the seed, encrypted to the EK. */
  readonly secret: Uint8Array;
}

/**
 * Activates a credential for a loaded AK. Creates the default RSA EK (unless
 * `ek` is given) and flushes it and the EK policy session afterwards, also
 * on failure (e.g. TPM_RC_INTEGRITY when the blob names another AK).
 */
export async function activateCredential(
  tpm: Tpm,
  ak: TpmObject,
  challenge: CredentialChallenge,
  ek?: TpmObject,
): Promise<Uint8Array> {
  const run = (key: TpmObject): Promise<Uint8Array> =>
    withEkPolicySession(tpm, (session) =>
      tpm.activateCredential(ak, key, challenge.credentialBlob, challenge.secret, session),
    );
  return tpm.exclusive(() => (ek !== undefined ? run(ek) : withTransient(tpm, () => createEk(tpm), run)));
}
