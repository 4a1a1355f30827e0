/**
 * Continuous attestation against real swtpm processes: a member that joined
 * is re-quoted with fresh nonces; a PCR extended on its TPM fences it within
 * one round (through the authority, audited); a member whose TPM does not
 * answer is marked down, not fenced, and is active again once it answers
 * well; a fenced member returns only by attesting again after the policy
 * approves its new state. The re-quote travels in process here (the
 * attester's side is the real answerRequote on its own swtpm).
 */
import test from "ava";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { AttestationMonitor, type RequoteChannel } from "../../src/attestation/attestation-monitor.js";
import { joinCluster } from "../../src/attestation/joiner.js";
import { answerRequote } from "../../src/attestation/requote.js";
import { type Machine, POLICY_NAME, cluster, machine, tlsKey } from "./join-fixture.js";

const PEER = "peer-4";

/** Reaches `m` in process; `reachable` false plays a member that does not answer. */
function channelTo(m: Machine, state: { reachable: boolean }): RequoteChannel {
  return {
    async requote(peerId, request) {
      if (peerId !== PEER) throw new Error(`unexpected ${peerId}`);
      if (!state.reachable) throw Object.assign(new Error("unreachable"), { code: "UNAVAILABLE" });
      return answerRequote(m.tpm, request);
    },
  };
}

test("re-quotes pass while the member's state is approved; a PCR extended on its TPM fences it in the next round, audited; it returns by a passing re-quote once the policy approves its new state", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  const monitor = new AttestationMonitor({
    selfId: "peer-1",
    authority: c.authority,
    channel: channelTo(m, { reachable: true }),
    audit: c.audit,
    intervalMs: 1_000,
    timeoutMs: 500,
  });
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);
  t.deepEqual(
    await monitor.round(),
    [{ peerId: PEER, outcome: "attested" }],
    "fresh nonces: the second quote is new too",
  );
  t.is(c.authority.record(PEER)?.state, "active");

  await m.tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0x42))]);
  const [verdict] = await monitor.round();
  t.like(verdict, {
    peerId: PEER,
    outcome: "fenced",
    refusal: { check: "pcr-policy", code: "policy-pcr-value-not-approved" },
  });
  t.is(c.authority.record(PEER)?.state, "fenced");
  t.regex(c.authority.record(PEER)?.reason ?? "", /pcr-policy\/policy-pcr-value-not-approved/);
  const audit = (await c.audit.list({ pageSize: 100 })).events.filter((e) => e.operation === "Attest");
  t.true(
    audit.some(
      (e) =>
        e.outcome === "denied" && e.detail.startsWith(`peer ${PEER} fenced: re-quote failed: pcr-policy/`),
    ),
  );
  // Still re-quoted while fenced: it stays fenced (no second fence, no second audit record) ...
  const [again] = await monitor.round();
  t.like(again, { peerId: PEER, outcome: "fenced", refusal: { check: "pcr-policy" } });
  t.is(c.authority.record(PEER)?.state, "fenced");
  const fencedRecords = (await c.audit.list({ pageSize: 100 })).events.filter(
    (e) => e.operation === "Attest" && e.detail.includes("fenced:"),
  );
  t.is(fencedRecords.length, 1);

  // ... until the policy approves the new state: then its next re-quote attests it again and it returns.
  c.authority.setPolicy(
    POLICY_NAME,
    quotePolicyForValues(await m.pcrValues(), {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    }),
  );
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "unfenced" }]);
  t.is(c.authority.record(PEER)?.state, "active");
  const unfenced = (await c.audit.list({ pageSize: 100 })).events.filter(
    (e) => e.operation === "Attest" && e.outcome === "ok",
  );
  t.true(unfenced.some((e) => e.detail.startsWith(`peer ${PEER} unfenced:`)));
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);

  // Fenced again by another extend, it may also return by a full join once the policy approves.
  await m.tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0x43))]);
  t.like((await monitor.round())[0], { outcome: "fenced" });
  c.authority.setPolicy(
    POLICY_NAME,
    quotePolicyForValues(await m.pcrValues(), {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    }),
  );
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  t.is(c.authority.record(PEER)?.state, "active");
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);
});

test("a member that does not answer is marked down, not fenced, and is active again after a good re-quote", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  const reach = { reachable: false };
  const monitor = new AttestationMonitor({
    selfId: "peer-1",
    authority: c.authority,
    channel: channelTo(m, reach),
    audit: c.audit,
    intervalMs: 1_000,
    timeoutMs: 500,
  });
  const [down] = await monitor.round();
  t.like(down, { peerId: PEER, outcome: "down" });
  t.is(c.authority.record(PEER)?.state, "down");
  const audit = (await c.audit.list({ pageSize: 100 })).events.filter((e) => e.operation === "Attest");
  t.true(audit.some((e) => e.detail.startsWith(`peer ${PEER} marked down (not fenced)`)));
  reach.reachable = true;
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);
  t.is(c.authority.record(PEER)?.state, "active");
});

test("a member that answers too slowly is down, not fenced: the timeout bounds the wait", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  const monitor = new AttestationMonitor({
    selfId: "peer-1",
    authority: c.authority,
    channel: { requote: () => new Promise(() => {}) },
    audit: c.audit,
    intervalMs: 1_000,
    timeoutMs: 200,
  });
  const started = Date.now();
  const [v] = await monitor.round();
  t.like(v, { peerId: PEER, outcome: "down", reason: "no answer to a re-quote: DEADLINE_EXCEEDED" });
  t.true(Date.now() - started < 5_000);
  t.is(c.authority.record(PEER)?.state, "down");
});

