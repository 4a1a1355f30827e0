/**
 * Delivery of a rotated CMK epoch by attestation (src/attestation/epoch-delivery.ts), with a real swtpm
 * as the fetching member: a member that joined by attestation receives exactly the epoch's key, wrapped
 * to its quoted ephemeral key; a PCR changed since its policy, a fenced member, a session used twice or
 * by another peer, and an epoch the holder does not hold are refused, and no key is sent.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import {
  EpochDeliverer,
  EpochFetchRefused,
  fetchEpoch,
  type EpochFetchChannel,
} from "../../src/attestation/epoch-delivery.js";
import { joinCluster } from "../../src/attestation/joiner.js";
import { isLockboxError } from "../../src/errors.js";
import { type Cluster, type Machine, cluster, machine, tlsKey } from "./join-fixture.js";

const PEER = "peer-4";
const EPOCH = 2;

/** A holder of epoch 2 over the fixture's authority, reached in process as `caller`; every answer recorded. */
function holder(c: Cluster, key: Uint8Array) {
  const deliverer = new EpochDeliverer(
    {
      member: (id) => c.authority.member(id),
      policy: (name) => c.authority.policy(name),
      releaseEpoch: async (epoch) => (epoch === EPOCH ? { epoch, key: Uint8Array.from(key) } : undefined),
    },
    { audit: c.audit },
  );
  const answers: string[] = [];
  const channel = (caller: string): EpochFetchChannel => ({
    async begin(_holder, epoch) {
      return deliverer.begin(caller, epoch);
    },
    async fetch(_holder, q) {
      const r = await deliverer.fetch(caller, q);
      answers.push(
        JSON.stringify(r, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v)),
      );
      return r;
    },
  });
  return { deliverer, channel, answers };
}

async function joined(t: Parameters<typeof machine>[0]): Promise<{ m: Machine; c: Cluster }> {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  await joinCluster({ tpm: m.tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  return { m, c };
}

test("a member that joined by attestation fetches the epoch's exact key; its PCRs changed, it is refused at pcr-policy and no key is sent", async (t) => {
  const { m, c } = await joined(t);
  const key = new Uint8Array(randomBytes(32));
  const h = holder(c, key);
  const fetched = await fetchEpoch({
    useTpm: (fn) => fn(m.tpm),
    selfId: PEER,
    holderId: "peer-1",
    epoch: EPOCH,
    channel: h.channel(PEER),
  });
  t.is(fetched.epoch, EPOCH);
  t.deepEqual(Buffer.from(fetched.key), Buffer.from(key));
  const hex = Buffer.from(key).toString("hex");
  t.false(h.answers.join().includes(hex), "the key travelled in clear");

  await m.tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0x42))]);
  const refused = await t.throwsAsync(
    fetchEpoch({
      useTpm: (fn) => fn(m.tpm),
      selfId: PEER,
      holderId: "peer-1",
      epoch: EPOCH,
      channel: h.channel(PEER),
    }),
    { instanceOf: EpochFetchRefused },
  );
  t.like(refused.refusal, { check: "pcr-policy", code: "policy-pcr-value-not-approved" });
  t.is(
    h.answers.filter((a) => a.includes('"ok":true')).length,
    1,
    "only the first fetch was answered with a key",
  );
});

test("refused before any key: a fenced member, a session answered by another peer or twice, an epoch the holder does not hold", async (t) => {
  const { m, c } = await joined(t);
  const h = holder(c, new Uint8Array(randomBytes(32)));

  // A session is bound to the peer it was made for and used once, whatever the answer.
  const start = await h.deliverer.begin(PEER, EPOCH);
  if (!start.ok) return t.fail("begin refused");
  const bogus = {
    sessionId: start.value.sessionId,
    attest: new Uint8Array(8),
    signature: new Uint8Array(8),
    pcrValues: [],
    ephemeralPublicKey: new Uint8Array(65),
  };
  t.like(await h.deliverer.fetch("peer-9", bogus), { ok: false, refusal: { code: "session-unknown" } });
  t.like(await h.deliverer.fetch(PEER, bogus), { ok: false, refusal: { code: "session-unknown" } });
  const again = await h.deliverer.begin(PEER, EPOCH);
  if (!again.ok) return t.fail("begin refused");
  t.like(await h.deliverer.fetch(PEER, { ...bogus, sessionId: again.value.sessionId }), {
    ok: false,
    refusal: { check: "signature" },
  });
  t.like(await h.deliverer.fetch(PEER, { ...bogus, sessionId: again.value.sessionId }), {
    ok: false,
    refusal: { code: "session-unknown" },
  });

  const missing = await t.throwsAsync(h.deliverer.begin(PEER, 7));
  t.true(isLockboxError(missing, "NOT_FOUND"));
  t.like(await h.deliverer.begin("peer-9", EPOCH), { ok: false, refusal: { code: "member-unknown" } });

  await c.authority.fence(PEER, "re-quote failed");
  t.like(await h.deliverer.begin(PEER, EPOCH), {
    ok: false,
    refusal: { check: "member", code: "member-state" },
  });
  await t.throwsAsync(
    fetchEpoch({
      useTpm: (fn) => fn(m.tpm),
      selfId: PEER,
      holderId: "peer-1",
      epoch: EPOCH,
      channel: h.channel(PEER),
    }),
    { instanceOf: EpochFetchRefused },
  );
});
