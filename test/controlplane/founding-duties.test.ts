/**
 * The founding peer's first records (founding-duties.ts). The race that broke the autopilot tests under
 * load: a test's AddPeerUnattested (an operator's first `peer enroll`) reached the new leader before its
 * leader duties' first round, the state was no longer empty, and the founder never added its own member
 * record; ListPeers then never listed it (so never "voters a, b, c"), and peers refused its new streams.
 */
import test from "ava";
import { encodeCommand, type ControlCommand } from "../../src/controlplane/control-command.js";
import { ControlState } from "../../src/controlplane/control-state.js";
import { foundingCommands, type FoundingFacts } from "../../src/controlplane/founding-duties.js";

let index = 0;
const apply = (s: ControlState, c: ControlCommand): void => {
  const r = s.apply(encodeCommand(c), ++index);
  if (!r.ok) throw new Error(`${c.type} refused: ${r.reason}`);
};

const founder: FoundingFacts = {
  peerId: "peer-a",
  address: "127.0.0.1:1",
  certificateSerial: "0A",
  nowMs: 10,
  cmkEpoch: 1,
  ca: () => ({
    certificatePem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    wrappedKey: "AAAA",
  }),
};

const addB: ControlCommand = {
  type: "member.add-unattested",
  id: "peer-b",
  address: "127.0.0.1:2",
  zone: "zone-2",
  weight: 1,
  certificateSerial: "0B",
  atMs: 5,
};

test("the founding peer adds its own member record even when another member's record committed first", (t) => {
  const s = new ControlState();
  apply(s, addB);
  const commands = foundingCommands(s, founder);
  t.like(commands[0], { type: "member.add-unattested", id: "peer-a", certificateSerial: "0A" });
  for (const c of commands.filter((c) => c.type.startsWith("member."))) apply(s, c);
  t.deepEqual(
    s
      .members()
      .map((m) => m.id)
      .sort(),
    ["peer-a", "peer-b"],
  );
  // Once it is a member, nothing more is proposed for it.
  t.false(foundingCommands(s, founder).some((c) => c.type === "member.add-unattested"));
});

test("the founding peer adds itself to an empty state", (t) => {
  t.like(foundingCommands(new ControlState(), founder)[0], { type: "member.add-unattested", id: "peer-a" });
});

test("a leader that holds no CA key (not the founder) never adds itself without attestation", (t) => {
  const s = new ControlState();
  apply(s, addB);
  const { ca: _ca, ...joiner } = founder;
  t.false(
    foundingCommands(s, { ...joiner, peerId: "peer-x" }).some((c) => c.type === "member.add-unattested"),
  );
});
