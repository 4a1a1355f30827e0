/**
 * Re-enrolment of a member onto a new TPM (issue 9, acceptance "Recovery"): when every TPM of a cluster
 * is lost, `lockbox recover` rebuilds the CMK from k recovery shares and seals it to each machine's new
 * TPM; but the control state still names each member's OLD EK and AK, so the re-quotes of continuous
 * attestation would fail and fence every recovered peer. The holder of the shares is the recovery
 * authority: with the TPM in hand, `recover` proves what the new TPM is, exactly as a join does, and
 * writes the result as a re-enrolment record, MACed under a subkey of the rebuilt CMK:
 *
 * 1. the EK: its public area, and its certificate, which must chain to a manufacturer CA when the
 *    operator gives one (`--manufacturer-ca`); without one, only the EK public key is recorded, as an
 *    operator's enrolment by public key is;
 * 2. credential activation: a secret wrapped to that EK and bound to the AK's name (MakeCredential)
 *    is released by this TPM (ActivateCredential) only when the AK lives beside the EK;
 * 3. a quote over the member's policy PCRs with a fresh nonce, checked by verifyQuote against that
 *    policy as the control state holds it (the same checks, in the same order, as a join's quote).
 *
 * The peer, once started (src/peer/pending-reenrolment.ts), checks the record's MAC with its CMK and
 * that its TPM's AK is the recorded one, then commits it (control command member.reenroll) and audits
 * it. Until then it answers no re-quote (UNAVAILABLE): a member that does not answer is marked down,
 * never fenced. After it, the raft leader re-quotes the member against the new AK and its policy like
 * any other: re-enrolment replaces what the member is checked against, not the checking.
 */
import {
  type X509Certificate,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";
import { constants } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { isNodeId } from "../../cluster/node-id.js";
import { withTransient } from "../../tpm/client/scoped.js";
import type { Tpm } from "../../tpm/client/tpm.js";
import { activateCredential } from "../../tpm/activate-credential.js";
import { makeCredential } from "../../tpm/credential/make-credential.js";
import {
  checkEkCertificateKey,
  parseCertificates,
  verifyEkCertificateChain,
} from "../../tpm/ek/ek-certificate.js";
import { createAk } from "../../tpm/keys/ak.js";
import { createEk, readEkCertificate } from "../../tpm/keys/ek.js";
import { publicKeyFromTpmt } from "../../tpm/keys/public-key.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import type { TpmtPublic } from "../../tpm/spec/public.js";
import { parseQuotePolicy, type QuotePolicy } from "../../tpm/verify/quote-policy.js";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";
import { LockboxError } from "../errors.js";
import { syncDirectory, writeNewFile } from "../pki/pem-files.js";
import { describeJoinRefusal, quoteRefusal } from "./join-refusal.js";
import { selection } from "./joiner.js";
import { restoreClockSafe } from "./restore-clock-safe.js";

/** In the peer's directory, beside its config: written by `recover`, consumed by the peer once committed. */
export const REENROLMENT_FILE = "reenrolment.json";
const RECORD_BYTES_MAX = 16 * 1024;
const MAC_PURPOSE = "lockbox/v1/re-enrolment";
const NONCE_BYTES = 32;
const CREDENTIAL_BYTES = 32;

/** What `recover` proved about a member's new TPM; every byte field is base64. */
export interface ReenrolmentRecord {
  readonly clusterId: string;
  readonly peerId: string;
  /** The CMK epoch whose subkey MACs this record (the one the shares rebuilt). */
  readonly epoch: number;
  /** SPKI DER of the new EK. */
  readonly ekPublicKey: string;
  /** DER of its certificate, when it was checked against a manufacturer CA; "" otherwise. */
  readonly ekCertificate: string;
  /** The AK (TPMT_PUBLIC, marshalled) credential activation bound to that EK. */
  readonly akPublic: string;
  /** The policy the quote met, and the quote's TPM clock (the 64-bit clock as a decimal string). */
  readonly policy: string;
  readonly quoteClock: { readonly clock: string; readonly resetCount: number; readonly restartCount: number };
  readonly createdAtMs: number;
}

export interface ReenrolmentInput {
  readonly clusterId: string;
  readonly peerId: string;
  readonly epoch: number;
  readonly policyName: string;
  readonly policy: QuotePolicy;
  /** Roots and intermediates the EK certificate must chain to; empty: the certificate is not recorded. */
  readonly manufacturerCas: readonly X509Certificate[];
  readonly nowMs: number;
}

/**
 * Proves what `tpm` is (EK, credential activation, a quote meeting the policy) and returns the record.
 * Throws a LockboxError FAILED_PRECONDITION naming the failed step; the TPM is left as it was.
 */
export async function proveNewTpm(tpm: Tpm, input: ReenrolmentInput): Promise<ReenrolmentRecord> {
  const parsed = parseQuotePolicy(input.policy);
  if ("problem" in parsed) {
    throw new LockboxError("FAILED_PRECONDITION", `policy ${input.policyName}: ${parsed.problem}`);
  }
  const pcrs = parsed.pcrs.map((e) => ({ hashAlg: e.hashAlg, pcr: e.pcr }));
  return tpm.exclusive(async () => {
    const ekPublic = await withTransient(
      tpm,
      () => createEk(tpm),
      async (ek) => ek.publicArea,
    );
    const ekCertificate = await checkedEkCertificate(tpm, ekPublic, input.manufacturerCas);
    return withTransient(
      tpm,
      () => createAk(tpm),
      async (ak) => {
        // credential activation: the TPM releases the secret only when the AK is beside this EK.
        const credential = randomBytes(CREDENTIAL_BYTES);
        const made = makeCredential({ ekPublic, akName: ak.name, credential });
        const released = await activateCredential(tpm, ak, {
          credentialBlob: made.credentialBlob,
          secret: made.secret,
        }).catch((err: unknown) => {
          throw new LockboxError(
            "FAILED_PRECONDITION",
            `credential activation failed on the new TPM (its AK and EK are not in one TPM): ${errorText(err)}`,
          );
        });
        if (!bytesEqual(released, credential)) {
          throw new LockboxError("FAILED_PRECONDITION", "credential activation released another secret");
        }
        // the quote, checked as a join's is, against the member's policy.
        const nonce = randomBytes(NONCE_BYTES);
        const sel = selection(pcrs);
        await restoreClockSafe(tpm);
        const q = await quote(tpm, ak, { pcrs: sel, extraData: nonce });
        const read = await tpm.pcrRead(sel);
        const verdict = verifyQuote({
          attestBytes: q.attestBytes,
          signature: encode((w) => q.signature.marshal(w)),
          akPublic: ak.publicArea,
          expectedNonce: nonce,
          pcrValues: read.values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest })),
          policy: input.policy,
        });
        if (!verdict.ok) {
          throw new LockboxError(
            "FAILED_PRECONDITION",
            `the new TPM's quote does not meet policy ${input.policyName}: ${describeJoinRefusal(quoteRefusal(verdict.failures))}` +
              " (approve its state with `lockbox policy add` on the cluster first, or check the machine)",
          );
        }
        return {
          clusterId: input.clusterId,
          peerId: input.peerId,
          epoch: input.epoch,
          ekPublicKey: b64(publicKeyFromTpmt(ekPublic).export({ type: "spki", format: "der" })),
          ekCertificate: ekCertificate === undefined ? "" : b64(ekCertificate),
          akPublic: b64(encode((w) => ak.publicArea.marshal(w))),
          policy: input.policyName,
          quoteClock: {
            clock: verdict.clock.clock.toString(),
            resetCount: verdict.clock.resetCount,
            restartCount: verdict.clock.restartCount,
          },
          createdAtMs: input.nowMs,
        };
      },
    );
  });
}

