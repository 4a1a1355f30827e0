/**
 * A ring larger than one control command (src/controlplane ring.part, cluster/ring/ring-codec.ts
 * format 2): with partition power 16 and N = 3 the leader's ring duty proposes ring.part commands,
 * each within COMMAND_BYTES_MAX, that a real ControlState applies in order and commits whole on the
 * last part; a snapshot taken in the middle of the upload restores with it, so the upload completes
 * on the restored state too; parts out of order, of another version or of an older ring are refused
 * and change nothing.
 */
import test from "ava";
import { decodeRing, encodeRing, RingBuilder } from "../../cluster/ring/index.js";
import {
  COMMAND_BYTES_MAX,
  encodeCommand,
  type ControlCommand,
} from "../../src/controlplane/control-command.js";
import { CONTROL_LIMITS } from "../../src/controlplane/control-records.js";
import { ControlState } from "../../src/controlplane/control-state.js";
import { RingDuty, ringCommands } from "../../src/controlplane/ring-duty.js";

let index = 0;
function apply(s: ControlState, c: ControlCommand): { ok: boolean; reason?: string } {
  const r = s.apply(encodeCommand(c), ++index);
  return r.ok ? { ok: true } : { ok: false, reason: r.reason };
}

const add = (id: string, zone: string, serial: string): ControlCommand => ({
  type: "member.add-unattested",
  id,
  address: `127.0.0.1:${2000 + index}`,
  zone,
  weight: 1,
  certificateSerial: serial,
  atMs: 1,
});

test("the ring duty stores a partition-power-16, N = 3 ring in parts that each fit one command", (t) => {
  t.timeout(120_000);
  const s = new ControlState();
  for (const [id, zone, serial] of [
    ["a", "z1", "0A"],
    ["b", "z2", "0B"],
    ["c", "z3", "0C"],
  ] as const)
    t.true(apply(s, add(id, zone, serial)).ok);
  const duty = new RingDuty({ partitionPower: 16, replicas: 3, minPartHours: 0 });
  const commands = duty.next(s, 1_000)!;
  t.true(commands.length > 1, `${commands.length} commands`);
  for (const c of commands) {
    t.is(c.type, "ring.part");
    t.true(encodeCommand(c).byteLength <= COMMAND_BYTES_MAX);
  }
  for (const c of commands.slice(0, -1)) {
    t.true(apply(s, c).ok);
    t.is(s.ring(), null, "nothing is committed before the last part");
  }
  t.true(apply(s, commands[commands.length - 1]!).ok);
  const ring = decodeRing(new Uint8Array(Buffer.from(s.ring()!.bytes, "base64")));
  t.is(ring.partPower, 16);
  t.is(ring.replicas, 3);
  RingBuilder.fromState(ring).validate();
  t.true(s.ring()!.bytes.length <= Math.ceil(CONTROL_LIMITS.ringBytes / 3) * 4);
  // Round trip through a snapshot.
  const restored = new ControlState();
  restored.restore(s.snapshot());
  t.deepEqual(restored.ring(), s.ring());
});

test("a snapshot in the middle of a ring upload restores with it, and the upload completes there", (t) => {
  const b = RingBuilder.create({ partPower: 13, replicas: 3, minPartHours: 0 });
  for (const id of ["a", "b", "c", "d"]) b.addPeer({ id, zone: id, weight: 1 });
  b.rebalance(0);
  const bytes = encodeRing(b.toState());
  const commands = ringCommands(b.version, bytes);
  t.true(commands.length >= 3);
  const s = new ControlState();
  for (const c of commands.slice(0, 2)) t.true(apply(s, c).ok);
  const restored = new ControlState();
  restored.restore(s.snapshot());
  for (const c of commands.slice(2)) t.true(apply(restored, c).ok);
  t.deepEqual(new Uint8Array(Buffer.from(restored.ring()!.bytes, "base64")), bytes);
});

test("ring parts out of order, of another upload, or of a ring not newer than the committed one are refused", (t) => {
  const b = RingBuilder.create({ partPower: 13, replicas: 3, minPartHours: 0 });
  for (const id of ["a", "b", "c"]) b.addPeer({ id, zone: id, weight: 1 });
  b.rebalance(0);
  const commands = ringCommands(b.version, encodeRing(b.toState())) as Extract<
    ControlCommand,
    { type: "ring.part" }
  >[];
  const s = new ControlState();
  t.false(apply(s, commands[1]!).ok, "part 1 before part 0");
  t.true(apply(s, commands[0]!).ok);
  t.false(apply(s, commands[2]!).ok, "part 2 after part 0");
  t.false(apply(s, { ...commands[1]!, version: commands[1]!.version + 1 }).ok, "a part of another version");
  const before = s.snapshot();
  for (const c of commands.slice(1)) t.true(apply(s, c).ok);
  t.is(s.ring()!.version, b.version);
  t.false(apply(s, commands[0]!).ok, "an upload of the committed version again");
  t.notDeepEqual(s.snapshot(), before);
  // A part that is not a whole part (short, not the last) is refused when decoded.
  const short = { ...commands[0]!, bytes: commands[0]!.bytes.slice(0, 400) };
  t.throws(() => encodeCommand(short));
});
