/**
 * Re-enrolment onto a new TPM (src/attestation/reenrolment.ts) against real swtpm processes: what
 * `lockbox recover` proves about a machine's new TPM (its EK, its certificate chained to the
 * manufacturer CA or left out, credential activation binding the AK, a quote meeting the member's
 * policy), and the record it leaves for the peer: MACed under the CMK, so another key or an altered
 * field is detected, and a damaged file is refused as DATA_LOSS. The real-process recovery of a whole
 * cluster is test/e2e/cluster-recovery.test.ts.
 */
import test from "ava";
import { X509Certificate, randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { localCaCertPaths } from "../../tpm/swtpm/index.js";
import { quotePolicyForValues, type QuotePolicy } from "../../tpm/verify/quote-policy.js";
import { verifyQuote } from "../../tpm/verify/quote-verifier.js";
import {
  REENROLMENT_FILE,
  proveNewTpm,
  readReenrolment,
  verifyReenrolmentMac,
  writeReenrolment,
  type ReenrolmentInput,
} from "../../src/attestation/reenrolment.js";
import { answerRequote } from "../../src/attestation/requote.js";
import { isLockboxError } from "../../src/errors.js";
import { POLICY_PCRS, machine, type Machine } from "./join-fixture.js";
import { newCaDir, sharedLocalCaDir, startProvisionedSwtpm } from "../tpm/swtpm-fixture.js";

async function policyOf(m: Machine): Promise<QuotePolicy> {
  return quotePolicyForValues(await m.pcrValues(), {
    hashAlg: "sha256",
    signatureScheme: "ecdsa",
    firmwareVersionMin: "00000000.00000000",
  });
}

async function cas(dir: string): Promise<X509Certificate[]> {
  const p = localCaCertPaths(dir);
  return [
    new X509Certificate(await fs.readFile(p.root)),
    new X509Certificate(await fs.readFile(p.intermediate)),
  ];
}

const input = (policy: QuotePolicy, manufacturerCas: X509Certificate[]): ReenrolmentInput => ({
  clusterId: "cluster-x",
  peerId: "peer-2",
  epoch: 2,
  policyName: "dev-peer-2",
  policy,
  manufacturerCas,
  nowMs: 1_700_000_000_000,
});

test("a new TPM is proved: its EK (certificate chained to the manufacturer CA), an AK bound by credential activation whose re-quotes verify, a quote meeting the policy; nothing left in the TPM", async (t) => {
  const m = await machine(t);
  const record = await proveNewTpm(m.tpm, input(await policyOf(m), await cas(sharedLocalCaDir())));
  t.is(record.ekPublicKey, Buffer.from(m.ekSpki).toString("base64"));
  t.is(record.ekCertificate, Buffer.from(m.ekCertificateDer).toString("base64"));
  t.like(record, { clusterId: "cluster-x", peerId: "peer-2", epoch: 2, policy: "dev-peer-2" });
  t.regex(record.quoteClock.clock, /^[0-9]+$/);
  // The recorded AK is the one this TPM re-quotes with (what the leader will check after the commit).
  const nonce = randomBytes(32);
  const pcrs = POLICY_PCRS.map((pcr) => ({ hashAlg: TPM_ALG_ID.SHA256, pcr }));
  const answer = await answerRequote(m.tpm, { nonce, pcrs });
  const verdict = verifyQuote({
    attestBytes: answer.attest,
    signature: answer.signature,
    akPublic: new Uint8Array(Buffer.from(record.akPublic, "base64")),
    expectedNonce: nonce,
    pcrValues: answer.pcrValues,
    policy: await policyOf(m),
    previous: { ...record.quoteClock, clock: BigInt(record.quoteClock.clock) },
  });
  t.true(verdict.ok, verdict.ok ? "" : JSON.stringify(verdict.failures));
  t.deepEqual(await m.fixture.leftoverHandles(), []);
});

test("without a manufacturer CA the EK is recorded by its public key only; an EK certificate of another CA, or a quote outside the policy, is refused naming why", async (t) => {
  const m = await machine(t);
  const policy = await policyOf(m);
  const byKey = await proveNewTpm(m.tpm, input(policy, []));
  t.is(byKey.ekCertificate, "");
  t.is(byKey.ekPublicKey, Buffer.from(m.ekSpki).toString("base64"));

  const otherCa = await newCaDir(t);
  await startProvisionedSwtpm(t, { caDir: otherCa }); // creates that CA
  const wrongCa = await proveNewTpm(m.tpm, input(policy, await cas(otherCa))).catch((e: unknown) => e);
  t.true(isLockboxError(wrongCa, "FAILED_PRECONDITION"), String(wrongCa));
  t.regex((wrongCa as Error).message, /EK certificate does not chain to the manufacturer CA/);

  await m.tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0x33))]);
  const outside = await proveNewTpm(m.tpm, input(policy, [])).catch((e: unknown) => e);
  t.true(isLockboxError(outside, "FAILED_PRECONDITION"), String(outside));
  t.regex((outside as Error).message, /quote does not meet policy dev-peer-2: .*pcr-policy/);
  t.deepEqual(await m.fixture.leftoverHandles(), []);
});

test("the record on disk: its MAC verifies only under the CMK that wrote it and over the fields as written; a damaged, unknown-field or oversized file is DATA_LOSS; no file is none", async (t) => {
  const dir = await fs.mkdtemp(join(tmpdir(), "lockbox-reenrol-"));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  t.is(await readReenrolment(dir), undefined);
  const cmk = randomBytes(32);
  const record = {
    clusterId: "cluster-x",
    peerId: "peer-2",
    epoch: 2,
    ekPublicKey: Buffer.from("ek").toString("base64"),
    ekCertificate: "",
    akPublic: Buffer.from("ak").toString("base64"),
    policy: "dev-peer-2",
    quoteClock: { clock: "12345", resetCount: 1, restartCount: 0 },
    createdAtMs: 1,
  };
  const path = await writeReenrolment(dir, record, cmk);
  t.is(path, join(dir, REENROLMENT_FILE));
  t.is((await fs.stat(path)).mode & 0o777, 0o600);
  const read = (await readReenrolment(dir))!;
  t.deepEqual(read.record, record);
  t.true(verifyReenrolmentMac(read.record, read.mac, cmk));
  t.false(verifyReenrolmentMac(read.record, read.mac, randomBytes(32)), "another CMK");
  // An altered field (another AK) keeps the file's shape but not its MAC.
  const text = JSON.parse(await fs.readFile(path, "utf8")) as Record<string, unknown>;
  await fs.writeFile(path, JSON.stringify({ ...text, akPublic: Buffer.from("evil").toString("base64") }));
  const altered = (await readReenrolment(dir))!;
  t.false(verifyReenrolmentMac(altered.record, altered.mac, cmk));
  for (const [what, body] of [
    ["not JSON", "{"],
    ["an unknown field", JSON.stringify({ ...text, extra: 1 })],
    ["a missing field", JSON.stringify({ ...text, akPublic: undefined })],
    ["a bad clock", JSON.stringify({ ...text, quoteClock: { clock: "-1", resetCount: 0, restartCount: 0 } })],
    ["oversized", JSON.stringify({ ...text, policy: "x".repeat(20_000) })],
  ] as const) {
    await fs.writeFile(path, body);
    const e = await readReenrolment(dir).catch((err: unknown) => err);
    t.true(isLockboxError(e, "DATA_LOSS"), `${what}: ${String(e)}`);
  }
});
