/**
 * The attested join against real swtpm processes (one per machine), in
 * process: the honest join passes and the joiner opens the CMK; each way a
 * join must be refused (issue 9's acceptance) is refused with its own check
 * and code, audited on the verifier, shown to the joiner, and no answer the
 * joiner got carries a byte of the CMK. Malicious joiners are played by
 * running the joiner's steps (src/attestation/joiner.ts) with one lie each.
 */
import test, { type ExecutionContext } from "ava";
import { X509Certificate } from "node:crypto";
import { withTransient } from "../../tpm/client/scoped.js";
import { createAk } from "../../tpm/keys/ak.js";
import { encode } from "../../tpm/marshal/writer.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import {
  JoinRefusedError,
  answerChallenge,
  joinCluster,
  joinerHello,
  quoteForNonce,
} from "../../src/attestation/joiner.js";
import type { JoinQuote, JoinResult } from "../../src/attestation/join-messages.js";
import type { JoinRefusal } from "../../src/attestation/join-refusal.js";
import { createJoinToken, joinTokenHash } from "../../src/attestation/join-token.js";
import { peerIdOf } from "../../src/pki/peer-certificate-verifier.js";
import { type Cluster, type Machine, cluster, machine, tlsKey } from "./join-fixture.js";
import { newCaDir } from "../tpm/swtpm-fixture.js";

const PEER = "peer-4";

/** Runs the honest joiner and returns its refusal (fails the test if it was admitted). */
async function refusedJoin(t: ExecutionContext, c: Cluster, m: Machine, peerId = PEER): Promise<JoinRefusal> {
  const err = await t.throwsAsync(
    joinCluster({ tpm: m.tpm, peerId, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki }),
    { instanceOf: JoinRefusedError },
  );
  return (err as JoinRefusedError).refusal;
}

/** The refusal is named, audited as denied with its check and code, nothing was admitted, no CMK byte was sent. */
async function assertRefusedAndAudited(
  t: ExecutionContext,
  c: Cluster,
  refusal: JoinRefusal,
  check: string,
  code: string,
  peerId = PEER,
  admittedBefore = 0,
): Promise<void> {
  t.is(refusal.check as string, check);
  t.is(refusal.code as string, code);
  const events = await c.joinEvents();
  const denied = events.filter((e) => e.outcome === "denied");
  t.true(
    denied.some((e) => e.detail.includes(`peer ${peerId} (claimed) refused: ${check}/${code}`)),
    `audited: ${events.map((e) => e.detail).join(" | ")}`,
  );
  t.is(
    events.filter((e) => e.outcome === "ok" && e.detail.includes(`peer ${peerId} attested`)).length,
    admittedBefore,
  );
  t.is(c.authority.admissions.length, 0);
  t.not(c.authority.record(peerId)?.state, "active");
  t.false(c.cmkSent(), "no answer carried CMK bytes");
  t.is(c.verifier.sessionsInProgress, 0, "the refused session is gone");
}

/** Plays the joiner's steps by hand up to the nonce; returns what a lying joiner needs for the last step. */
async function upToNonce(c: Cluster, m: Machine, peerId = PEER) {
  const channel = c.channel();
  return withTransient(
    m.tpm,
    () => createAk(m.tpm),
    async (ak) => {
      const challenge = await channel.begin(await joinerHello(m.tpm, peerId, ak));
      if (!challenge.ok) throw new Error(`begin refused: ${challenge.refusal.code}`);
      const answer = await answerChallenge(m.tpm, ak, challenge.value);
      const nonce = await channel.activate({ ...answer, joinTokenProof: new Uint8Array(0) });
      if (!nonce.ok) throw new Error(`activate refused: ${nonce.refusal.code}`);
      const quoted = await quoteForNonce(m.tpm, ak, challenge.value.sessionId, nonce.value, tlsKey().spki);
      return { channel, sessionId: challenge.value.sessionId, nonce: nonce.value, quoted };
    },
  );
}

function refusalOf<T>(r: JoinResult<T>): JoinRefusal {
  if (r.ok) throw new Error("expected a refusal, the join was admitted");
  return r.refusal;
}

test("an enrolled machine with an approved state joins: certificate for its own key and peer id, the CMK opened, admission audited", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const key = tlsKey();
  const joined = await joinCluster({
    tpm: m.tpm,
    peerId: PEER,
    channel: c.channel(),
    tlsPublicKeySpki: key.spki,
  });
  const cmk = c.authority.cmkForTest();
  t.deepEqual(Buffer.from(joined.cmk.key), Buffer.from(cmk.key));
  t.is(joined.cmk.epoch, cmk.epoch);
  const cert = new X509Certificate(joined.certificatePem);
  t.is(peerIdOf(cert), PEER);
  t.true(cert.verify(new X509Certificate(c.caCertificatePem).publicKey));
  t.deepEqual(cert.publicKey.export({ type: "spki", format: "der" }), Buffer.from(key.spki));
  t.is(c.authority.record(PEER)?.state, "active");
  t.false(c.cmkSent(), "the CMK travelled only wrapped");
  const events = await c.joinEvents();
  t.true(events.some((e) => e.outcome === "ok" && e.detail.includes(`peer ${PEER} attested and admitted`)));
  t.deepEqual(await m.fixture.leftoverHandles(), [], "the joiner flushed every object and session");
});

