/**
 * The leader's ring duty (src/controlplane/ring-duty.ts) over a real ControlState: the first ring is
 * built from the founding member alone (N = 1), grows to N = 3 as members are added, drains a leaving
 * member (weight 0) and takes a removed one off; every proposed ring is valid, newer than the last,
 * and accepted by the state machine; with nothing changed, nothing is proposed.
 */
import test from "ava";
import { decodeRing, Ring } from "../../cluster/ring/index.js";
import { encodeCommand, type ControlCommand } from "../../src/controlplane/control-command.js";
import { ControlState } from "../../src/controlplane/control-state.js";
import { RingDuty } from "../../src/controlplane/ring-duty.js";

let index = 0;
function apply(s: ControlState, c: ControlCommand): void {
  const r = s.apply(encodeCommand(c), ++index);
  if (!r.ok) throw new Error(`${c.type}: ${r.reason}`);
}

const add = (id: string, zone: string, serial: string): ControlCommand => ({
  type: "member.add-unattested",
  id,
  address: `127.0.0.1:${1000 + index}`,
  zone,
  weight: 1,
  certificateSerial: serial,
  atMs: 1,
});

/** Runs the duty once and applies what it proposes; returns the committed ring. */
function step(s: ControlState, duty: RingDuty, nowMs: number): Ring | undefined {
  const commands = duty.next(s, nowMs);
  if (commands === null) return undefined;
  for (const c of commands) apply(s, c);
  const ring = new Ring(decodeRing(new Uint8Array(Buffer.from(s.ring()!.bytes, "base64"))));
  return ring;
}

test("the ring follows the members: N grows from 1 to 3, a leaving peer drains, a removed one goes", (t) => {
  const s = new ControlState();
  const duty = new RingDuty({ partitionPower: 6, replicas: 3, minPartHours: 0, retryMs: 1 });
  t.is(duty.next(s, 0), null, "no members, no ring");
  apply(s, add("a", "z1", "0A"));
  const one = step(s, duty, 1_000)!;
  t.is(one.replicas, 1);
  t.deepEqual(
    one.peers().map((p) => p.id),
    ["a"],
  );
  t.is(step(s, duty, 1_001), undefined, "nothing changed: nothing proposed");

  apply(s, add("b", "z2", "0B"));
  const two = step(s, duty, 2_000)!;
  t.is(two.replicas, 2);
  t.true(two.version > one.version);
  apply(s, add("c", "z3", "0C"));
  const three = step(s, duty, 3_000)!;
  t.is(three.replicas, 3);
  for (let p = 0; p < three.partitions; p++) {
    t.deepEqual(
      three
        .primaries(p)
        .map((x) => x.id)
        .sort(),
      ["a", "b", "c"],
      `partition ${p}`,
    );
  }
  apply(s, add("d", "z4", "0D"));
  const four = step(s, duty, 4_000)!;
  t.is(four.replicas, 3);
  t.true(four.partitionsOf("d").length > 0, "the fourth peer got partitions");

  apply(s, {
    type: "member.transition",
    id: "d",
    from: "active",
    to: "leaving",
    reason: "drain",
    certificateSerial: "",
    atMs: 5,
  });
  let ring = step(s, duty, 5_000)!;
  for (let i = 0; i < 10 && ring.partitionsOf("d").length > 0; i++)
    ring = step(s, duty, 5_000 + i + 1) ?? ring;
  t.is(ring.partitionsOf("d").length, 0, "a leaving peer drains to nothing");

  apply(s, {
    type: "member.transition",
    id: "d",
    from: "leaving",
    to: "removed",
    reason: "gone",
    certificateSerial: "",
    atMs: 6,
  });
  const removed = step(s, duty, 7_000)!;
  t.false(removed.peers().some((p) => p.id === "d"));
  t.is(removed.replicas, 3);
});
