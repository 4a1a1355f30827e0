/**
 * verifyQuote against real quotes from swtpm, most made by tpm2-tools (an
 * independent TPM stack): it accepts a genuine quote and refuses each kind of
 * forgery, staleness, weak input or unpinned choice with its own code, the
 * check it belongs to, details naming what was expected and found, and the
 * checks not run after an early stop.
 */
import test, { type ExecutionContext } from "ava";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { withTransient } from "../../tpm/client/scoped.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { createAk } from "../../tpm/keys/ak.js";
import { encode } from "../../tpm/marshal/writer.js";
import { quote } from "../../tpm/quote.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { startSwtpm } from "../../tpm/swtpm/index.js";
import { objectName } from "../../tpm/spec/name.js";
import type { TpmtPublic } from "../../tpm/spec/public.js";
import type { PcrPolicyJson, PcrValue } from "../../tpm/verify/pcr-values.js";
import { endorsementPrimaryQualifiedName } from "../../tpm/verify/qualified-name.js";
import {
  QUOTE_CHECKS,
  type QuoteClock,
  type QuoteFailure,
  isQuoteFailureCode,
} from "../../tpm/verify/quote-failure.js";
import {
  type QuotePolicy,
  firmwareVersionText,
  quotePolicyForValues,
} from "../../tpm/verify/quote-policy.js";
import {
  type VerifyQuoteInput,
  type VerifyQuoteResult,
  verifyQuote,
} from "../../tpm/verify/quote-verifier.js";
import { type SwtpmFixture, startProvisionedSwtpm } from "./swtpm-fixture.js";
import { type AkOptions, Tpm2Tools } from "./tpm2-tools.js";

const PCRS = [0, 1, 2, 3, 7];
const SELECTION = "sha256:0,1,2,3,7";
const ANY_FIRMWARE = "00000000.00000000";
const ECDSA_SHA256 = {
  hashAlg: "sha256",
  signatureScheme: "ecdsa",
  firmwareVersionMin: ANY_FIRMWARE,
} as const;

interface Peer {
  fixture: SwtpmFixture;
  tools: Tpm2Tools;
  akPublic: TpmtPublic;
  /** QN(EK): the AK's parent, since tpm2_createak creates the AK under the EK. */
  akParent: Uint8Array;
}

/** A swtpm with tpm2-tools' EK and a fresh random AK under it. "fresh" gives a TPM of its own (another peer). */
async function peer(
  t: ExecutionContext,
  identity: "fresh" | "shared" = "shared",
  ak: AkOptions = {},
): Promise<Peer> {
  const fixture = await startProvisionedSwtpm(t, { identity });
  const tools = new Tpm2Tools(fixture.tcti, fixture.workDir);
  const { ekPublic, akPublic } = await tools.createEkAndAk(ak);
  return { fixture, tools, akPublic, akParent: endorsementPrimaryQualifiedName(objectName(ekPublic)) };
}

interface ToolQuote {
  attest: Uint8Array;
  signature: Uint8Array;
  pcrValues: PcrValue[];
}

async function quoteWithValues(
  p: Peer,
  nonce: Uint8Array,
  prefix = "q",
  sign: { hash?: string; scheme?: string } = {},
): Promise<ToolQuote> {
  const q = await p.tools.quote(SELECTION, nonce, prefix, sign);
  const pcrValues = await p.tools.readPcrs(PCRS);
  return { ...q, pcrValues };
}

/** The verifier's input for `q`, with a policy approving exactly its values under `pins`. */
function input(
  p: Peer,
  q: ToolQuote,
  nonce: Uint8Array,
  pins: Omit<QuotePolicy, "pcrs"> = ECDSA_SHA256,
): VerifyQuoteInput {
  return {
    attestBytes: q.attest,
    signature: q.signature,
    akPublic: p.akPublic,
    akParentQualifiedName: p.akParent,
    expectedNonce: nonce,
    pcrValues: q.pcrValues,
    policy: quotePolicyForValues(q.pcrValues, pins),
  };
}

function codes(r: VerifyQuoteResult): string[] {
  return r.ok ? [] : r.failures.map((f) => f.code);
}

