/**
 * What a verifier approves, as plain JSON so that it can live in the control
 * state, a policy file or an enrollment record unchanged:
 *
 *   { "pcrs": { "sha256": { "0": "<hex>", "7": ["<hex>", "<hex>"] } },
 *     "hashAlg": "sha256", "signatureScheme": "ecdsa",
 *     "firmwareVersionMin": "20191023.00000000" }
 *
 * Everything a quote could otherwise choose for itself is pinned: the hash of
 * its signature (which is also the hash of its pcrDigest), the signature
 * scheme, RSA-PSS's salt length, and the lowest firmware version. There are no
 * defaults: a policy that leaves one out is malformed, and one that approves
 * no PCR is refused, since it would approve any machine state.
 */
import { TPM_ALG_ID } from "../spec/constants.js";
import {
  type PcrPolicy,
  type PcrPolicyJson,
  type PcrValue,
  PcrFormatError,
  pcrPolicyFromJson,
  pcrPolicyFromValues,
  pcrPolicyToJson,
} from "./pcr-values.js";

export const SIGNATURE_HASHES = {
  sha256: TPM_ALG_ID.SHA256,
  sha384: TPM_ALG_ID.SHA384,
  sha512: TPM_ALG_ID.SHA512,
};
export type SignatureHashName = keyof typeof SIGNATURE_HASHES;
export const SIGNATURE_SCHEMES = {
  ecdsa: TPM_ALG_ID.ECDSA,
  rsassa: TPM_ALG_ID.RSASSA,
  rsapss: TPM_ALG_ID.RSAPSS,
};
export type SignatureSchemeName = keyof typeof SIGNATURE_SCHEMES;

export interface QuotePolicy {
  /** Approved values: bank, then decimal PCR index, then one hex digest or a list of them. */
  readonly pcrs: PcrPolicyJson;
  /** The hash the quote's signature (and its pcrDigest) must use. */
  readonly hashAlg: SignatureHashName;
  readonly signatureScheme: SignatureSchemeName;
  /** RSA-PSS salt length in bytes: required with "rsapss" (TPMs use the digest size), absent otherwise. */
  readonly rsaPssSaltBytes?: number;
  /** Lowest accepted TPMS_ATTEST.firmwareVersion, written as `lockbox tpm info` prints it: `hhhhhhhh.hhhhhhhh`. */
  readonly firmwareVersionMin: string;
}

/** A policy checked and decoded for the verifier. */
export interface ParsedQuotePolicy {
  readonly pcrs: PcrPolicy;
  readonly hashAlg: number;
  readonly signatureScheme: number;
  readonly rsaPssSaltBytes: number | undefined;
  readonly firmwareVersionMin: bigint;
}

/** Why a policy cannot be used; `field` names the JSON field. */
export interface QuotePolicyProblem {
  readonly code: "policy-malformed" | "policy-empty";
  readonly field: string;
  readonly problem: string;
}

export class QuotePolicyError extends Error {
  override readonly name = "QuotePolicyError";
  constructor(readonly problem: QuotePolicyProblem) {
    super(`quote policy: ${problem.field}: ${problem.problem}`);
  }
  get code(): QuotePolicyProblem["code"] {
    return this.problem.code;
  }
}

const FIELDS = new Set(["pcrs", "hashAlg", "signatureScheme", "rsaPssSaltBytes", "firmwareVersionMin"]);
const SALT_BYTES_MAX = 512;
const FIRMWARE_VERSION = /^([0-9a-f]{8})\.([0-9a-f]{8})$/i;

/** Checks and decodes a policy (from any source: JSON text, the control state); never throws. */
export function parseQuotePolicy(json: unknown): ParsedQuotePolicy | QuotePolicyProblem {
  const malformed = (field: string, problem: string): QuotePolicyProblem => ({
    code: "policy-malformed",
    field,
    problem,
  });
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return malformed("policy", "must be an object");
  }
  const o = json as Record<string, unknown>;
  const unknown = Object.keys(o).find((k) => !FIELDS.has(k));
  if (unknown !== undefined) return malformed(unknown, "is not a policy field");

  const hashAlg = lookup(SIGNATURE_HASHES, o.hashAlg);
  if (hashAlg === undefined)
    return malformed("hashAlg", `must be one of ${Object.keys(SIGNATURE_HASHES).join(", ")}`);
  const scheme = lookup(SIGNATURE_SCHEMES, o.signatureScheme);
  if (scheme === undefined) {
    return malformed("signatureScheme", `must be one of ${Object.keys(SIGNATURE_SCHEMES).join(", ")}`);
  }
  const salt = o.rsaPssSaltBytes;
  if (scheme === TPM_ALG_ID.RSAPSS) {
    if (typeof salt !== "number" || !Number.isInteger(salt) || salt < 0 || salt > SALT_BYTES_MAX) {
      return malformed("rsaPssSaltBytes", `must be an integer in 0..${SALT_BYTES_MAX} with rsapss`);
    }
  } else if (salt !== undefined) {
    return malformed("rsaPssSaltBytes", "is only for signatureScheme rsapss");
  }
  const fw =
    typeof o.firmwareVersionMin === "string" ? parseFirmwareVersion(o.firmwareVersionMin) : undefined;
  if (fw === undefined) return malformed("firmwareVersionMin", "must be 8 hex digits, a dot, 8 hex digits");

  let pcrs: PcrPolicy;
  try {
    pcrs = pcrPolicyFromJson(o.pcrs);
  } catch (err) {
    if (err instanceof PcrFormatError) return malformed("pcrs", err.message);
    throw err;
  }
  if (pcrs.length === 0) return { code: "policy-empty", field: "pcrs", problem: "approves no PCR" };
  return {
    pcrs,
    hashAlg,
    signatureScheme: scheme,
    rsaPssSaltBytes: scheme === TPM_ALG_ID.RSAPSS ? (salt as number) : undefined,
    firmwareVersionMin: fw,
  };
}

/** The policy, checked; throws QuotePolicyError (for files and commands, where a bad policy is a usage error). */
export function quotePolicyFromJson(json: unknown): QuotePolicy {
  const parsed = parseQuotePolicy(json);
  if ("problem" in parsed) throw new QuotePolicyError(parsed);
  return json as QuotePolicy;
}

/** A policy that approves exactly these values, with the given pins. */
export function quotePolicyForValues(
  values: readonly PcrValue[],
  pins: Omit<QuotePolicy, "pcrs">,
): QuotePolicy {
  return { pcrs: pcrPolicyToJson(pcrPolicyFromValues(values)), ...pins };
}

/** TPMS_ATTEST.firmwareVersion as `lockbox tpm info` prints it (TPM_PT_FIRMWARE_VERSION_1 "." _2, hex). */
export function firmwareVersionText(v: bigint): string {
  const hex = v.toString(16).padStart(16, "0");
  return `${hex.slice(0, 8)}.${hex.slice(8)}`;
}

export function parseFirmwareVersion(text: string): bigint | undefined {
  const m = FIRMWARE_VERSION.exec(text);
  return m === null ? undefined : (BigInt(`0x${m[1]!}`) << 32n) | BigInt(`0x${m[2]!}`);
}

function lookup(table: Record<string, number>, name: unknown): number | undefined {
  return typeof name === "string" && Object.prototype.hasOwnProperty.call(table, name)
    ? table[name]
    : undefined;
}
