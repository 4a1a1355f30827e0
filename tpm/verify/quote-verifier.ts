/**
 * verifyQuote: the verifier's side of TPM2_Quote (DESIGN.md §5). The checks
 * run in a fixed order (QUOTE_CHECKS):
 *   policy      the verifier's own policy is usable and approves at least one PCR,
 *   signature   the AK is a restricted signing key that can make the pinned scheme;
 *               the signature uses the pinned scheme and hash (and PSS salt) and verifies,
 *   attest      magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE, well-formed,
 *               qualifiedSigner = the AK's qualified name,
 *   nonce       extraData is the expected nonce, which is at least NONCE_BYTES_MIN long,
 *   pcr-digest  the reported values, in the quote's selection order, hash to pcrDigest,
 *   pcr-policy  every policy PCR is quoted, reported, and has an approved value,
 *   clock       `safe` is set, and clock/resetCount/restartCount are later than an
 *               earlier accepted quote's (the same clock counts as a replay),
 *   firmware    firmwareVersion is at least the policy's minimum.
 *
 * Every failure is a value (quote-failure.ts). A check that finds the input
 * unusable for what follows (no policy, no usable AK, no parseable attest)
 * stops the run, and the checks after it are returned in `notRun`; otherwise
 * all checks run, so one answer names every problem. Nothing here throws for
 * a bad quote: a check that throws is itself a failure ("check-error").
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
import {
  NONCE_BYTES_MIN,
  QUOTE_CHECKS,
  type QuoteCheck,
  type QuoteClock,
  type QuoteFailure,
  checkErrorFailure,
  quoteFailure,
} from "./quote-failure.js";
import { type PcrValue, bankName } from "./pcr-values.js";
import {
  type ParsedQuotePolicy,
  type QuotePolicy,
  SIGNATURE_HASHES,
  SIGNATURE_SCHEMES,
  firmwareVersionText,
  parseQuotePolicy,
} from "./quote-policy.js";
import { hierarchyQualifiedName, qualifiedName } from "./qualified-name.js";

export interface VerifyQuoteInput {
  /** TPM2B_ATTEST contents: the marshalled TPMS_ATTEST the TPM signed. */
  readonly attestBytes: Uint8Array;
  /** The marshalled TPMT_SIGNATURE returned by TPM2_Quote. */
  readonly signature: Uint8Array;
  /** The AK's public area, as enrolled: a TPMT_PUBLIC, or its marshalled bytes. */
  readonly akPublic: TpmtPublic | Uint8Array;
  /**
   * The qualified name of the AK's parent. Default: the endorsement hierarchy,
   * i.e. the AK is a primary key there. For an AK created under the EK (as
   * tpm2_createak does) pass `endorsementPrimaryQualifiedName(ekName)`.
   */
  readonly akParentQualifiedName?: Uint8Array;
  /** The extraData the quote must carry (the verifier's nonce, or H(nonce || key)); at least 16 bytes. */
  readonly expectedNonce: Uint8Array;
  /** The PCR values the attester reported alongside the quote. */
  readonly pcrValues: readonly PcrValue[];
  /** Approved PCR values and the pins (quote-policy.ts); checked here, so it may come straight from JSON. */
  readonly policy: QuotePolicy;
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
      readonly firmwareVersion: bigint;
    }
  | {
      readonly ok: false;
      /** In the order the checks ran; never empty. */
      readonly failures: readonly QuoteFailure[];
      /** Checks skipped because an earlier one stopped the run, in order; empty if all ran. */
      readonly notRun: readonly QuoteCheck[];
    };

export function verifyQuote(input: VerifyQuoteInput): VerifyQuoteResult {
  const run: Run = { input, failures: [] };
  for (let i = 0; i < QUOTE_CHECKS.length; i++) {
    const check = QUOTE_CHECKS[i]!;
    let next: Next;
    try {
      next = CHECKS[check](run);
    } catch (err) {
      // A check must not throw; if one does (a bug, or input shaped in a way not foreseen), refuse.
      run.failures.push(checkErrorFailure(check, err instanceof Error ? err.name : typeof err));
      next = "stop";
    }
    if (next === "stop") return { ok: false, failures: run.failures, notRun: QUOTE_CHECKS.slice(i + 1) };
  }
  const { attest, ak, quoted } = run;
  if (run.failures.length > 0) return { ok: false, failures: run.failures, notRun: [] };
  // Every check passed, so each filled in what it found; if one did not, that is a bug here: refuse.
  if (attest === undefined || ak === undefined || quoted === undefined) {
    return { ok: false, failures: [checkErrorFailure("firmware", "IncompleteRun")], notRun: [] };
  }
  const c = attest.clockInfo;
  const previous = input.previous;
  return {
    ok: true,
    clock: { clock: c.clock, resetCount: c.resetCount, restartCount: c.restartCount, safe: c.safe },
    akName: ak.name,
    quotedPcrs: quoted,
    restartedSincePrevious:
      previous !== undefined &&
      (c.resetCount !== previous.resetCount || c.restartCount !== previous.restartCount),
    firmwareVersion: attest.firmwareVersion,
  };
}

