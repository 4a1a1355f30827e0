/**
 * The founding leader's own records (src/controlplane/founding-duties.ts) over a real ControlState:
 * the founder is added even when another member's record committed first (an enrollment, or a test's
 * unattested add, racing the leader's first duty round), and never twice.
 */
import test from "ava";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { encodeCommand, type ControlCommand } from "../../src/controlplane/control-command.js";
import { ControlState } from "../../src/controlplane/control-state.js";
import { foundingCommands, type FoundingFacts } from "../../src/controlplane/founding-duties.js";

let index = 0;
function apply(s: ControlState, c: ControlCommand): void {
  const r = s.apply(encodeCommand(c), ++index);
  if (!r.ok) throw new Error(`${c.type}: ${r.reason}`);
}

const facts: FoundingFacts = {
  peerId: "founder",
  address: "127.0.0.1:7001",
  certificateSerial: "01",
  nowMs: 1,
  cmkEpoch: 1,
};

test("a founder whose state already holds another member's record still adds its own, once", (t) => {
  const s = new ControlState();
  apply(s, {
    type: "member.add-unattested",
    id: "early",
    address: "127.0.0.1:7002",
    zone: "zone-2",
    weight: 1,
    certificateSerial: "02",
    atMs: 1,
  });
  t.false(s.empty);
  const first = foundingCommands(s, facts);
  t.true(
    first.some((c) => c.type === "member.add-unattested" && c.id === "founder"),
    "the founder was left out of its own cluster",
  );
  for (const c of first) apply(s, c);
  t.is(s.member("founder")?.address, "127.0.0.1:7001");
  t.deepEqual(foundingCommands(s, facts), [], "nothing more once its records exist");
  // A restart on another address only moves the address.
  t.deepEqual(foundingCommands(s, { ...facts, address: "127.0.0.1:7009" }), [
    { type: "member.address", id: "founder", address: "127.0.0.1:7009" },
  ]);
});

const attested: FoundingFacts = {
  ...facts,
  attestation: {
    version: 1,
    ekPublicKey: Buffer.from("ek-spki").toString("base64"),
    ekCertificate: "",
    akPublic: Buffer.from("ak-public").toString("base64"),
    policyName: "founder-founder",
    policy: quotePolicyForValues([{ hashAlg: TPM_ALG_ID.SHA256, pcr: 7, value: new Uint8Array(32) }], {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    }),
    quoteClock: { clock: "10", resetCount: 1, restartCount: 0 },
  },
};

test("a founder made by init --tpm is recorded as an attested join is: policy, enrollment (EK), admission (AK, clock), confirmation; a leader stopped halfway finishes the rest", (t) => {
  const s = new ControlState();
  const all = foundingCommands(s, attested);
  t.deepEqual(
    all.map((c) => c.type),
    ["policy.put", "member.enroll", "member.admit", "member.confirm", "cmk.epoch-add"],
  );
  // The leader stopped after the enrollment: the next round emits only what is missing.
  for (const c of all.slice(0, 2)) apply(s, c);
  t.deepEqual(
    foundingCommands(s, attested).map((c) => c.type),
    ["member.admit", "member.confirm", "cmk.epoch-add"],
  );
  for (const c of foundingCommands(s, attested)) apply(s, c);
  t.like(s.member("founder"), {
    state: "active",
    policy: "founder-founder",
    akPublic: attested.attestation!.akPublic,
    ekPublicKey: attested.attestation!.ekPublicKey,
    certificateSerial: "01",
    lastQuoteClock: { clock: "10", resetCount: 1, restartCount: 0 },
  });
  t.deepEqual(foundingCommands(s, attested), [], "nothing more once recorded");
});
