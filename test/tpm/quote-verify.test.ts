/**
 * verifyQuote against real quotes from swtpm, made by tpm2-tools (an
 * independent TPM stack): it accepts a genuine quote and refuses each kind of
 * forgery or staleness with its own named failure.
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
import { type PcrValue, pcrPolicyFromValues } from "../../tpm/verify/pcr-values.js";
import { endorsementPrimaryQualifiedName } from "../../tpm/verify/qualified-name.js";
import type { QuoteClock } from "../../tpm/verify/quote-failure.js";
import { type VerifyQuoteInput, verifyQuote } from "../../tpm/verify/quote-verifier.js";
import { type SwtpmFixture, startProvisionedSwtpm } from "./swtpm-fixture.js";
import { Tpm2Tools } from "./tpm2-tools.js";

const PCRS = [0, 1, 2, 3, 7];
const SELECTION = "sha256:0,1,2,3,7";

interface Peer {
  fixture: SwtpmFixture;
  tools: Tpm2Tools;
  akPublic: TpmtPublic;
  /** QN(EK): the AK's parent, since tpm2_createak creates the AK under the EK. */
  akParent: Uint8Array;
}

/** A swtpm with tpm2-tools' EK and a fresh random AK under it. "fresh" gives a TPM of its own (another peer). */
async function peer(t: ExecutionContext, identity: "fresh" | "shared" = "shared"): Promise<Peer> {
  const fixture = await startProvisionedSwtpm(t, { identity });
  const tools = new Tpm2Tools(fixture.tcti, fixture.workDir);
  const { ekPublic, akPublic } = await tools.createEkAndAk();
  return { fixture, tools, akPublic, akParent: endorsementPrimaryQualifiedName(objectName(ekPublic)) };
}

async function quoteWithValues(p: Peer, nonce: Uint8Array, prefix = "q") {
  const q = await p.tools.quote(SELECTION, nonce, prefix);
  const pcrValues = await p.tools.readPcrs(PCRS);
  return { ...q, pcrValues };
}

function input(
  p: Peer,
  q: { attest: Uint8Array; signature: Uint8Array; pcrValues: PcrValue[] },
  nonce: Uint8Array,
): VerifyQuoteInput {
  return {
    attestBytes: q.attest,
    signature: q.signature,
    akPublic: p.akPublic,
    akParentQualifiedName: p.akParent,
    expectedNonce: nonce,
    pcrValues: q.pcrValues,
    policy: pcrPolicyFromValues(q.pcrValues),
  };
}

function codes(r: ReturnType<typeof verifyQuote>): string[] {
  return r.ok ? [] : r.failures.map((f) => f.code);
}

function clockOf(r: ReturnType<typeof verifyQuote>): QuoteClock {
  if (!r.ok) throw new Error(`expected an accepted quote, got ${codes(r).join(",")}`);
  return r.clock;
}

test("accepts a genuine quote made by tpm2_quote, and every single tampering is named", async (t) => {
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
  }

  const badSig = Buffer.from(q.signature);
  badSig[badSig.length - 1]! ^= 0x01; // last byte of ECDSA s
  t.deepEqual(
    codes(verifyQuote({ ...input(p, q, nonce), signature: badSig })),
    ["signature"],
    "tampered signature",
  );

  const badMagic = Buffer.from(q.attest);
  badMagic[0] = 0xfe;
  t.deepEqual(
    codes(verifyQuote({ ...input(p, q, nonce), attestBytes: badMagic })),
    ["signature", "magic"],
    "tampered magic",
  );

  const badType = Buffer.from(q.attest);
  badType[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
  t.deepEqual(
    codes(verifyQuote({ ...input(p, q, nonce), attestBytes: badType })),
    ["signature", "type"],
    "tampered type",
  );

  const truncated = q.attest.subarray(0, q.attest.length - 3);
  t.deepEqual(
    codes(verifyQuote({ ...input(p, q, nonce), attestBytes: truncated })),
    ["signature", "attest"],
    "truncated attest",
  );

  const otherNonce = randomBytes(20);
  t.deepEqual(
    codes(verifyQuote({ ...input(p, q, nonce), expectedNonce: otherNonce })),
    ["nonce"],
    "wrong nonce",
  );

  // The same key under a parent other than the one the verifier knows is not the enrolled AK.
  const wrongParent = endorsementPrimaryQualifiedName(objectName(p.akPublic));
  t.deepEqual(
    codes(verifyQuote({ ...input(p, q, nonce), akParentQualifiedName: wrongParent })),
    ["signer"],
    "wrong signer",
  );

  const missing = q.pcrValues.filter((v) => v.pcr !== 7);
  t.deepEqual(codes(verifyQuote({ ...input(p, q, nonce), pcrValues: missing })), [
    "pcr-digest",
    "pcr-policy",
  ]);
  t.deepEqual(await p.fixture.leftoverHandles(), [], "tpm2-tools steps flushed everything");
});