test("tampered quote signature: refused by the signature check (signature-invalid), audited, no CMK", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const { channel, quoted } = await upToNonce(c, m);
  const signature = Buffer.from(quoted.message.signature);
  signature[signature.length - 1]! ^= 0x01; // the last byte of ECDSA's s
  const r = refusalOf(await channel.attest({ ...quoted.message, signature }));
  await assertRefusedAndAudited(t, c, r, "signature", "signature-invalid");
});

test("stale nonce: a quote answered after the nonce expired is refused by nonce-fresh (nonce-expired)", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t, { nonceTtlMs: 2_000 });
  await c.enroll(m, PEER);
  const { channel, quoted } = await upToNonce(c, m);
  c.clock.advance(2_001);
  const r = refusalOf(await channel.attest(quoted.message));
  await assertRefusedAndAudited(t, c, r, "nonce-fresh", "nonce-expired");
  // Single use: the session went with the refusal, so the same answer cannot be tried again.
  const again = refusalOf(await channel.attest(quoted.message));
  t.is(again.code, "session-unknown");
});

test("a replayed earlier quote: refused by the nonce check (nonce-mismatch), and its clock is named as not advanced", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  // An earlier, genuine join whose quote an attacker recorded.
  const earlier = await upToNonce(c, m);
  const first = await earlier.channel.attest(earlier.quoted.message);
  t.true(first.ok);
  c.authority.admissions.length = 0;
  c.authority.setState(PEER, "enrolled");
  c.answers.length = 0;
  // A new session answered with the recorded quote.
  const later = await upToNonce(c, m);
  const replay: JoinQuote = { ...earlier.quoted.message, sessionId: later.sessionId };
  const r = refusalOf(await later.channel.attest(replay));
  await assertRefusedAndAudited(t, c, r, "nonce", "nonce-mismatch", PEER, 1);
  t.true(r.quoteFailures?.some((f) => f.code === "clock-not-advanced"));
});

test("a PCR extended before the join: refused by the pcr-policy check (policy-pcr-value-not-approved), no CMK", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await m.tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0xab))]);
  const r = await refusedJoin(t, c, m);
  await assertRefusedAndAudited(t, c, r, "pcr-policy", "policy-pcr-value-not-approved");
  t.like(r.details, { bank: "sha256", pcr: 7 });
});

test("an AK from another TPM: its credential cannot be activated next to this EK (credential-not-activated)", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const other = await machine(t); // a TPM of its own: another endorsement seed, another AK
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const channel = c.channel();
  const r = await withTransient(
    m.tpm,
    () => createAk(m.tpm),
    async (ownAk) =>
      withTransient(
        other.tpm,
        () => createAk(other.tpm),
        async (foreignAk) => {
          t.notDeepEqual(Buffer.from(foreignAk.name), Buffer.from(ownAk.name));
          const hello = await joinerHello(m.tpm, PEER, ownAk);
          const challenge = await channel.begin({
            ...hello,
            akPublic: encode((w) => foreignAk.publicArea.marshal(w)),
          });
          if (!challenge.ok) throw new Error(challenge.refusal.code);
          // Only the TPM holding the enrolled EK can open the credential, and it refuses for a foreign AK.
          const answer = await answerChallenge(m.tpm, ownAk, challenge.value);
          t.is(answer.credential.length, 0);
          t.not(answer.tpmResponseCode, 0);
          return refusalOf(await channel.activate({ ...answer, joinTokenProof: new Uint8Array(0) }));
        },
      ),
  );
  await assertRefusedAndAudited(t, c, r, "credential", "credential-not-activated");
});

test("an EK certificate from another CA: refused by the ek-certificate check (ek-certificate-untrusted)", async (t) => {
  const c0 = await machine(t, { identity: "shared" }); // makes sure the manufacturer CA exists
  const m = await machine(t, { caDir: await newCaDir(t) });
  const c = await cluster(t);
  void c0;
  await c.enroll(m, PEER); // enrolled by its EK key: the key matches, its certificate's issuer is not trusted
  const r = await refusedJoin(t, c, m);
  await assertRefusedAndAudited(t, c, r, "ek-certificate", "ek-certificate-untrusted");
  t.like(r.details, { reason: "bad-signature" });
});

