/**
 * Public API of tpm/: structures, the command client, keys, quote, credential
 * activation and sealing. Verifier-side exports (verifyQuote, MakeCredential,
 * EK chain checks) are in ./index-verify.ts.
 */
export { TpmDecodeError, TpmUnionTagError, type TpmDecodeErrorCode } from "./marshal/decode-error.js";
export { TpmReader, decodeExact } from "./marshal/reader.js";
export { TpmWriter, encode } from "./marshal/writer.js";

export * from "./spec/constants.js";
export { TpmtHa, TpmlDigestValues, TpmtTkCreation, TpmsEccPoint } from "./spec/basic.js";
export { TpmsPcrSelection, TpmlPcrSelection, TpmlDigest } from "./spec/pcr.js";
export { TpmtSymDef, TpmtScheme, type SchemeUnion } from "./spec/schemes.js";
export {
  TpmtPublic,
  Tpm2bPublic,
  type TpmsRsaParms,
  type TpmsEccParms,
  type TpmsKeyedHashParms,
  type TpmsSymCipherParms,
  type TpmuPublicParms,
  type TpmuPublicId,
} from "./spec/public.js";
export { TpmsAttest, TpmsClockInfo, type TpmsQuoteInfo, type TpmuAttest } from "./spec/attest.js";
export {
  TpmtSignature,
  type TpmsSignatureEcc,
  type TpmsSignatureRsa,
  type TpmuSignature,
} from "./spec/signature.js";
export { TpmsSensitiveCreate, Tpm2bSensitiveCreate, TpmtSensitive } from "./spec/sensitive.js";
export { TpmsNvPublic, Tpm2bNvPublic } from "./spec/nv.js";
export { TpmsCreationData, Tpm2bCreationData } from "./spec/creation.js";
export { TpmsIdObject, Tpm2bIdObject } from "./spec/credential.js";
export { TpmsCapabilityData, type TpmuCapabilities } from "./spec/capability.js";
export { digestSize, nodeHashName } from "./spec/hash.js";
export { LIMITS } from "./spec/limits.js";
export { objectName, nvName, handleName, tpmHash, TpmNameError } from "./spec/name.js";
export { decodeResponseCode, TPM_RC, type DecodedResponseCode } from "./spec/response-codes.js";

export {
  Tpm,
  type TpmObject,
  type CreatePrimaryResult,
  type CreateResult,
  type PcrReadResult,
  type PcrValue,
  type QuoteResult,
  type StartAuthSessionOptions,
} from "./client/tpm.js";
export { TpmError, TpmClientError, commandName, type TpmClientErrorCode } from "./client/tpm-error.js";
export {
  PasswordSession,
  EMPTY_PASSWORD,
  TpmSession,
  type AuthSession,
  type SessionType,
} from "./client/sessions.js";
export { withTransient, withSession } from "./client/scoped.js";
export {
  checkResponse,
  type CommandSpec,
  type CommandResult,
  type HandleRef,
} from "./client/command-frame.js";

export {
  rsaEkTemplate,
  eccAkTemplate,
  rsaAkTemplate,
  eccStorageTemplate,
  sealedObjectTemplate,
  EK_POLICY_SHA256,
} from "./keys/templates.js";
export {
  createEk,
  readEkCertificate,
  trimDerPadding,
  withEkPolicySession,
  RSA_EK_CERT_NV_INDEX,
  ECC_EK_CERT_NV_INDEX,
  RSA_EK_PERSISTENT_HANDLE,
} from "./keys/ek.js";
export { createAk, akName, type AkAlgorithm } from "./keys/ak.js";
export { createStoragePrimary } from "./keys/storage.js";
export { publicKeyFromTpmt, eccCurveInfo, TpmKeyError } from "./keys/public-key.js";

export { quote, type Quote, type QuoteOptions } from "./quote.js";
export { activateCredential, type CredentialChallenge } from "./activate-credential.js";
export { policyPcrDigest, pcrCompositeDigest } from "./seal/pcr-policy.js";
export {
  sealSecret,
  unsealSecret,
  encodeSealedBlob,
  decodeSealedBlob,
  SEALED_SECRET_BYTES_MAX,
  type SealedBlob,
  type SealOptions,
} from "./seal/seal.js";
export type { TpmTransport } from "./transport/transport.js";
export { ensureClockSafe, CLOCK_NV_UPDATE_INTERVAL_BITS, type ClockSafeResult } from "./clock/clock-safe.js";
