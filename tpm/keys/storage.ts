/** The storage primary that sealed objects live under. */
import type { CreatePrimaryResult, Tpm } from "../client/tpm.js";
import { TPM_RH } from "../spec/constants.js";
import { eccStorageTemplate } from "./templates.js";

/** CreatePrimary of the ECC P-256 storage key in the owner hierarchy. The caller flushes it. */
export function createStoragePrimary(tpm: Tpm): Promise<CreatePrimaryResult> {
  return tpm.createPrimary(TPM_RH.OWNER, eccStorageTemplate());
}