test("an answer that is not a genuine quote (a replayed earlier answer) fences: it is untrusted, not unreachable", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  let recorded: Awaited<ReturnType<typeof answerRequote>> | undefined;
  const monitor = new AttestationMonitor({
    selfId: "peer-1",
    authority: c.authority,
    channel: {
      async requote(_peerId, request) {
        recorded ??= await answerRequote(m.tpm, request);
        return recorded;
      },
    },
    audit: c.audit,
    intervalMs: 1_000,
    timeoutMs: 500,
    recoverableFailuresMax: 2,
  });
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);
  const [v] = await monitor.round();
  t.like(v, { peerId: PEER, outcome: "fenced", refusal: { check: "nonce", code: "nonce-mismatch" } });
  t.is(c.authority.record(PEER)?.state, "fenced");
});

test("a follower's scope: it re-quotes the leader only and records nothing but a fence; a fence the quorum guard holds back is audited, not made; every check is counted", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  const clockBefore = c.authority.record(PEER)?.lastQuoteClock;
  const checks: { check: string; ok: boolean }[] = [];
  let scope: { kind: "leader"; peerId: string } | { kind: "none" } = { kind: "leader", peerId: "peer-9" };
  let held: string | null = "fencing it would leave no quorum";
  const monitor = new AttestationMonitor({
    selfId: "peer-1",
    authority: c.authority,
    channel: channelTo(m, { reachable: true }),
    audit: c.audit,
    intervalMs: 1_000,
    timeoutMs: 500,
    scope: () => scope,
    mayFence: () => held,
    onCheck: (r) => checks.push(r),
  });
  t.deepEqual(await monitor.round(), [], "the leader is another peer: this one is not asked");
  scope = { kind: "leader", peerId: PEER };
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);
  t.deepEqual(c.authority.record(PEER)?.lastQuoteClock, clockBefore, "a follower records no quote clock");
  t.true(checks.some((r) => r.check === "reachable" && r.ok));
  t.true(checks.some((r) => r.check === "pcr-policy" && r.ok));

  await m.tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0x44))]);
  const [kept] = await monitor.round();
  t.like(kept, { peerId: PEER, outcome: "suspect", refusal: { check: "pcr-policy" } });
  t.is(c.authority.record(PEER)?.state, "active", "the guard held the fence back");
  const audit = (await c.audit.list({ pageSize: 100 })).events.filter((e) => e.operation === "Attest");
  t.true(
    audit.some((e) => e.detail.startsWith(`peer ${PEER} NOT fenced (fencing it would leave no quorum)`)),
  );
  t.true(checks.some((r) => r.check === "pcr-policy" && !r.ok));

  held = null;
  t.like((await monitor.round())[0], { peerId: PEER, outcome: "fenced" });
  t.is(c.authority.record(PEER)?.state, "fenced");
  t.deepEqual(
    await monitor.round(),
    [],
    "a fenced leader is the next leader's to re-quote, not a follower's",
  );
  scope = { kind: "none" };
  t.deepEqual(await monitor.round(), []);
});

test("a follower returns a leader marked down with a passed re-quote (the leader cannot re-quote itself); a refused record is no failure once another verifier made it active", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  // Marked down by an earlier leader, then elected itself.
  await c.authority.markDown(PEER, "no answer to a re-quote: UNAVAILABLE");
  const clockBefore = c.authority.record(PEER)?.lastQuoteClock;
  let attested: (id: string, clock: Parameters<typeof c.authority.attested>[1]) => Promise<void> = (
    id,
    clock,
  ) => c.authority.attested(id, clock);
  // The authority with its `attested` replaceable (a Proxy: its private fields need the real `this`).
  const authority = new Proxy(c.authority, {
    get(target, prop) {
      if (prop === "attested")
        return (id: string, clock: Parameters<typeof c.authority.attested>[1]) => attested(id, clock);
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const monitor = new AttestationMonitor({
    selfId: "peer-1",
    authority,
    channel: channelTo(m, { reachable: true }),
    audit: c.audit,
    intervalMs: 1_000,
    timeoutMs: 500,
    scope: () => ({ kind: "leader", peerId: PEER }),
  });
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);
  t.is(c.authority.record(PEER)?.state, "active");
  t.notDeepEqual(
    c.authority.record(PEER)?.lastQuoteClock,
    clockBefore,
    "the passed quote's clock is recorded",
  );

  // Another follower recorded its quote first: this one's is refused, and the leader is active.
  await c.authority.markDown(PEER, "no answer to a re-quote: UNAVAILABLE");
  attested = async (id, clock) => {
    await c.authority.attested(id, clock);
    throw new Error("the quote clock does not move forward (a replay)");
  };
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);
  t.is(c.authority.record(PEER)?.state, "active");

  // Refused while the leader is still down (no leader to commit it): the round fails, to be tried again.
  await c.authority.markDown(PEER, "no answer to a re-quote: UNAVAILABLE");
  attested = () => Promise.reject(new Error("no leader"));
  await t.throwsAsync(monitor.round(), { message: "no leader" });
  t.is(c.authority.record(PEER)?.state, "down");
});
