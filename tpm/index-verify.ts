/**
 * Public API of tpm/ for verifiers, tests and operators: transports, the
 * swtpm manager, KDFs, verifyQuote, MakeCredential and EK certificate checks.
 * The TPM client, structures, keys, quote and sealing are in ./index.ts.
 */
export type { TpmTransport } from "./transport/transport.js";
export { TcpTransport, type TcpTransportOptions } from "./transport/tcp-transport.js";
export {
  DeviceTransport,
  DEFAULT_TPM_DEVICE,
  type DeviceTransportOptions,
} from "./transport/device-transport.js";
export { RecordingTransport, type RecordedExchange } from "./transport/recording-transport.js";
export { TpmTransportError, type TpmTransportErrorCode } from "./transport/transport-error.js";

export * from "./swtpm/index.js";

export { kdfa, kdfe, KdfError, type KdfHash } from "./crypto/kdf.js";

export { verifyQuote, type VerifyQuoteInput, type VerifyQuoteResult } from "./verify/quote-verifier.js";
export {
  NONCE_BYTES_MIN,
  QUOTE_CHECKS,
  type QuoteCheck,
  type QuoteClock,
  type QuoteFailure,
  type QuoteFailureCode,
  type QuoteFailureDetail,
  type QuoteFailureDetails,
  isQuoteFailureCode,
} from "./verify/quote-failure.js";
export {
  type ParsedQuotePolicy,
  type QuotePolicy,
  type QuotePolicyProblem,
  type SignatureHashName,
  type SignatureSchemeName,
  QuotePolicyError,
  SIGNATURE_HASHES,
  SIGNATURE_SCHEMES,
  firmwareVersionText,
  parseFirmwareVersion,
  parseQuotePolicy,
  quotePolicyForValues,
  quotePolicyFromJson,
} from "./verify/quote-policy.js";
export {
  type PcrPolicy,
  type PcrPolicyEntry,
  type PcrPolicyJson,
  type PcrValue as VerifierPcrValue,
  PcrFormatError,
  bankId,
  bankName,
  parsePcrSelection,
  pcrPolicyFromJson,
  pcrPolicyFromValues,
  pcrPolicyToJson,
  pcrValuesFromJson,
  pcrValuesToJson,
} from "./verify/pcr-values.js";
export {
  qualifiedName,
  hierarchyQualifiedName,
  endorsementPrimaryQualifiedName,
} from "./verify/qualified-name.js";
export {
  QUOTE_JSON_FORMAT,
  type QuoteJson,
  type ParsedQuote,
  QuoteJsonError,
  quoteToJson,
  parseQuoteJson,
  clockOfAttest,
} from "./verify/quote-json.js";

export {
  makeCredential,
  CredentialError,
  type MakeCredentialInput,
  type MadeCredential,
} from "./credential/make-credential.js";
export {
  encodeTpm2ToolsCredential,
  decodeTpm2ToolsCredential,
} from "./credential/tpm2-tools-credential-file.js";

export { EkCertificateError, type EkCertificateErrorCode } from "./ek/ek-certificate-error.js";
export {
  parseCertificates,
  checkEkCertificateKey,
  verifyEkCertificateChain,
  type ChainOptions,
} from "./ek/ek-certificate.js";
export { readEk, readAndVerifyEk, type EkInfo } from "./ek/read-ek.js";