test("a PCR changed by PCR_Extend: the old quote with new values fails pcr-digest, a new quote fails pcr-policy", async (t) => {
  const p = await peer(t);
  const nonce = randomBytes(20);
  const before = await quoteWithValues(p, nonce, "before");
  t.true(verifyQuote(input(p, before, nonce)).ok);

  await p.tools.extendPcr(7, "ab".repeat(32));
  const after = await quoteWithValues(p, nonce, "after");
  t.notDeepEqual(after.pcrValues[4]!.value, before.pcrValues[4]!.value, "PCR 7 moved");

  // Reporting the current values next to the earlier quote: the digest does not match.
  t.deepEqual(codes(verifyQuote({ ...input(p, before, nonce), pcrValues: after.pcrValues })), [
    "pcr-digest",
    "pcr-policy",
  ]);
  // An honest new quote with the new values verifies cryptographically, but the policy still holds the old PCR 7.
  const r = verifyQuote({ ...input(p, after, nonce), policy: pcrPolicyFromValues(before.pcrValues) });
  t.deepEqual(codes(r), ["pcr-policy"]);
  t.regex(r.ok ? "" : r.failures[0]!.message, /sha256:7/);
});

test("a quote from another swtpm's AK fails signature and signer", async (t) => {
  const [a, b] = await Promise.all([peer(t, "fresh"), peer(t, "fresh")]);
  const nonce = randomBytes(20);
  const qb = await quoteWithValues(b, nonce);
  t.true(verifyQuote(input(b, qb, nonce)).ok, "b's quote is genuine for b");
  t.deepEqual(codes(verifyQuote(input(a, qb, nonce))), ["signature", "signer"]);
});

test("a replayed older quote fails replay: by clock within one boot, by resetCount across a restart", async (t) => {
  const p = await peer(t);
  const nonce = randomBytes(20);
  const first = await quoteWithValues(p, nonce, "first");
  const second = await quoteWithValues(p, nonce, "second");
  const firstClock = clockOf(verifyQuote(input(p, first, nonce)));
  const secondClock = clockOf(verifyQuote({ ...input(p, second, nonce), previous: firstClock }));
  t.true(secondClock.clock > firstClock.clock);

  t.deepEqual(
    codes(verifyQuote({ ...input(p, first, nonce), previous: secondClock })),
    ["replay"],
    "older clock",
  );
  t.deepEqual(
    codes(verifyQuote({ ...input(p, second, nonce), previous: secondClock })),
    ["replay"],
    "the same quote again",
  );

  // Restart the simulator: a TPM reset increments resetCount.
  await p.fixture.swtpm.stop();
  const restarted = await startSwtpm({ stateDir: p.fixture.provisioned.stateDir });
  t.teardown(() => restarted.stop());
  const tools = new Tpm2Tools(restarted.tcti, p.fixture.workDir);
  await tools.reloadAk();
  const afterRestart = await quoteWithValues({ ...p, tools }, nonce, "third");
  const r = verifyQuote({ ...input(p, afterRestart, nonce), previous: secondClock });
  const thirdClock = clockOf(r);
  t.true(r.ok && r.restartedSincePrevious);
  t.true(thirdClock.resetCount > secondClock.resetCount);
  const replayed = verifyQuote({ ...input(p, second, nonce), previous: thirdClock });
  t.deepEqual(codes(replayed), ["replay"]);
  t.regex(replayed.ok ? "" : replayed.failures[0]!.message, /resetCount/);
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
    policy: pcrPolicyFromValues(values),
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

test("malformed bytes anywhere are failures, never exceptions", (t) => {
  const bytes = fc.uint8Array({ maxLength: 300 });
  fc.assert(
    fc.property(bytes, bytes, bytes, bytes, (attestBytes, signature, akPublic, nonce) => {
      const r = verifyQuote({
        attestBytes,
        signature,
        akPublic,
        expectedNonce: nonce,
        pcrValues: [],
        policy: [],
      });
      return !r.ok && r.failures.every((f) => typeof f.code === "string" && typeof f.message === "string");
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
    policy: pcrPolicyFromValues(values),
  };
  t.deepEqual(codes(verifyQuote(input)), []);
  const bad = Buffer.from(input.signature);
  bad[bad.length - 10]! ^= 0x40;
  t.deepEqual(codes(verifyQuote({ ...input, signature: bad })), ["signature"]);
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
    policy: pcrPolicyFromValues([v0, v1]),
  };
  t.deepEqual(codes(verifyQuote(base)), []);
  // The policy needs PCR 7: its correct value is reported, but the quote does not cover it.
  const needs7 = verifyQuote({ ...base, pcrValues: [v0, v1, v7], policy: pcrPolicyFromValues(values) });
  t.deepEqual(codes(needs7), ["pcr-policy"]);
  t.regex(needs7.ok ? "" : needs7.failures[0]!.message, /sha256:7 .*not covered by the quote/);
  // Reported values for other PCRs than the quote's selection: a quoted PCR has no value.
  t.deepEqual(codes(verifyQuote({ ...base, pcrValues: [v0, v7] })), ["pcr-digest", "pcr-policy"]);
  // The right digests reported under another bank do not stand in for the quoted sha256 ones.
  const sha1Bank = [v0, v1].map((v) => ({ ...v, hashAlg: TPM_ALG_ID.SHA1 }));
  t.false(verifyQuote({ ...base, pcrValues: sha1Bank }).ok);
  // A forged value listed first is the one checked, so it cannot hide behind a genuine duplicate.
  const forged = { ...v1, value: new Uint8Array(32).fill(0xaa) };
  t.deepEqual(codes(verifyQuote({ ...base, pcrValues: [v0, forged, v1] })), ["pcr-digest", "pcr-policy"]);
  // A genuine duplicate after the quoted value changes nothing and is not returned as quoted twice.
  const dup = verifyQuote({ ...base, pcrValues: [v0, v1, forged] });
  t.true(dup.ok);
  t.deepEqual(dup.ok ? dup.quotedPcrs : [], [v0, v1]);
  t.deepEqual(await f.leftoverHandles(), []);
});