function failures(r: VerifyQuoteResult): readonly QuoteFailure[] {
  return r.ok ? [] : r.failures;
}

function notRun(r: VerifyQuoteResult): readonly string[] {
  return r.ok ? [] : r.notRun;
}

function clockOf(r: VerifyQuoteResult): QuoteClock {
  if (!r.ok) throw new Error(`expected an accepted quote, got ${codes(r).join(",")}`);
  return r.clock;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** The checks after `check`, as notRun must list them when `check` stops the run. */
function after(check: (typeof QUOTE_CHECKS)[number]): string[] {
  return QUOTE_CHECKS.slice(QUOTE_CHECKS.indexOf(check) + 1);
}

test("accepts a genuine quote made by tpm2_quote, and refuses every single tampering with its own code", async (t) => {
  const p = await peer(t);
  const nonce = randomBytes(20);
  const q = await quoteWithValues(p, nonce);
  const good = verifyQuote(input(p, q, nonce));
  t.deepEqual(codes(good), []);
  t.true(good.ok);
  if (good.ok) {
    t.deepEqual(good.akName, objectName(p.akPublic));
    t.deepEqual(
      good.quotedPcrs.map((v) => v.pcr),
      PCRS,
    );
    t.true(good.clock.safe);
    t.true(good.firmwareVersion > 0n);
  }
  // The policy is plain JSON: what the control state stores and reads back verifies the same.
  const viaJson = { ...input(p, q, nonce), policy: JSON.parse(JSON.stringify(input(p, q, nonce).policy)) };
  t.true(verifyQuote(viaJson).ok, "a policy read back from JSON");

  const badSig = Buffer.from(q.signature);
  badSig[badSig.length - 1]! ^= 0x01; // last byte of ECDSA s
  const sigResult = verifyQuote({ ...input(p, q, nonce), signature: badSig });
  t.deepEqual(failures(sigResult), [
    {
      check: "signature",
      code: "signature-invalid",
      details: { reason: "ECDSA does not verify with the AK" },
      recoverable: false,
    },
  ]);
  t.deepEqual(notRun(sigResult), [], "a bad signature does not stop the other checks");

  const badMagic = Buffer.from(q.attest);
  badMagic[0] = 0xfe;
  const magic = verifyQuote({ ...input(p, q, nonce), attestBytes: badMagic });
  t.deepEqual(codes(magic), ["signature-invalid", "attest-magic"]);
  t.like(failures(magic)[1], { check: "attest", details: { expected: "ff544347", actual: "fe544347" } });

  const badType = Buffer.from(q.attest);
  badType[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
  const type = verifyQuote({ ...input(p, q, nonce), attestBytes: badType });
  t.deepEqual(codes(type), ["signature-invalid", "attest-type"]);
  t.like(failures(type)[1], { details: { expected: "8018", actual: "8017" } });
  t.deepEqual(notRun(type), after("attest"), "not a quote: nothing after the attest check can run");

  const truncated = q.attest.subarray(0, q.attest.length - 3);
  const trunc = verifyQuote({ ...input(p, q, nonce), attestBytes: truncated });
  t.deepEqual(codes(trunc), ["signature-invalid", "attest-malformed"]);
  t.deepEqual(notRun(trunc), after("attest"));

  const otherNonce = randomBytes(20);
  const nonceResult = verifyQuote({ ...input(p, q, nonce), expectedNonce: otherNonce });
  t.deepEqual(failures(nonceResult), [
    {
      check: "nonce",
      code: "nonce-mismatch",
      details: { expected: hex(otherNonce), actual: hex(nonce) },
      recoverable: true,
    },
  ]);

  // The same key under a parent other than the one the verifier knows is not the enrolled AK.
  const wrongParent = endorsementPrimaryQualifiedName(objectName(p.akPublic));
  t.deepEqual(codes(verifyQuote({ ...input(p, q, nonce), akParentQualifiedName: wrongParent })), [
    "signer-mismatch",
  ]);

  // An AK that is not a restricted signing key stops the run: nothing it signs can be believed.
  const akBytes = Buffer.from(encode((w) => p.akPublic.marshal(w)));
  akBytes[5]! &= ~0x01; // objectAttributes bits 23..16: clear `restricted` (bit 16)
  const notSigning = verifyQuote({ ...input(p, q, nonce), akPublic: akBytes });
  t.deepEqual(codes(notSigning), ["ak-not-restricted-signing"]);
  t.deepEqual(notRun(notSigning), after("signature"));

  // Every refusal is plain JSON (audit records, the join protocol) and names a known code.
  for (const r of [sigResult, magic, type, trunc, nonceResult, notSigning]) {
    t.deepEqual(JSON.parse(JSON.stringify(r)), r);
    t.true(failures(r).every((f) => isQuoteFailureCode(f.code)));
  }
  t.deepEqual(await p.fixture.leftoverHandles(), [], "tpm2-tools steps flushed everything");
});

test("policy: an empty or malformed policy is refused before any other check (all listed as not run); firmware below the minimum is firmware-too-old", async (t) => {
  const p = await peer(t);
  const nonce = randomBytes(32);
  const q = await quoteWithValues(p, nonce);
  const base = input(p, q, nonce);
  const good = verifyQuote(base);
  if (!good.ok) return t.fail(codes(good).join(","));

  const emptyPolicies: PcrPolicyJson[] = [{}, { sha256: {} }];
  for (const pcrs of emptyPolicies) {
    const empty = verifyQuote({ ...base, policy: { ...base.policy, pcrs } });
    t.deepEqual(failures(empty), [
      {
        check: "policy",
        code: "policy-empty",
        details: { field: "pcrs", problem: "approves no PCR" },
        recoverable: false,
      },
    ]);
    t.deepEqual(notRun(empty), after("policy"), JSON.stringify(pcrs));
  }
  const noPin = { pcrs: base.policy.pcrs, signatureScheme: "ecdsa", firmwareVersionMin: ANY_FIRMWARE };
  const malformed = verifyQuote({ ...base, policy: noPin as unknown as QuotePolicy });
  t.deepEqual(codes(malformed), ["policy-malformed"]);
  t.like(failures(malformed)[0], { details: { field: "hashAlg" } });
  t.deepEqual(notRun(malformed), after("policy"));

  // The firmware minimum: one above what this TPM reports is refused, naming both versions.
  const actual = good.firmwareVersion;
  const tooNew = firmwareVersionText(actual + 1n);
  const old = verifyQuote({ ...base, policy: { ...base.policy, firmwareVersionMin: tooNew } });
  t.deepEqual(failures(old), [
    {
      check: "firmware",
      code: "firmware-too-old",
      details: { minimum: tooNew, actual: firmwareVersionText(actual) },
      recoverable: false,
    },
  ]);
  t.true(
    verifyQuote({ ...base, policy: { ...base.policy, firmwareVersionMin: firmwareVersionText(actual) } }).ok,
  );
});

test("a nonce shorter than 16 bytes is refused as nonce-too-short even though the quote carries it; 16 bytes pass", async (t) => {
  const p = await peer(t);
  const one = Uint8Array.of(0x5a);
  const q1 = await quoteWithValues(p, one, "one");
  const r = verifyQuote(input(p, q1, one));
  t.deepEqual(failures(r), [
    { check: "nonce", code: "nonce-too-short", details: { bytes: 1, minBytes: 16 }, recoverable: false },
  ]);
  const sixteen = randomBytes(16);
  const q16 = await quoteWithValues(p, sixteen, "sixteen");
  t.deepEqual(codes(verifyQuote(input(p, q16, sixteen))), []);
});

test("each PCR policy case has its own code with the PCR and the expected and actual values: not approved (after PCR_Extend), not quoted, not reported", async (t) => {
  const p = await peer(t);
  const nonce = randomBytes(20);
  const before = await quoteWithValues(p, nonce, "before");
  t.true(verifyQuote(input(p, before, nonce)).ok);

  await p.tools.extendPcr(7, "ab".repeat(32));
  const after7 = await quoteWithValues(p, nonce, "after");
  const old7 = before.pcrValues[4]!.value;
  const new7 = after7.pcrValues[4]!.value;
  t.notDeepEqual(new7, old7, "PCR 7 moved");
  const oldPolicy = quotePolicyForValues(before.pcrValues, ECDSA_SHA256);

  // An honest new quote with the new values verifies cryptographically, but the policy holds the old PCR 7.
  const notApproved = verifyQuote({ ...input(p, after7, nonce), policy: oldPolicy });
  t.deepEqual(failures(notApproved), [
    {
      check: "pcr-policy",
      code: "policy-pcr-value-not-approved",
      details: { bank: "sha256", pcr: 7, expected: [hex(old7)], actual: hex(new7) },
      recoverable: false,
    },
  ]);
  // A second approved value for PCR 7 lets the new state in.
  const both = { ...oldPolicy, pcrs: { sha256: { ...oldPolicy.pcrs.sha256, "7": [hex(old7), hex(new7)] } } };
  t.true(verifyQuote({ ...input(p, after7, nonce), policy: both }).ok);

  // The current values reported next to the earlier quote: they do not hash to its digest.
  const stale = verifyQuote({ ...input(p, before, nonce), pcrValues: after7.pcrValues, policy: oldPolicy });
  t.deepEqual(codes(stale), ["pcr-digest-mismatch", "policy-pcr-value-not-approved"]);
  t.like(failures(stale)[0], { check: "pcr-digest", recoverable: true, details: { hashAlg: "sha256" } });

  // The policy needs PCR 8, which this quote does not cover.
  const zero = "00".repeat(32);
  const needs8 = { ...oldPolicy, pcrs: { sha256: { ...oldPolicy.pcrs.sha256, "8": zero } } };
  t.deepEqual(failures(verifyQuote({ ...input(p, before, nonce), policy: needs8 })), [
    {
      check: "pcr-policy",
      code: "policy-pcr-not-quoted",
      details: { bank: "sha256", pcr: 8 },
      recoverable: false,
    },
  ]);

  // PCR 7 is quoted but no value is reported for it: the digest cannot be checked, nor the policy.
  const missing = verifyQuote({
    ...input(p, before, nonce),
    pcrValues: before.pcrValues.filter((v) => v.pcr !== 7),
  });
  t.deepEqual(failures(missing), [
    {
      check: "pcr-digest",
      code: "pcr-quoted-not-reported",
      details: { bank: "sha256", pcr: 7 },
      recoverable: false,
    },
    {
      check: "pcr-policy",
      code: "policy-pcr-not-reported",
      details: { bank: "sha256", pcr: 7 },
      recoverable: false,
    },
  ]);
});

test("the signature hash is pinned: a SHA-384 quote is refused under a SHA-256 pin and accepted under a SHA-384 one; an ECC AK under an RSA scheme pin stops the run", async (t) => {
  const p = await peer(t, "shared", { keyAlg: "ecc", hash: "sha384", scheme: "ecdsa" });
  const nonce = randomBytes(32);
  const q = await quoteWithValues(p, nonce, "q384", { hash: "sha384" });

  const pinned256 = verifyQuote(input(p, q, nonce));
  t.deepEqual(failures(pinned256), [
    {
      check: "signature",
      code: "signature-hash-not-allowed",
      details: { expected: "sha256", actual: "sha384" },
      recoverable: false,
    },
  ]);
  // Under a SHA-384 pin the same quote verifies, its pcrDigest computed with SHA-384 over the sha256 bank.
  t.deepEqual(codes(verifyQuote(input(p, q, nonce, { ...ECDSA_SHA256, hashAlg: "sha384" }))), []);

  const rsaPin = verifyQuote(
    input(p, q, nonce, { ...ECDSA_SHA256, hashAlg: "sha384", signatureScheme: "rsassa" }),
  );
  t.deepEqual(failures(rsaPin), [
    {
      check: "signature",
      code: "ak-unsupported",
      details: { akType: "ecc", signatureScheme: "rsassa" },
      recoverable: false,
    },
  ]);
  t.deepEqual(notRun(rsaPin), after("signature"));
});

test("RSA-PSS: accepted with the pinned salt length (swtpm's is the digest size), refused as signature-salt-length-not-allowed with another; an RSASSA pin refuses it as signature-scheme-not-allowed", async (t) => {
  const p = await peer(t, "shared", { keyAlg: "rsa", hash: "sha256", scheme: "rsapss" });
  const nonce = randomBytes(32);
  const q = await quoteWithValues(p, nonce, "pss", { scheme: "rsapss" });
  const pss = (rsaPssSaltBytes: number) =>
    input(p, q, nonce, { ...ECDSA_SHA256, signatureScheme: "rsapss", rsaPssSaltBytes });

  t.deepEqual(codes(verifyQuote(pss(32))), []);
  t.deepEqual(failures(verifyQuote(pss(20))), [
    {
      check: "signature",
      code: "signature-salt-length-not-allowed",
      details: { expectedBytes: 20 },
      recoverable: false,
    },
  ]);
  const flipped = Buffer.from(q.signature);
  flipped[flipped.length - 1]! ^= 0x01;
  t.deepEqual(codes(verifyQuote({ ...pss(32), signature: flipped })), ["signature-invalid"]);
  t.deepEqual(failures(verifyQuote(input(p, q, nonce, { ...ECDSA_SHA256, signatureScheme: "rsassa" }))), [
    {
      check: "signature",
      code: "signature-scheme-not-allowed",
      details: { expected: "rsassa", actual: "rsapss" },
      recoverable: false,
    },
  ]);
});

test("clock: after swtpm is SIGKILLed and restarted its quotes are not `safe` (clock-not-safe, recoverable) until TPM2_ClockSet; replays are named by counter", async (t) => {
  const p = await peer(t);
  const nonce = randomBytes(20);
  const first = await quoteWithValues(p, nonce, "first");
  const second = await quoteWithValues(p, nonce, "second");
  const firstClock = clockOf(verifyQuote(input(p, first, nonce)));
  const secondClock = clockOf(verifyQuote({ ...input(p, second, nonce), previous: firstClock }));
  t.true(secondClock.clock > firstClock.clock);

  t.deepEqual(codes(verifyQuote({ ...input(p, first, nonce), previous: secondClock })), [
    "clock-not-advanced",
  ]);
  const again = verifyQuote({ ...input(p, second, nonce), previous: secondClock });
  t.deepEqual(codes(again), ["clock-not-advanced"], "the same quote again");
  t.like(failures(again)[0], {
    check: "clock",
    details: { clock: secondClock.clock.toString(), previousClock: secondClock.clock.toString() },
  });
  const laterRestart = { ...secondClock, restartCount: secondClock.restartCount + 1 };
  t.deepEqual(codes(verifyQuote({ ...input(p, second, nonce), previous: laterRestart })), [
    "restart-count-went-back",
  ]);

  // SIGKILL: the simulator dies without saving its clock, as a machine losing power.
  process.kill(p.fixture.swtpm.pid, "SIGKILL");
  await p.fixture.swtpm.stop();
  const restarted = await startSwtpm({ stateDir: p.fixture.provisioned.stateDir });
  t.teardown(() => restarted.stop());
  const tools = new Tpm2Tools(restarted.tcti, p.fixture.workDir);
  await tools.reloadAk();
  const third = await quoteWithValues({ ...p, tools }, nonce, "third");
  const unsafe = verifyQuote({ ...input(p, third, nonce), previous: secondClock });
  t.deepEqual(codes(unsafe), ["clock-not-safe"]);
  const [f] = failures(unsafe);
  t.true(f?.recoverable, "a later quote can pass once the clock is safe again");
  t.true(Number(f?.details.resetCount) > secondClock.resetCount, "the TPM was reset");

  // The owner moves the clock forward: the TPM writes it to NV and marks it safe again.
  await tools.setClock(BigInt(f?.details.clock as string) + 3_600_000n);
  await tools.flushAll();
  const fourth = await quoteWithValues({ ...p, tools }, nonce, "fourth");
  const r = verifyQuote({ ...input(p, fourth, nonce), previous: secondClock });
  const fourthClock = clockOf(r);
  t.true(r.ok && r.restartedSincePrevious && r.clock.safe);
  const replayed = verifyQuote({ ...input(p, second, nonce), previous: fourthClock });
  t.deepEqual(failures(replayed), [
    {
      check: "clock",
      code: "reset-count-went-back",
      details: {
        clock: secondClock.clock.toString(),
        resetCount: secondClock.resetCount,
        restartCount: secondClock.restartCount,
        previousClock: fourthClock.clock.toString(),
        previousResetCount: fourthClock.resetCount,
        previousRestartCount: fourthClock.restartCount,
      },
      recoverable: false,
    },
  ]);
});

test("a quote from another swtpm's AK fails signature-invalid and signer-mismatch", async (t) => {
  const [a, b] = await Promise.all([peer(t, "fresh"), peer(t, "fresh")]);
  const nonce = randomBytes(20);
  const qb = await quoteWithValues(b, nonce);
  t.true(verifyQuote(input(b, qb, nonce)).ok, "b's quote is genuine for b");
  t.deepEqual(codes(verifyQuote(input(a, qb, nonce))), ["signature-invalid", "signer-mismatch"]);
});

test("accepts a quote made by our client (AK primary in the endorsement hierarchy); no mutation of one byte is accepted", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tpm = new Tpm(await f.connect());
  const selection = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, PCRS);
  const nonce = randomBytes(32);
  const { q, akPublic, values } = await withTransient(
    tpm,
    () => createAk(tpm),
    async (ak) => ({
      q: await quote(tpm, ak, { pcrs: selection, extraData: nonce }),
      akPublic: ak.publicArea,
      values: (await tpm.pcrRead(selection)).values.map((v) => ({
        hashAlg: v.hash,
        pcr: v.pcr,
        value: v.digest,
      })),
    }),
  );
  const base: VerifyQuoteInput = {
    attestBytes: q.attestBytes,
    signature: encode((w) => q.signature.marshal(w)),
    akPublic: encode((w) => akPublic.marshal(w)),
    expectedNonce: nonce,
    pcrValues: values,
    policy: quotePolicyForValues(values, ECDSA_SHA256),
  };
  t.deepEqual(codes(verifyQuote(base)), []);
  t.deepEqual(await f.leftoverHandles(), []);

  fc.assert(
    fc.property(
      fc.constantFrom("attestBytes", "signature", "akPublic"),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (field, at, xor) => {
        const bytes = Buffer.from(base[field] as Uint8Array);
        bytes[at % bytes.length]! ^= xor;
        const r = verifyQuote({ ...base, [field]: bytes });
        return !r.ok && r.failures.length > 0;
      },
    ),
    { numRuns: 300 },
  );
});

