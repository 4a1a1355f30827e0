/**
 * The attested join's two steps against a real swtpm, in process (issue 9: no half-added member): the
 * admission leaves the member joining until the joiner, having sealed the CMK, proves it holds it; only
 * that confirmation makes it active. A proof not made with the CMK, a confirmation of an admission a
 * retried join replaced, and one from a rotation ago are refused with their own codes and change nothing.
 */
import test from "ava";
import { JoinRefusedError, attestToCluster, confirmJoin, joinCluster } from "../../src/attestation/joiner.js";
import type { JoinRefusal } from "../../src/attestation/join-refusal.js";
import { cluster, machine, tlsKey } from "./join-fixture.js";

const PEER = "peer-4";

async function refusalOf(p: Promise<unknown>): Promise<JoinRefusal> {
  try {
    await p;
  } catch (err) {
    if (err instanceof JoinRefusedError) return err.refusal;
    throw err;
  }
  throw new Error("not refused");
}

test("an admitted joiner is joining until it confirms after persisting; then active, and confirming again changes nothing", async (t) => {
  const m = await machine(t);
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const statesDuringPersist: string[] = [];
  const joined = await joinCluster({
    tpm: m.tpm,
    peerId: PEER,
    channel: c.channel(),
    tlsPublicKeySpki: tlsKey().spki,
    persist: async () => {
      statesDuringPersist.push(c.authority.record(PEER)!.state);
    },
  });
  t.deepEqual(statesDuringPersist, ["joining"], "while the joiner seals, the member is not active");
  t.is(c.authority.record(PEER)!.state, "active");
  await confirmJoin(c.channel(), joined.confirm);
  t.is(c.authority.record(PEER)!.state, "active");
  const events = await c.joinEvents();
  t.true(events.some((e) => e.outcome === "ok" && e.detail.includes(`peer ${PEER} confirmed`)));
  joined.cmk.key.fill(0);
  t.false(c.cmkSent(), "no answer carried the CMK in the clear");
});

test("a confirmation must be made with the CMK, for the admission that is current: a forged proof, a replaced admission and a changed epoch are refused and the member stays joining", async (t) => {
  const m = await machine(t);
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const first = await attestToCluster({
    tpm: m.tpm,
    peerId: PEER,
    channel: c.channel(),
    tlsPublicKeySpki: tlsKey().spki,
  });
  first.cmk.key.fill(0);
  t.is(c.authority.record(PEER)!.state, "joining");

  const forged = await refusalOf(
    confirmJoin(c.channel(), { ...first.confirm, proof: new Uint8Array(32).fill(7) }),
  );
  t.like(forged, { check: "confirm", code: "confirm-proof-invalid", recoverable: false });
  t.is(c.authority.record(PEER)!.state, "joining");

  // The joiner's answer was lost (its verifier died): it joins again, which replaces the admission.
  const second = await attestToCluster({
    tpm: m.tpm,
    peerId: PEER,
    channel: c.channel(),
    tlsPublicKeySpki: tlsKey().spki,
  });
  second.cmk.key.fill(0);
  t.not(second.confirm.certificateSerial, first.confirm.certificateSerial);
  const stale = await refusalOf(confirmJoin(c.channel(), first.confirm));
  t.like(stale, { check: "confirm", code: "confirm-stale" });
  t.is(c.authority.record(PEER)!.state, "joining", "a stale confirmation activates nothing");

  const epoch = await refusalOf(
    confirmJoin(c.channel(), { ...second.confirm, epoch: second.confirm.epoch + 1 }),
  );
  t.like(epoch, { check: "confirm", code: "confirm-epoch-changed" });

  await confirmJoin(c.channel(), second.confirm);
  t.is(c.authority.record(PEER)!.state, "active");
  t.false(c.cmkSent(), "no answer carried the CMK in the clear");
});
