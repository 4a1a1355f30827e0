/**
 * verifyQuote: the verifier's side of TPM2_Quote (DESIGN.md §5). Checks, in
 * this order, and collects every failure as a value:
 *   1. signature over the attest bytes with the AK public key,
 *   2. attest structure: magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE,
 *   3. signer: qualifiedSigner is the AK's qualified name,
 *   4. nonce: extraData equals the expected nonce,
 *   5. PCR digest: the reported PCR values, in the quote's selection order,
 *      hash to the quoted pcrDigest,
 *   6. PCR policy: every policy PCR is quoted with an approved value,
 *   7. replay: clock / resetCount / restartCount are later than those of an
 *      earlier quote of the same TPM (the same clock counts as a replay).
 * It never throws: malformed input is a failure. `ok` only when all pass.
 */
import { type KeyObject, constants, timingSafeEqual, verify } from "node:crypto";
import { decodeExact } from "../marshal/reader.js";
import type { TpmsAttest, TpmsQuoteInfo } from "../spec/attest.js";
import { TpmsAttest as TpmsAttestCodec } from "../spec/attest.js";
import { TPMA_OBJECT, TPM_ALG_ID, TPM_GENERATED_VALUE, TPM_RH, TPM_ST } from "../spec/constants.js";
import { digestSize, nodeHashName } from "../spec/hash.js";
import { objectName, tpmHash } from "../spec/name.js";
import { TpmtPublic } from "../spec/public.js";
import { TpmtSignature } from "../spec/signature.js";
import { eccCurveInfo, fixedWidth, publicKeyFromTpmt } from "../keys/public-key.js";
import type { QuoteClock, QuoteFailure, QuoteFailureCode } from "./quote-failure.js";
import { type PcrPolicy, type PcrValue, bankName } from "./pcr-values.js";
import { hierarchyQualifiedName, qualifiedName } from "./qualified-name.js";

export interface VerifyQuoteInput {
  /** TPM2B_ATTEST contents: the marshalled TPMS_ATTEST the TPM signed. */
  readonly attestBytes: Uint8Array;
  /** The marshalled TPMT_SIGNATURE returned by TPM2_Quote. */
  readonly signature: Uint8Array;
  /** The AK's public area: a TPMT_PUBLIC, or its marshalled bytes. */
  readonly akPublic: TpmtPublic | Uint8Array;
  /**
   * The qualified name of the AK's parent. Default: the endorsement hierarchy,
   * i.e. the AK is a primary key there. For an AK created under the EK (as
   * tpm2_createak does) pass `endorsementPrimaryQualifiedName(ekName)`.
   */
  readonly akParentQualifiedName?: Uint8Array;
  /** The extraData the quote must carry (the verifier's nonce, or H(nonce || key)). */
  readonly expectedNonce: Uint8Array;
  /** The PCR values the attester reported alongside the quote. */
  readonly pcrValues: readonly PcrValue[];
  /** Approved values; an empty policy approves anything that is correctly quoted. */
  readonly policy: PcrPolicy;
  /** The clock state of an earlier accepted quote from the same TPM. */
  readonly previous?: QuoteClock;
}

export type VerifyQuoteResult =
  | {
      readonly ok: true;
      readonly clock: QuoteClock & { readonly safe: boolean };
      /** The AK's name (nameAlg || H(TPMT_PUBLIC)). */
      readonly akName: Uint8Array;
      /** The reported values that the quote covers, in selection order. */
      readonly quotedPcrs: readonly PcrValue[];
      /** True when resetCount or restartCount moved on since `previous`: the machine restarted. */
      readonly restartedSincePrevious: boolean;
    }
  | { readonly ok: false; readonly failures: readonly QuoteFailure[] };

const ALLOWED_SIGNATURE_HASHES: readonly number[] = [TPM_ALG_ID.SHA256, TPM_ALG_ID.SHA384, TPM_ALG_ID.SHA512];

export function verifyQuote(input: VerifyQuoteInput): VerifyQuoteResult {
  const failures: QuoteFailure[] = [];
  const fail = (code: QuoteFailureCode, message: string): void => {
    failures.push({ code, message });
  };
  try {
    return runChecks(input, fail, failures);
  } catch (err) {
    // A check must not throw; if one does (a bug, or input shaped in a way not foreseen), refuse.
    fail("attest", `quote could not be checked: ${err instanceof Error ? err.name : "error"}`);
    return { ok: false, failures };
  }
}