test("malformed bytes anywhere are failures, never exceptions; every failure has a known code, and notRun is exactly the checks after the one that stopped", (t) => {
  const bytes = fc.uint8Array({ maxLength: 300 });
  const policy = quotePolicyForValues(
    [{ hashAlg: TPM_ALG_ID.SHA256, pcr: 0, value: new Uint8Array(32) }],
    ECDSA_SHA256,
  );
  fc.assert(
    fc.property(bytes, bytes, bytes, bytes, (attestBytes, signature, akPublic, nonce) => {
      const r = verifyQuote({
        attestBytes,
        signature,
        akPublic,
        expectedNonce: nonce,
        pcrValues: [],
        policy,
      });
      if (r.ok || r.failures.length === 0) return false;
      const known = r.failures.every((f) => isQuoteFailureCode(f.code) && QUOTE_CHECKS.includes(f.check));
      const last = r.failures[r.failures.length - 1]!.check;
      const suffix = r.notRun.length === 0 || r.notRun.join() === after(last).join();
      return known && suffix && !r.failures.some((f) => r.notRun.includes(f.check));
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test("accepts a quote by an RSA AK (RSASSA-SHA256) from our client; a flipped signature bit is refused", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tpm = new Tpm(await f.connect());
  const selection = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 7]);
  const nonce = randomBytes(16);
  const { q, akPublic, values } = await withTransient(
    tpm,
    () => createAk(tpm, "rsa"),
    async (ak) => ({
      q: await quote(tpm, ak, { pcrs: selection, extraData: nonce }),
      akPublic: ak.publicArea,
      values: (await tpm.pcrRead(selection)).values.map((v) => ({
        hashAlg: v.hash,
        pcr: v.pcr,
        value: v.digest,
      })),
    }),
  );
  t.is(q.signature.sigAlg, TPM_ALG_ID.RSASSA);
  const input: VerifyQuoteInput = {
    attestBytes: q.attestBytes,
    signature: encode((w) => q.signature.marshal(w)),
    akPublic,
    expectedNonce: nonce,
    pcrValues: values,
    policy: quotePolicyForValues(values, { ...ECDSA_SHA256, signatureScheme: "rsassa" }),
  };
  t.deepEqual(codes(verifyQuote(input)), []);
  const bad = Buffer.from(input.signature);
  bad[bad.length - 10]! ^= 0x40;
  t.deepEqual(codes(verifyQuote({ ...input, signature: bad })), ["signature-invalid"]);
});

test("a genuine quote over fewer PCRs than the policy names, or reported values that do not match its selection, is refused", async (t) => {
  const f = await startProvisionedSwtpm(t, { identity: "shared" });
  const tpm = new Tpm(await f.connect());
  const quoted = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 1]);
  const all = TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [0, 1, 7]);
  const nonce = randomBytes(32);
  const { q, akPublic, values } = await withTransient(
    tpm,
    () => createAk(tpm),
    async (ak) => ({
      q: await quote(tpm, ak, { pcrs: quoted, extraData: nonce }),
      akPublic: ak.publicArea,
      values: (await tpm.pcrRead(all)).values.map((v) => ({ hashAlg: v.hash, pcr: v.pcr, value: v.digest })),
    }),
  );
  const [v0, v1, v7] = values as [PcrValue, PcrValue, PcrValue];
  const base: VerifyQuoteInput = {
    attestBytes: q.attestBytes,
    signature: encode((w) => q.signature.marshal(w)),
    akPublic,
    expectedNonce: nonce,
    pcrValues: [v0, v1],
    policy: quotePolicyForValues([v0, v1], ECDSA_SHA256),
  };
  t.deepEqual(codes(verifyQuote(base)), []);
  // The policy needs PCR 7: its correct value is reported, but the quote does not cover it.
  const needs7 = verifyQuote({
    ...base,
    pcrValues: [v0, v1, v7],
    policy: quotePolicyForValues(values, ECDSA_SHA256),
  });
  t.deepEqual(failures(needs7), [
    {
      check: "pcr-policy",
      code: "policy-pcr-not-quoted",
      details: { bank: "sha256", pcr: 7 },
      recoverable: false,
    },
  ]);
  // Reported values for other PCRs than the quote's selection: a quoted PCR has no value.
  t.deepEqual(codes(verifyQuote({ ...base, pcrValues: [v0, v7] })), [
    "pcr-quoted-not-reported",
    "policy-pcr-not-reported",
  ]);
  // The right digests reported under another bank do not stand in for the quoted sha256 ones.
  const sha1Bank = [v0, v1].map((v) => ({ ...v, hashAlg: TPM_ALG_ID.SHA1 }));
  t.false(verifyQuote({ ...base, pcrValues: sha1Bank }).ok);
  // A forged value listed first is the one checked, so it cannot hide behind a genuine duplicate.
  const forged = { ...v1, value: new Uint8Array(32).fill(0xaa) };
  t.deepEqual(codes(verifyQuote({ ...base, pcrValues: [v0, forged, v1] })), [
    "pcr-digest-mismatch",
    "policy-pcr-value-not-approved",
  ]);
  // A genuine duplicate after the quoted value changes nothing and is not returned as quoted twice.
  const dup = verifyQuote({ ...base, pcrValues: [v0, v1, forged] });
  t.true(dup.ok);
  t.deepEqual(dup.ok ? dup.quotedPcrs : [], [v0, v1]);
  t.deepEqual(await f.leftoverHandles(), []);
});
