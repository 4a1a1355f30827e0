/** The attestation key: a restricted signing primary in the endorsement hierarchy. */
import type { CreatePrimaryResult, Tpm } from "../client/tpm.js";
import { TPM_RH } from "../spec/constants.js";
import { objectName } from "../spec/name.js";
import type { TpmtPublic } from "../spec/public.js";
import { eccAkTemplate, rsaAkTemplate } from "./templates.js";

export type AkAlgorithm = "ecc" | "rsa";

/** CreatePrimary of the AK (ECC P-256 ECDSA-SHA256 by default). The caller flushes it. */
export function createAk(tpm: Tpm, algorithm: AkAlgorithm = "ecc"): Promise<CreatePrimaryResult> {
  return tpm.createPrimary(TPM_RH.ENDORSEMENT, algorithm === "ecc" ? eccAkTemplate() : rsaAkTemplate());
}

/** The AK's name, nameAlg || H(TPMT_PUBLIC): what MakeCredential binds to and the quote's signer. */
export function akName(publicArea: TpmtPublic): Uint8Array {
  return objectName(publicArea);
}
