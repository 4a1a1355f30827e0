/**
 * The founding leader's own records (src/controlplane/founding-duties.ts) over a real ControlState:
 * the founder is added even when another member's record committed first (an enrollment, or a test's
 * unattested add, racing the leader's first duty round), and never twice.
 */
import test from "ava";
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
