/** The PolicyPCR policy digest, computed in software (TPM 2.0 Part 3, TPM2_PolicyPCR). */
import { encode } from "../marshal/writer.js";
import { TPM_CC } from "../spec/constants.js";
import { digestSize } from "../spec/hash.js";
import { tpmHash } from "../spec/name.js";
import type { TpmlPcrSelection } from "../spec/pcr.js";

/** pcrDigest = H(PCR values concatenated in selection order). */
export function pcrCompositeDigest(policyHash: number, values: readonly Uint8Array[]): Uint8Array {
  return tpmHash(policyHash, ...values);
}

/**
 * policyDigest' = H(policyDigest || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || pcrDigest),
 * starting from the all-zero digest of a fresh policy session.
 */
export function policyPcrDigest(
  policyHash: number,
  pcrs: TpmlPcrSelection,
  pcrValues: readonly Uint8Array[],
  previous?: Uint8Array,
): Uint8Array {
  const start = previous ?? new Uint8Array(digestSize(policyHash)!);
  return tpmHash(
    policyHash,
    start,
    encode((w) => w.u32(TPM_CC.PolicyPCR)),
    encode((w) => pcrs.marshal(w)),
    pcrCompositeDigest(policyHash, pcrValues),
  );
}