/** What the checks learn and pass on; each check fills in what later ones need. */
interface Run {
  readonly input: VerifyQuoteInput;
  readonly failures: QuoteFailure[];
  policy?: ParsedQuotePolicy;
  ak?: DecodedAk;
  attest?: TpmsAttest;
  quote?: TpmsQuoteInfo;
  quoted?: PcrValue[];
  /** The hash the signature names; the TPM computed pcrDigest with it. */
  signatureHash?: number;
}
type Next = "continue" | "stop";

const CHECKS: Record<QuoteCheck, (run: Run) => Next> = {
  policy: checkPolicy,
  signature: checkSignature,
  attest: checkAttest,
  nonce: checkNonce,
  "pcr-digest": checkPcrDigest,
  "pcr-policy": checkPcrPolicy,
  clock: checkClock,
  firmware: checkFirmware,
};

function checkPolicy(run: Run): Next {
  const parsed = parseQuotePolicy(run.input.policy);
  if ("problem" in parsed) {
    run.failures.push(quoteFailure(parsed.code, { field: parsed.field, problem: parsed.problem }));
    return "stop"; // without pins and approved values, no answer could be trusted
  }
  run.policy = parsed;
  return "continue";
}

function checkSignature(run: Run): Next {
  const policy = run.policy!;
  const ak = decodeAk(run.input.akPublic, policy);
  if ("code" in ak) {
    run.failures.push(ak);
    return "stop"; // without a usable AK neither the signature nor the signer can be checked
  }
  run.ak = ak;

  let sig: TpmtSignature;
  try {
    sig = decodeExact(run.input.signature, "TPMT_SIGNATURE", TpmtSignature.unmarshal);
  } catch (err) {
    run.failures.push(quoteFailure("signature-malformed", { problem: errorText(err) }));
    return "continue"; // the attest's own structure is still worth naming
  }
  const s = sig.signature;
  const pinned = run.failures.length;
  if (s.sigAlg !== policy.signatureScheme) {
    run.failures.push(
      quoteFailure("signature-scheme-not-allowed", {
        expected: nameIn(SIGNATURE_SCHEMES, policy.signatureScheme),
        actual: nameIn(SIGNATURE_SCHEMES, s.sigAlg),
      }),
    );
  }
  const hash = "hash" in s ? s.hash : TPM_ALG_ID.NULL;
  if ((Object.values(SIGNATURE_HASHES) as number[]).includes(hash)) run.signatureHash = hash;
  if (hash !== policy.hashAlg) {
    run.failures.push(
      quoteFailure("signature-hash-not-allowed", {
        expected: nameIn(SIGNATURE_HASHES, policy.hashAlg),
        actual: nameIn(SIGNATURE_HASHES, hash),
      }),
    );
  }
  // Only a signature made as pinned is worth verifying; one that is not was refused above.
  if (run.failures.length > pinned) return "continue";

  const data = run.input.attestBytes;
  const nodeHash = nodeHashName(policy.hashAlg)!;
  if (s.sigAlg === TPM_ALG_ID.ECDSA) {
    const size = eccCurveInfo(ak.publicArea.eccParms().curveId).bytes;
    if (s.signatureR.length > size || s.signatureS.length > size) {
      run.failures.push(quoteFailure("signature-invalid", { reason: "r or s is longer than the curve" }));
      return "continue";
    }
    const rs = Buffer.concat([fixedWidth(s.signatureR, size), fixedWidth(s.signatureS, size)]);
    if (!verify(nodeHash, data, { key: ak.key, dsaEncoding: "ieee-p1363" }, rs)) {
      run.failures.push(quoteFailure("signature-invalid", { reason: "ECDSA does not verify with the AK" }));
    }
  } else if (s.sigAlg === TPM_ALG_ID.RSASSA || s.sigAlg === TPM_ALG_ID.RSAPSS) {
    const pss = s.sigAlg === TPM_ALG_ID.RSAPSS;
    const padding = pss ? constants.RSA_PKCS1_PSS_PADDING : constants.RSA_PKCS1_PADDING;
    const saltLength = policy.rsaPssSaltBytes ?? 0;
    if (!verify(nodeHash, data, { key: ak.key, padding, saltLength }, s.sig)) {
      // A genuine signature with another salt length is named as such (it is a pin, not a forgery).
      const otherSalt =
        pss &&
        verify(nodeHash, data, { key: ak.key, padding, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, s.sig);
      run.failures.push(
        otherSalt
          ? quoteFailure("signature-salt-length-not-allowed", { expectedBytes: saltLength })
          : quoteFailure("signature-invalid", {
              reason: `${pss ? "RSA-PSS" : "RSASSA"} does not verify with the AK`,
            }),
      );
    }
  }
  return "continue";
}

function checkAttest(run: Run): Next {
  const raw = run.input.attestBytes;
  // Magic and type are read raw first, so they are named even when the rest is garbage.
  if (raw.length < 6) {
    run.failures.push(quoteFailure("attest-too-short", { bytes: raw.length }));
    return "stop";
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const magic = view.getUint32(0);
  const type = view.getUint16(4);
  if (magic !== TPM_GENERATED_VALUE) {
    run.failures.push(
      quoteFailure("attest-magic", { expected: hexN(TPM_GENERATED_VALUE, 8), actual: hexN(magic, 8) }),
    );
  }
  if (type !== TPM_ST.ATTEST_QUOTE) {
    run.failures.push(
      quoteFailure("attest-type", { expected: hexN(TPM_ST.ATTEST_QUOTE, 4), actual: hexN(type, 4) }),
    );
    return "stop"; // not a quote: there is no PCR selection, digest or nonce to check
  }
  try {
    run.attest = decodeExact(raw, "TPMS_ATTEST", TpmsAttestCodec.unmarshal);
    run.quote = run.attest.quote();
  } catch (err) {
    run.failures.push(quoteFailure("attest-malformed", { problem: errorText(err) }));
    return "stop";
  }
  const parentQn = run.input.akParentQualifiedName ?? hierarchyQualifiedName(TPM_RH.ENDORSEMENT);
  const expected = qualifiedName(parentQn, run.ak!.name);
  if (!bytesEqual(run.attest.qualifiedSigner, expected)) {
    // Another key signed it, or the AK under another parent than the one enrolled.
    run.failures.push(
      quoteFailure("signer-mismatch", { expected: hex(expected), actual: hex(run.attest.qualifiedSigner) }),
    );
  }
  return "continue";
}

function checkNonce(run: Run): Next {
  const expected = run.input.expectedNonce;
  const actual = run.attest!.extraData;
  if (expected.length < NONCE_BYTES_MIN) {
    run.failures.push(quoteFailure("nonce-too-short", { bytes: expected.length, minBytes: NONCE_BYTES_MIN }));
  }
  if (!bytesEqual(actual, expected)) {
    run.failures.push(quoteFailure("nonce-mismatch", { expected: hex(expected), actual: hex(actual) }));
  }
  return "continue";
}

function checkPcrDigest(run: Run): Next {
  const quote = run.quote!;
  const selected = quote.pcrSelect.entries();
  if (selected.length === 0) {
    run.failures.push(quoteFailure("pcr-selection-empty"));
    return "continue";
  }
  const quoted: PcrValue[] = [];
  const before = run.failures.length;
  for (const { hash, pcr } of selected) {
    const v = reportedValue(run.input.pcrValues, hash, pcr);
    if (v === undefined) {
      run.failures.push(quoteFailure("pcr-quoted-not-reported", { bank: bankName(hash), pcr }));
    } else if (v.value.length !== digestSize(hash)) {
      run.failures.push(
        quoteFailure("pcr-value-wrong-size", {
          bank: bankName(hash),
          pcr,
          bytes: v.value.length,
          expectedBytes: digestSize(hash) ?? 0,
        }),
      );
    } else quoted.push(v);
  }
  if (run.failures.length > before) return "continue";
  // The TPM hashes the selected values with the signing scheme's hash. Where that is not the pinned
  // one, the signature check has said so; checking the digest with it still shows whether the values fit.
  const hashAlg = run.signatureHash ?? run.policy!.hashAlg;
  const computed = tpmHash(hashAlg, ...quoted.map((v) => v.value));
  if (!bytesEqual(computed, quote.pcrDigest)) {
    run.failures.push(
      quoteFailure("pcr-digest-mismatch", {
        hashAlg: bankName(hashAlg),
        quoted: hex(quote.pcrDigest),
        computed: hex(computed),
      }),
    );
  } else run.quoted = quoted;
  return "continue";
}

function checkPcrPolicy(run: Run): Next {
  const selected = run.quote!.pcrSelect.entries();
  for (const entry of run.policy!.pcrs) {
    const at = { bank: bankName(entry.hashAlg), pcr: entry.pcr };
    const reported = reportedValue(run.input.pcrValues, entry.hashAlg, entry.pcr);
    if (!selected.some((e) => e.hash === entry.hashAlg && e.pcr === entry.pcr)) {
      run.failures.push(quoteFailure("policy-pcr-not-quoted", at));
    } else if (reported === undefined) {
      run.failures.push(quoteFailure("policy-pcr-not-reported", at));
    } else if (!entry.allowed.some((a) => bytesEqual(a, reported.value))) {
      run.failures.push(
        quoteFailure("policy-pcr-value-not-approved", {
          ...at,
          expected: entry.allowed.map(hex),
          actual: hex(reported.value),
        }),
      );
    }
  }
  return "continue";
}

function checkClock(run: Run): Next {
  const c = run.attest!.clockInfo;
  const now = { clock: c.clock.toString(), resetCount: c.resetCount, restartCount: c.restartCount };
  // Not safe: the TPM may have reported a later clock before (it lost power without saving it), so
  // neither its clock nor a comparison with an earlier quote's can be trusted.
  if (!c.safe) run.failures.push(quoteFailure("clock-not-safe", now));
  const before = run.input.previous;
  if (before === undefined) return "continue";
  const was = {
    previousClock: before.clock.toString(),
    previousResetCount: before.resetCount,
    previousRestartCount: before.restartCount,
  };
  if (c.resetCount < before.resetCount) {
    run.failures.push(quoteFailure("reset-count-went-back", { ...now, ...was }));
  } else if (c.resetCount === before.resetCount) {
    if (c.restartCount < before.restartCount) {
      run.failures.push(quoteFailure("restart-count-went-back", { ...now, ...was }));
    } else if (c.restartCount === before.restartCount && c.clock <= before.clock) {
      // Same boot and same clock is the earlier quote itself (or one made in the same millisecond).
      run.failures.push(quoteFailure("clock-not-advanced", { ...now, ...was }));
    }
  }
  return "continue";
}

function checkFirmware(run: Run): Next {
  const actual = run.attest!.firmwareVersion;
  const minimum = run.policy!.firmwareVersionMin;
  if (actual < minimum) {
    run.failures.push(
      quoteFailure("firmware-too-old", {
        minimum: firmwareVersionText(minimum),
        actual: firmwareVersionText(actual),
      }),
    );
  }
  return "continue";
}

interface DecodedAk {
  publicArea: TpmtPublic;
  key: KeyObject;
  name: Uint8Array;
}

/** The AK as a verification key for the pinned scheme, or why it cannot be one. */
function decodeAk(akPublic: TpmtPublic | Uint8Array, policy: ParsedQuotePolicy): DecodedAk | QuoteFailure {
  let publicArea: TpmtPublic;
  try {
    publicArea =
      akPublic instanceof TpmtPublic ? akPublic : decodeExact(akPublic, "TPMT_PUBLIC", TpmtPublic.unmarshal);
  } catch (err) {
    return quoteFailure("ak-malformed", { problem: errorText(err) });
  }
  // Only a restricted signing key that never leaves its TPM signs nothing but TPM-made structures.
  const required = TPMA_OBJECT.restricted | TPMA_OBJECT.sign | TPMA_OBJECT.fixedTPM;
  if ((publicArea.objectAttributes & required) !== required) {
    return quoteFailure("ak-not-restricted-signing", {
      objectAttributes: hexN(publicArea.objectAttributes, 8),
    });
  }
  const keyType = policy.signatureScheme === TPM_ALG_ID.ECDSA ? TPM_ALG_ID.ECC : TPM_ALG_ID.RSA;
  if (publicArea.type !== keyType) {
    return quoteFailure("ak-unsupported", {
      akType:
        publicArea.type === TPM_ALG_ID.ECC
          ? "ecc"
          : publicArea.type === TPM_ALG_ID.RSA
            ? "rsa"
            : hexN(publicArea.type, 4),
      signatureScheme: nameIn(SIGNATURE_SCHEMES, policy.signatureScheme),
    });
  }
  try {
    return { publicArea, key: publicKeyFromTpmt(publicArea), name: objectName(publicArea) };
  } catch (err) {
    return quoteFailure("ak-unsupported", { problem: errorText(err) });
  }
}

/** The first reported value for (bank, PCR): a genuine duplicate later in the list cannot hide a forged one. */
function reportedValue(reported: readonly PcrValue[], hashAlg: number, pcr: number): PcrValue | undefined {
  return reported.find((r) => r.hashAlg === hashAlg && r.pcr === pcr);
}

function nameIn(table: Record<string, number>, id: number): string {
  for (const [name, v] of Object.entries(table)) if (v === id) return name;
  return hexN(id, 4);
}

/** An error's message from our own decoders (they name the field); other errors by class only. */
function errorText(err: unknown): string {
  return err instanceof Error ? err.message : "error";
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

function hexN(n: number, digits: number): string {
  return n.toString(16).padStart(digits, "0");
}
