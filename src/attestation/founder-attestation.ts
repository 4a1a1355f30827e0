/**
 * The founding peer's TPM identity, made by `lockbox init --tpm` the way a joiner's is made by the
 * attested join, so that continuous attestation re-quotes the founder like any other member and can
 * fence it: its EK, an AK proven by credential activation to live next to that EK (the founder wraps
 * a fresh secret to its own EK for the AK's name and its TPM must release it), a PCR policy approving
 * its PCRs as they are at init, and a first quote checked against that policy (so a founder whose AK
 * cannot sign what the monitor will check is refused at init, not fenced later). The leader records it
 * with the same entries a join commits (founding-duties.ts): policy.put, member.enroll, member.admit,
 * member.confirm; it is written to DIR/founder-attestation.json for that, and holds no secret.
 */
import { createPublicKey, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { withTransient } from "../../tpm/client/scoped.js";
import type { Tpm } from "../../tpm/client/tpm.js";
import { activateCredential } from "../../tpm/activate-credential.js";
import { makeCredential } from "../../tpm/credential/make-credential.js";
import { createAk } from "../../tpm/keys/ak.js";
import { createEk, readEkCertificate } from "../../tpm/keys/ek.js";
import { publicKeyFromTpmt } from "../../tpm/keys/public-key.js";
import { decodeExact } from "../../tpm/marshal/reader.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { TpmtPublic } from "../../tpm/spec/public.js";
import { type QuotePolicy, parseQuotePolicy, quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";
import { LockboxError } from "../errors.js";
import { restoreClockSafe } from "./restore-clock-safe.js";

export const FOUNDER_ATTESTATION_FILE = "founder-attestation.json";
const VERSION = 1;
const FILE_BYTES_MAX = 64 * 1024;

export interface FounderAttestation {
  readonly version: typeof VERSION;
  /** Base64 DER SubjectPublicKeyInfo of the EK. */
  readonly ekPublicKey: string;
  /** Base64 DER of the EK certificate from NV, or "" when the TPM holds none. */
  readonly ekCertificate: string;
  /** Base64 of the AK's TPMT_PUBLIC, marshalled: the key re-quotes are checked against. */
  readonly akPublic: string;
  readonly policyName: string;
  readonly policy: QuotePolicy;
  /** The TPM clock of the init-time quote: the first re-quote must be later. */
  readonly quoteClock: { clock: string; resetCount: number; restartCount: number };
}

/** Makes the founder's attestation record on its own TPM (init). Throws a LockboxError naming the step that failed. */
export async function attestFounder(
  tpm: Tpm,
  p: { peerId: string; pcrs: readonly number[] },
): Promise<FounderAttestation> {
  const ekPublic = await withTransient(
    tpm,
    () => createEk(tpm),
    async (ek) => ek.publicArea,
  );
  const ekCertificate = await readEkCertificate(tpm).catch(() => new Uint8Array(0));
  const selection = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [...p.pcrs]);
  return withTransient(
    tpm,
    () => createAk(tpm),
    async (ak) => {
      // Credential activation against its own EK: the AK is this TPM's, as a joiner's must be.
      const credential = randomBytes(32);
      const made = makeCredential({ ekPublic, akName: ak.name, credential });
      const released = await activateCredential(tpm, ak, {
        credentialBlob: made.credentialBlob,
        secret: made.secret,
      });
      if (released.length !== credential.length || !timingSafeEqual(released, credential)) {
        throw new LockboxError(
          "FAILED_PRECONDITION",
          "the TPM's AK is not next to its EK (credential activation)",
        );
      }
      const read = await tpm.pcrRead(selection);
      const values = read.values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest }));
      const policy = quotePolicyForValues(values, {
        hashAlg: "sha256",
        signatureScheme: "ecdsa",
        firmwareVersionMin: "00000000.00000000",
      });
      const nonce = randomBytes(32);
      await restoreClockSafe(tpm);
      const q = await quote(tpm, ak, { pcrs: selection, extraData: nonce });
      const verdict = verifyQuote({
        attestBytes: q.attestBytes,
        signature: encode((w) => q.signature.marshal(w)),
        akPublic: ak.publicArea,
        expectedNonce: nonce,
        pcrValues: values,
        policy,
      });
      if (!verdict.ok) {
        throw new LockboxError(
          "FAILED_PRECONDITION",
          `the TPM's own quote fails its PCR policy: ${verdict.failures.map((f) => f.code).join(", ")}`,
        );
      }
      return {
        version: VERSION,
        ekPublicKey: Buffer.from(
          publicKeyFromTpmt(ekPublic).export({ type: "spki", format: "der" }),
        ).toString("base64"),
        ekCertificate: Buffer.from(ekCertificate).toString("base64"),
        akPublic: Buffer.from(encode((w) => ak.publicArea.marshal(w))).toString("base64"),
        policyName: `founder-${p.peerId}`,
        policy,
        quoteClock: {
          clock: verdict.clock.clock.toString(),
          resetCount: verdict.clock.resetCount,
          restartCount: verdict.clock.restartCount,
        },
      };
    },
  );
}

/**
 * Reads DIR/founder-attestation.json: undefined when there is none (a peer that joined, or a founder
 * made without a TPM). A damaged file is an error naming it; the control state checks every field again.
 */
export async function readFounderAttestation(path: string): Promise<FounderAttestation | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const bad = (what: string): LockboxError =>
    new LockboxError("FAILED_PRECONDITION", `${path}: ${what}; init wrote it, do not edit it`);
  if (text.length > FILE_BYTES_MAX) throw bad("too large");
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw bad("not JSON");
  }
  if (typeof v !== "object" || v === null || v.version !== VERSION) throw bad("unknown version");
  for (const k of ["ekPublicKey", "ekCertificate", "akPublic", "policyName"] as const) {
    if (typeof v[k] !== "string") throw bad(`${k} is not a string`);
  }
  try {
    createPublicKey({ key: Buffer.from(v.ekPublicKey as string, "base64"), format: "der", type: "spki" });
    decodeExact(Buffer.from(v.akPublic as string, "base64"), "AK TPMT_PUBLIC", TpmtPublic.unmarshal);
  } catch {
    throw bad("its EK or AK does not decode");
  }
  if ("code" in parseQuotePolicy(v.policy)) throw bad("its PCR policy is not valid");
  const c = v.quoteClock as Record<string, unknown> | null;
  if (
    typeof c !== "object" ||
    c === null ||
    typeof c.clock !== "string" ||
    !/^(0|[1-9][0-9]{0,19})$/.test(c.clock) ||
    !Number.isSafeInteger(c.resetCount) ||
    !Number.isSafeInteger(c.restartCount)
  ) {
    throw bad("its quote clock is not valid");
  }
  return v as unknown as FounderAttestation;
}