/** The EK certificate to record: only one that certifies this EK and chains to a given manufacturer CA. */
async function checkedEkCertificate(
  tpm: Tpm,
  ekPublic: TpmtPublic,
  cas: readonly X509Certificate[],
): Promise<Uint8Array | undefined> {
  if (cas.length === 0) return undefined;
  let der: Uint8Array;
  try {
    der = await readEkCertificate(tpm);
  } catch (err) {
    throw new LockboxError(
      "FAILED_PRECONDITION",
      `the new TPM has no readable EK certificate to check against --manufacturer-ca: ${errorText(err)}`,
    );
  }
  try {
    const [cert] = parseCertificates(der);
    checkEkCertificateKey(cert!, ekPublic);
    verifyEkCertificateChain(cert!, cas);
  } catch (err) {
    throw new LockboxError(
      "FAILED_PRECONDITION",
      `the new TPM's EK certificate does not chain to the manufacturer CA: ${errorText(err)}`,
    );
  }
  return der;
}

// ---- the record on disk ----------------------------------------------------------------------------

/** Writes the record, MACed under `cmk` (epoch record.epoch), atomically into `dir`. */
export async function writeReenrolment(
  dir: string,
  record: ReenrolmentRecord,
  cmk: Uint8Array,
): Promise<string> {
  const path = join(dir, REENROLMENT_FILE);
  const temp = join(dir, `.${REENROLMENT_FILE}.new`);
  await rm(temp, { force: true });
  const text = JSON.stringify({ ...record, mac: b64(recordMac(record, cmk)) }, null, 2) + "\n";
  await writeNewFile(temp, text, 0o600);
  await rename(temp, path);
  await syncDirectory(dir);
  return path;
}

/**
 * The pending record in `dir`, undefined when there is none. Throws a LockboxError DATA_LOSS when the
 * file is damaged, too long or not a record; its MAC is checked by verifyReenrolmentMac, with the CMK.
 */
