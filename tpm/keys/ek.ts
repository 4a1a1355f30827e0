/** The endorsement key: create it from the default template, read its certificate from NV, satisfy its policy. */
import type { AuthSession } from "../client/sessions.js";
import type { TpmSession } from "../client/sessions.js";
import { withSession } from "../client/scoped.js";
import type { CreatePrimaryResult, Tpm } from "../client/tpm.js";
import { TPMA_NV, TPM_RH } from "../spec/constants.js";
import { TpmClientError } from "../client/tpm-error.js";
import { rsaEkTemplate } from "./templates.js";

/** NV index of the RSA 2048 EK certificate (TCG EK Credential Profile). */
export const RSA_EK_CERT_NV_INDEX = 0x01c00002;
/** NV index of the ECC EK certificate (on swtpm: P-384). */
export const ECC_EK_CERT_NV_INDEX = 0x01c00016;
/** Where swtpm_setup persists the RSA EK. */
export const RSA_EK_PERSISTENT_HANDLE = 0x81010001;

/** CreatePrimary of the default RSA EK under the endorsement hierarchy. The caller flushes it. */
export function createEk(tpm: Tpm, endorsementAuth?: AuthSession): Promise<CreatePrimaryResult> {
  return tpm.createPrimary(
    TPM_RH.ENDORSEMENT,
    rsaEkTemplate(),
    endorsementAuth ? { auth: endorsementAuth } : {},
  );
}

/** Reads a DER EK certificate from NV (owner-readable on swtpm and on real TPMs; else via the index's own auth). */
export async function readEkCertificate(
  tpm: Tpm,
  nvIndex: number = RSA_EK_CERT_NV_INDEX,
): Promise<Uint8Array> {
  const { nvPublic } = await tpm.nvReadPublic(nvIndex);
  if ((nvPublic.attributes & TPMA_NV.WRITTEN) === 0) {
    throw new TpmClientError("BAD_RESPONSE", `NV index 0x${nvIndex.toString(16)} was never written`);
  }
  const authHandle =
    (nvPublic.attributes & TPMA_NV.OWNERREAD) !== 0
      ? TPM_RH.OWNER
      : (nvPublic.attributes & TPMA_NV.AUTHREAD) !== 0
        ? nvIndex
        : undefined;
  if (authHandle === undefined) {
    throw new TpmClientError(
      "UNSUPPORTED",
      `NV index 0x${nvIndex.toString(16)} is neither owner- nor auth-readable`,
    );
  }
  return trimDerPadding(await tpm.nvReadAll(nvIndex, authHandle), nvIndex);
}

/**
 * Some TPMs define the certificate index larger than the certificate and pad
 * it (with zeros or 0xff): keep exactly the outer DER SEQUENCE.
 */
export function trimDerPadding(bytes: Uint8Array, nvIndex: number): Uint8Array {
  const where = `NV index 0x${nvIndex.toString(16)}`;
  if (bytes.length < 2 || bytes[0] !== 0x30) {
    throw new TpmClientError("BAD_RESPONSE", `${where} does not hold a DER certificate`);
  }
  let length = bytes[1]!;
  let header = 2;
  if (length & 0x80) {
    const lengthBytes = length & 0x7f;
    if (lengthBytes === 0 || lengthBytes > 3 || bytes.length < 2 + lengthBytes) {
      throw new TpmClientError("BAD_RESPONSE", `${where}: bad DER length`);
    }
    length = 0;
    for (let i = 0; i < lengthBytes; i++) length = length * 256 + bytes[2 + i]!;
    header += lengthBytes;
  }
  if (header + length > bytes.length) {
    throw new TpmClientError(
      "BAD_RESPONSE",
      `${where}: certificate truncated (${bytes.length} of ${header + length} bytes)`,
    );
  }
  return bytes.subarray(0, header + length);
}

/**
 * Runs `fn` with a policy session that satisfies the default EK policy
 * (PolicySecret(TPM_RH_ENDORSEMENT)), flushing it afterwards.
 */
export function withEkPolicySession<T>(tpm: Tpm, fn: (session: TpmSession) => Promise<T>): Promise<T> {
  return withSession(tpm, tpm.startAuthSession({ type: "policy" }), async (session) => {
    await tpm.policySecret(TPM_RH.ENDORSEMENT, session);
    return fn(session);
  });
}
