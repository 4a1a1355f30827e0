/**
 * A member whose swtpm was killed (SIGKILL) and started again: its clock is
 * no longer `safe`, which a verifier refuses. The joiner and the re-quote
 * answer restore it with TPM2_ClockSet before quoting, so a restarted TPM
 * joins and is re-attested rather than fenced; the verifier still sees the
 * restart in the reset count.
 */
import test from "ava";
import { readEk } from "../../tpm/ek/read-ek.js";
import { publicKeyFromTpmt } from "../../tpm/keys/public-key.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmlPcrSelection } from "../../tpm/spec/pcr.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { AttestationMonitor } from "../../src/attestation/attestation-monitor.js";
import { joinCluster } from "../../src/attestation/joiner.js";
import { answerRequote } from "../../src/attestation/requote.js";
import { startRestartableSwtpm } from "../tpm/restartable-swtpm.js";
import { POLICY_NAME, POLICY_PCRS, cluster, tlsKey } from "./join-fixture.js";

const PEER = "peer-4";

test("a member whose TPM was SIGKILLed and restarted joins, and its re-quotes pass rather than fence it; the quote shows the restart", async (t) => {
  const r = await startRestartableSwtpm(t);
  let tpm = await r.connect();
  const ek = await readEk(tpm);
  const pcrValues = (await tpm.pcrRead(TpmlPcrSelection.of(TPM_ALG_ID.SHA256, POLICY_PCRS))).values.map(
    (v) => ({
      hashAlg: v.hash,
      pcr: v.pcr,
      value: v.digest,
    }),
  );
  const c = await cluster(t);
  c.authority.setPolicy(
    POLICY_NAME,
    quotePolicyForValues(pcrValues, {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    }),
  );
  c.authority.enroll({
    peerId: PEER,
    state: "enrolled",
    ekPublicKeySpki: publicKeyFromTpmt(ek.ekPublic).export({ type: "spki", format: "der" }),
    policyName: POLICY_NAME,
  });
  await joinCluster({ tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  const resetBefore = c.authority.record(PEER)!.lastQuoteClock!.resetCount;

  await tpm.close();
  await r.stop("SIGKILL");
  await r.start();
  tpm = await r.connect();
  t.teardown(() => tpm.close());
  const current = tpm;
  const monitor = new AttestationMonitor({
    selfId: "peer-1",
    authority: c.authority,
    channel: { requote: (_id, request) => answerRequote(current, request) },
    audit: c.audit,
    intervalMs: 1_000,
    timeoutMs: 800,
  });
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);
  t.is(c.authority.record(PEER)?.state, "active");
  t.true(
    c.authority.record(PEER)!.lastQuoteClock!.resetCount > resetBefore,
    "the restart shows in the reset count",
  );

  // A join after the crash passes too (the clock is made safe before the quote).
  await tpm.close();
  await r.stop("SIGKILL");
  await r.start();
  tpm = await r.connect();
  await joinCluster({ tpm, peerId: PEER, channel: c.channel(), tlsPublicKeySpki: tlsKey().spki });
  t.is(c.authority.record(PEER)?.state, "active");
});