export async function readReenrolment(
  dir: string,
): Promise<{ record: ReenrolmentRecord; mac: Uint8Array } | undefined> {
  const path = join(dir, REENROLMENT_FILE);
  let text: string;
  try {
    const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const buffer = Buffer.alloc(RECORD_BYTES_MAX + 1);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      if (bytesRead > RECORD_BYTES_MAX) throw damaged(path, `longer than ${RECORD_BYTES_MAX} bytes`);
      text = buffer.subarray(0, bytesRead).toString("utf8");
    } finally {
      await handle.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw damaged(path, "not JSON");
  }
  const problem = recordProblem(value);
  if (problem !== undefined) throw damaged(path, problem);
  const { mac, ...record } = value as ReenrolmentRecord & { mac: string };
  return { record, mac: new Uint8Array(Buffer.from(mac, "base64")) };
}

export async function removeReenrolment(dir: string): Promise<void> {
  await rm(join(dir, REENROLMENT_FILE), { force: true });
  await syncDirectory(dir);
}

/** Whether `mac` is the record's MAC under `cmk`: only a holder of the CMK (the recovery shares) made it. */
export function verifyReenrolmentMac(record: ReenrolmentRecord, mac: Uint8Array, cmk: Uint8Array): boolean {
  const expected = recordMac(record, cmk);
  return mac.length === expected.length && timingSafeEqual(mac, expected);
}

function recordMac(record: ReenrolmentRecord, cmk: Uint8Array): Uint8Array {
  const key = new Uint8Array(hkdfSync("sha256", cmk, new Uint8Array(0), MAC_PURPOSE, 32));
  try {
    // Canonical: the fields in a fixed order, whatever order the file had.
    const body = JSON.stringify([
      record.clusterId,
      record.peerId,
      record.epoch,
      record.ekPublicKey,
      record.ekCertificate,
      record.akPublic,
      record.policy,
      record.quoteClock.clock,
      record.quoteClock.resetCount,
      record.quoteClock.restartCount,
      record.createdAtMs,
    ]);
    return new Uint8Array(createHmac("sha256", key).update(body).digest());
  } finally {
    key.fill(0);
  }
}

const RECORD_KEYS = [
  "clusterId",
  "peerId",
  "epoch",
  "ekPublicKey",
  "ekCertificate",
  "akPublic",
  "policy",
  "quoteClock",
  "createdAtMs",
  "mac",
];
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function recordProblem(v: unknown): string | undefined {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not an object";
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  const extra = keys.find((k) => !RECORD_KEYS.includes(k));
  if (extra !== undefined) return `unknown field ${extra}`;
  const missing = RECORD_KEYS.find((k) => !(k in o));
  if (missing !== undefined) return `missing field ${missing}`;
  const str = (k: string, max: number, re?: RegExp): boolean =>
    typeof o[k] === "string" &&
    (o[k] as string).length <= max &&
    (re === undefined || re.test(o[k] as string));
  const int = (x: unknown, max: number): boolean =>
    Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= max;
  if (!str("clusterId", 128, /^[\x21-\x7e]+$/)) return "clusterId";
  if (!isNodeId(o.peerId)) return "peerId";
  if (!int(o.epoch, 0xffff_ffff) || o.epoch === 0) return "epoch";
  if (!str("ekPublicKey", 2048, BASE64) || o.ekPublicKey === "") return "ekPublicKey";
  if (!str("ekCertificate", 8192, BASE64)) return "ekCertificate";
  if (!str("akPublic", 2048, BASE64) || o.akPublic === "") return "akPublic";
  if (!str("policy", 64, /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/)) return "policy";
  if (!int(o.createdAtMs, 8_640_000_000_000_000)) return "createdAtMs";
  if (!str("mac", 64, BASE64)) return "mac";
  const c = o.quoteClock as Record<string, unknown> | null;
  if (
    typeof c !== "object" ||
    c === null ||
    Object.keys(c).sort().join() !== "clock,resetCount,restartCount" ||
    typeof c.clock !== "string" ||
    !/^(0|[1-9][0-9]{0,19})$/.test(c.clock) ||
    BigInt(c.clock) > 0xffff_ffff_ffff_ffffn ||
    !int(c.resetCount, 0xffff_ffff) ||
    !int(c.restartCount, 0xffff_ffff)
  ) {
    return "quoteClock";
  }
  return undefined;
}

/** The marshalled AK this TPM makes now (the AK is a primary: the same TPM gives the same key). */
export async function currentAkPublic(tpm: Tpm): Promise<string> {
  return tpm.exclusive(() =>
    withTransient(
      tpm,
      () => createAk(tpm),
      async (ak) => b64(encode((w) => ak.publicArea.marshal(w))),
    ),
  );
}

/** SHA-256 (hex) of a base64 field, to name an EK or AK in logs and audit records without its bytes. */
export function fingerprint(base64: string): string {
  return createHash("sha256").update(Buffer.from(base64, "base64")).digest("hex");
}

function damaged(path: string, problem: string): LockboxError {
  return new LockboxError(
    "DATA_LOSS",
    `${path}: not a re-enrolment record (${problem}); remove it and run recover again`,
  );
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