function runChecks(
  input: VerifyQuoteInput,
  fail: (code: QuoteFailureCode, message: string) => void,
  failures: QuoteFailure[],
): VerifyQuoteResult {
  // 0. The AK: without a usable key nothing else can be trusted.
  const ak = decodeAk(input.akPublic);
  if (typeof ak === "string") {
    fail("ak-public", ak);
    return { ok: false, failures };
  }

  // 1. Signature, over the raw bytes, before anything in them is believed.
  const sigProblem = checkSignature(input.attestBytes, input.signature, ak.publicArea, ak.key);
  if (sigProblem !== undefined) fail("signature", sigProblem.message);

  // 2. Attest structure. Magic and type are read raw first, so they are named even when the rest is garbage.
  const raw = input.attestBytes;
  if (raw.length < 6) {
    fail("attest", `attest is ${raw.length} bytes, too short for a TPMS_ATTEST`);
    return { ok: false, failures };
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const magic = view.getUint32(0);
  const type = view.getUint16(4);
  if (magic !== TPM_GENERATED_VALUE) {
    fail(
      "magic",
      `attest magic is 0x${hex32(magic)}, not TPM_GENERATED_VALUE 0x${hex32(TPM_GENERATED_VALUE)}`,
    );
  }
  if (type !== TPM_ST.ATTEST_QUOTE) {
    fail(
      "type",
      `attest type is 0x${type.toString(16)}, not TPM_ST_ATTEST_QUOTE 0x${TPM_ST.ATTEST_QUOTE.toString(16)}`,
    );
    return { ok: false, failures };
  }
  let attest: TpmsAttest;
  let quote: TpmsQuoteInfo;
  try {
    attest = decodeExact(raw, "TPMS_ATTEST", TpmsAttestCodec.unmarshal);
    quote = attest.quote();
  } catch (err) {
    fail(
      "attest",
      `attest is not a well-formed TPMS_ATTEST: ${err instanceof Error ? err.message : "error"}`,
    );
    return { ok: false, failures };
  }

  // 3. Signer.
  const parentQn = input.akParentQualifiedName ?? hierarchyQualifiedName(TPM_RH.ENDORSEMENT);
  const expectedSigner = qualifiedName(parentQn, ak.name);
  if (!bytesEqual(attest.qualifiedSigner, expectedSigner)) {
    fail(
      "signer",
      "the quote's qualifiedSigner is not the AK's qualified name: another key (or the AK under another parent) signed it",
    );
  }

  // 4. Nonce.
  if (!bytesEqual(attest.extraData, input.expectedNonce)) {
    fail("nonce", `the quote's extraData (${attest.extraData.length} bytes) is not the expected nonce`);
  }

  // 5. PCR digest over the reported values, in the quote's own selection order.
  const quoted = quotedValues(quote, input.pcrValues);
  const digestHash = signatureHashOf(input.signature) ?? TPM_ALG_ID.SHA256;
  if (typeof quoted === "string") {
    fail("pcr-digest", quoted);
  } else {
    const computed = tpmHash(digestHash, ...quoted.map((v) => v.value));
    if (!bytesEqual(computed, quote.pcrDigest)) {
      fail("pcr-digest", "the reported PCR values do not hash to the quoted pcrDigest: a value was changed");
    }
  }

  // 6. Policy: each approved PCR must be quoted, with an approved value.
  const selected = quote.pcrSelect.entries();
  for (const entry of input.policy) {
    const label = `${bankName(entry.hashAlg)}:${entry.pcr}`;
    const reported = input.pcrValues.find((v) => v.hashAlg === entry.hashAlg && v.pcr === entry.pcr);
    if (!selected.some((e) => e.hash === entry.hashAlg && e.pcr === entry.pcr)) {
      fail("pcr-policy", `PCR ${label} is required by the policy but not covered by the quote`);
    } else if (reported === undefined) {
      fail("pcr-policy", `PCR ${label} is required by the policy but no value was reported for it`);
    } else if (!entry.allowed.some((a) => bytesEqual(a, reported.value))) {
      fail("pcr-policy", `PCR ${label} has a value the policy does not approve`);
    }
  }

  // 7. Replay: the TPM's clock state must not be older than an earlier quote's.
  const c = attest.clockInfo;
  const clock = { clock: c.clock, resetCount: c.resetCount, restartCount: c.restartCount, safe: c.safe };
  const replay = input.previous === undefined ? undefined : olderThan(clock, input.previous);
  if (replay !== undefined) fail("replay", replay);

  if (failures.length > 0 || typeof quoted === "string") return { ok: false, failures };
  const restartedSincePrevious =
    input.previous !== undefined &&
    (clock.resetCount !== input.previous.resetCount || clock.restartCount !== input.previous.restartCount);
  return { ok: true, clock, akName: ak.name, quotedPcrs: quoted, restartedSincePrevious };
}

interface DecodedAk {
  publicArea: TpmtPublic;
  key: KeyObject;
  name: Uint8Array;
}

/** The AK as a verification key, or why it cannot be one. */
function decodeAk(akPublic: TpmtPublic | Uint8Array): DecodedAk | string {
  let publicArea: TpmtPublic;
  try {
    publicArea =
      akPublic instanceof TpmtPublic ? akPublic : decodeExact(akPublic, "TPMT_PUBLIC", TpmtPublic.unmarshal);
  } catch (err) {
    return `AK public area is malformed: ${err instanceof Error ? err.message : "error"}`;
  }
  // Only a restricted signing key that never leaves its TPM signs nothing but TPM-made structures.
  const required = TPMA_OBJECT.restricted | TPMA_OBJECT.sign | TPMA_OBJECT.fixedTPM;
  if ((publicArea.objectAttributes & required) !== required) {
    return "AK is not a restricted, fixedTPM signing key: its signatures prove nothing about the TPM";
  }
  if (publicArea.type !== TPM_ALG_ID.ECC && publicArea.type !== TPM_ALG_ID.RSA) {
    return `AK type 0x${publicArea.type.toString(16)} is not RSA or ECC`;
  }
  try {
    return { publicArea, key: publicKeyFromTpmt(publicArea), name: objectName(publicArea) };
  } catch (err) {
    return `AK public key is unusable: ${err instanceof Error ? err.message : "error"}`;
  }
}

function checkSignature(
  data: Uint8Array,
  signatureBytes: Uint8Array,
  ak: TpmtPublic,
  key: KeyObject,
): { message: string } | undefined {
  let sig: TpmtSignature;
  try {
    sig = decodeExact(signatureBytes, "TPMT_SIGNATURE", TpmtSignature.unmarshal);
  } catch (err) {
    return {
      message: `signature is not a well-formed TPMT_SIGNATURE: ${err instanceof Error ? err.message : "error"}`,
    };
  }
  const s = sig.signature;
  if (s.sigAlg === TPM_ALG_ID.ECDSA && ak.type === TPM_ALG_ID.ECC) {
    const hash = nodeHashName(s.hash);
    if (hash === undefined || !ALLOWED_SIGNATURE_HASHES.includes(s.hash))
      return { message: "ECDSA signature uses an unaccepted hash" };
    let rs: Buffer;
    try {
      const size = eccCurveInfo(ak.eccParms().curveId).bytes;
      rs = Buffer.concat([fixedWidth(s.signatureR, size), fixedWidth(s.signatureS, size)]);
    } catch {
      return { message: "ECDSA signature values do not fit the AK's curve" };
    }
    const ok = verify(hash, data, { key, dsaEncoding: "ieee-p1363" }, rs);
    return ok ? undefined : { message: "ECDSA signature does not verify over the attest bytes with the AK" };
  }
  if ((s.sigAlg === TPM_ALG_ID.RSASSA || s.sigAlg === TPM_ALG_ID.RSAPSS) && ak.type === TPM_ALG_ID.RSA) {
    const hash = nodeHashName(s.hash);
    if (hash === undefined || !ALLOWED_SIGNATURE_HASHES.includes(s.hash))
      return { message: "RSA signature uses an unaccepted hash" };
    const padding =
      s.sigAlg === TPM_ALG_ID.RSASSA ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_PSS_PADDING;
    const ok = verify(hash, data, { key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, s.sig);
    return ok ? undefined : { message: "RSA signature does not verify over the attest bytes with the AK" };
  }
  return { message: `signature algorithm 0x${s.sigAlg.toString(16)} does not match the AK's key type` };
}

/** The hash the signature used, which is also the hash of the pcrDigest. */
function signatureHashOf(signatureBytes: Uint8Array): number | undefined {
  try {
    const s = decodeExact(signatureBytes, "TPMT_SIGNATURE", TpmtSignature.unmarshal).signature;
    return "hash" in s && digestSize(s.hash) !== undefined ? s.hash : undefined;
  } catch {
    return undefined;
  }
}

/** The reported values for every (bank, PCR) the quote selects, in its order; or what is missing. */
function quotedValues(quote: TpmsQuoteInfo, reported: readonly PcrValue[]): PcrValue[] | string {
  const out: PcrValue[] = [];
  for (const { hash, pcr } of quote.pcrSelect.entries()) {
    const v = reported.find((r) => r.hashAlg === hash && r.pcr === pcr);
    if (v === undefined)
      return `the quote covers PCR ${bankName(hash)}:${pcr} but no value was reported for it`;
    if (v.value.length !== digestSize(hash))
      return `the reported value of PCR ${bankName(hash)}:${pcr} has the wrong size`;
    out.push(v);
  }
  if (out.length === 0) return "the quote selects no PCRs";
  return out;
}

/** Why `now` is older than `before`, or undefined if it is not. */
function olderThan(now: QuoteClock, before: QuoteClock): string | undefined {
  if (now.resetCount < before.resetCount) {
    return `resetCount ${now.resetCount} is lower than an earlier quote's ${before.resetCount}`;
  }
  if (now.resetCount === before.resetCount) {
    if (now.restartCount < before.restartCount) {
      return `restartCount ${now.restartCount} is lower than an earlier quote's ${before.restartCount}`;
    }
    // Same boot and same clock is the earlier quote itself (or one made in the same millisecond).
    if (now.restartCount === before.restartCount && now.clock <= before.clock) {
      return `clock ${now.clock} ms is not later than an earlier quote's ${before.clock} ms`;
    }
  }
  return undefined;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}