test("an EK that was never enrolled: a machine claiming an enrolled peer id is refused by ek-enrollment (ek-not-enrolled); an unknown id by member", async (t) => {
  const enrolled = await machine(t, { identity: "shared" });
  const stranger = await machine(t);
  const c = await cluster(t);
  await c.enroll(enrolled, PEER);
  const r = await refusedJoin(t, c, stranger);
  await assertRefusedAndAudited(t, c, r, "ek-enrollment", "ek-not-enrolled");
  const unknown = await refusedJoin(t, c, stranger, "peer-99");
  await assertRefusedAndAudited(t, c, unknown, "member", "member-unknown", "peer-99");
});

test("a removed peer trying to rejoin is refused by the member check (member-removed), even with its genuine TPM", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  c.authority.setState(PEER, "removed");
  c.authority.admissions.length = 0;
  c.answers.length = 0;
  const r = await refusedJoin(t, c, m);
  t.is(r.check, "member");
  t.is(r.code, "member-removed");
  const events = await c.joinEvents();
  t.true(
    events.some(
      (e) =>
        e.outcome === "denied" && e.detail.includes(`peer ${PEER} (claimed) refused: member/member-removed`),
    ),
  );
  t.is(c.authority.admissions.length, 0);
  t.is(c.authority.record(PEER)?.state, "removed");
  t.false(c.cmkSent());
});

test("a member removed while its join runs is refused at the quote step, before anything is admitted", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const { channel, quoted } = await upToNonce(c, m);
  c.authority.setState(PEER, "removed");
  const r = refusalOf(await channel.attest(quoted.message));
  await assertRefusedAndAudited(t, c, r, "member", "member-removed");
});

test("join token: an enrollment with a token needs the joiner's proof of it; a wrong or missing token is refused, the right one joins", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  const { token } = createJoinToken(c.caCertificatePem);
  await c.enroll(m, PEER, { joinTokenHash: joinTokenHash(token) });
  const missing = await refusedJoin(t, c, m);
  await assertRefusedAndAudited(t, c, missing, "join-token", "join-token-required");
  const wrong = createJoinToken(c.caCertificatePem).token;
  const err = await t.throwsAsync(
    joinCluster({
      tpm: m.tpm,
      peerId: PEER,
      channel: c.channel(),
      joinToken: wrong,
      tlsPublicKeySpki: tlsKey().spki,
    }),
    { instanceOf: JoinRefusedError },
  );
  await assertRefusedAndAudited(t, c, (err as JoinRefusedError).refusal, "join-token", "join-token-invalid");
  const joined = await joinCluster({
    tpm: m.tpm,
    peerId: PEER,
    channel: c.channel(),
    joinToken: token,
    tlsPublicKeySpki: tlsKey().spki,
  });
  t.is(joined.cmk.epoch, 1);
  t.is(c.authority.record(PEER)?.joinTokenHash, undefined, "the token is spent by the admission");
});

test("a failed admission (no quorum) is refused as admit-failed, recoverable, and the CMK is not sent", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  c.authority.failAdmitWith = Object.assign(new Error("no quorum"), { code: "UNAVAILABLE" });
  const r = await refusedJoin(t, c, m);
  await assertRefusedAndAudited(t, c, r, "admit", "admit-failed");
  t.true(r.recoverable);
  t.like(r.details, { problem: "UNAVAILABLE" });
});

test("a join token past its expiry is refused (join-token-expired), even with a correct proof", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  const { token } = createJoinToken(c.caCertificatePem);
  await c.enroll(m, PEER, { joinTokenHash: joinTokenHash(token), joinTokenExpiresAtMs: c.clock.ms + 60_000 });
  c.clock.advance(60_001);
  const err = await t.throwsAsync(
    joinCluster({
      tpm: m.tpm,
      peerId: PEER,
      channel: c.channel(),
      joinToken: token,
      tlsPublicKeySpki: tlsKey().spki,
    }),
    { instanceOf: JoinRefusedError },
  );
  await assertRefusedAndAudited(t, c, (err as JoinRefusedError).refusal, "join-token", "join-token-expired");
});

test("a member enrolled by its EK certificate only joins with that TPM, and another TPM claiming it is ek-not-enrolled", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const stranger = await machine(t);
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const { ekPublicKeySpki: _spki, ...rest } = (await c.authority.member(PEER))!;
  c.authority.enroll({ ...rest, ekCertificateDer: m.ekCertificateDer });
  const r = await refusedJoin(t, c, stranger);
  await assertRefusedAndAudited(t, c, r, "ek-enrollment", "ek-not-enrolled");
  const joined = await joinCluster({
    tpm: m.tpm,
    peerId: PEER,
    channel: c.channel(),
    tlsPublicKeySpki: tlsKey().spki,
  });
  t.is(joined.cmk.epoch, 1);
});
