/**
 * Peer admission as a value (ControlPlane.peerRefusal, issue 9 item 6): which certificates may call
 * peer services, with the code the refused peer sees (src/pki/peer-refusal.ts). The state is a real
 * ControlState fed committed entries; the raft node is not needed to decide.
 */
import test from "ava";
import { encodeCommand, type ControlCommand } from "../../src/controlplane/control-command.js";
import { ControlPlane } from "../../src/controlplane/control-plane.js";
import { ControlState } from "../../src/controlplane/control-state.js";
import type { MemberRecord } from "../../src/controlplane/control-records.js";

const POLICY = {
  pcrs: { sha256: { "0": "00".repeat(32) } },
  hashAlg: "sha256",
  signatureScheme: "ecdsa",
  firmwareVersionMin: "00000000.00000000",
} as const;

test("only a current, non-fenced member's own certificate is admitted; fenced, removed (its certificate revoked), enrolled-only, joining (not confirmed), unknown and other certificates are refused, each with its code", (t) => {
  const state = new ControlState();
  let index = 0;
  const apply = (c: ControlCommand): void => {
    const r = state.apply(encodeCommand(c), ++index);
    if (!r.ok) throw new Error(`${c.type}: ${r.reason}`);
  };
  for (const [id, serial] of [
    ["a", "0A"],
    ["c", "0C"],
  ] as const) {
    apply({
      type: "member.add-unattested",
      id,
      address: `127.0.0.1:${index + 1}`,
      zone: "z1",
      weight: 1,
      certificateSerial: serial,
      atMs: 1,
    });
  }
  apply({ type: "policy.put", name: "prod", policy: POLICY, atMs: 2 });
  apply({
    type: "member.enroll",
    id: "b",
    address: "127.0.0.1:9",
    zone: "z2",
    weight: 1,
    policy: "prod",
    ekPublicKey: Buffer.from("ek").toString("base64"),
    ekCertificate: "",
    joinTokenSha256: "ab".repeat(32),
    joinTokenExpiresAtMs: 10_000,
    atMs: 3,
  });
  const control = new ControlPlane({ peerId: "a", state, log: () => {} });
  const refusal = (peerId: string, serialNumber: string) => control.peerRefusal({ peerId, serialNumber });

  t.is(refusal("c", "0C"), null);
  t.is(control.admitPeer({ peerId: "c", serialNumber: "0C" }), null);
  t.like(refusal("c", "0A"), { code: "wrong-certificate" }, "not the certificate c joined with");
  t.like(refusal("c", "0D"), { code: "wrong-certificate" });
  t.like(refusal("z", "0E"), { code: "not-member" });
  t.like(refusal("b", "0B"), { code: "not-joined" });
  // Admitted by an attested join but not confirmed: it may not have its key, so it is not a peer yet.
  apply({
    type: "member.admit",
    id: "b",
    from: "enrolled",
    certificateSerial: "0B",
    akPublic: Buffer.from("ak").toString("base64"),
    quoteClock: { clock: "1", resetCount: 0, restartCount: 0 },
    atMs: 4,
  });
  t.like(refusal("b", "0B"), { code: "not-joined" }, "joining: admitted, not confirmed");
  apply({ type: "member.confirm", id: "b", certificateSerial: "0B", atMs: 4 });
  t.is(refusal("b", "0B"), null, "confirmed: a peer");

  const move = (id: string, from: MemberRecord["state"], to: MemberRecord["state"], reason: string): void =>
    apply({ type: "member.transition", id, from, to, reason, certificateSerial: "", atMs: 5 });
  move("c", "active", "fenced", "re-quote failed: pcr-policy/policy-pcr-value-not-approved");
  t.deepEqual(refusal("c", "0C"), {
    code: "fenced",
    reason: "fenced: re-quote failed: pcr-policy/policy-pcr-value-not-approved",
  });
  t.is(control.admitPeer({ peerId: "c", serialNumber: "0C" }), refusal("c", "0C")!.reason);
  move("c", "fenced", "active", "attested again");
  t.is(refusal("c", "0C"), null, "unfenced: admitted again");
  move("c", "active", "removed", "decommissioned");
  t.like(refusal("c", "0C"), { code: "revoked" }, "a removed member's certificate is revoked");
});
