/**
 * The control state machine and its codecs (src/controlplane): every entry is checked before it changes
 * anything; a hostile or stale entry is answered with a refusal value and leaves the state byte for byte
 * as it was; snapshots round-trip and a damaged image is refused whole.
 */
import test from "ava";
import fc from "fast-check";
import {
  COMMAND_BYTES_MAX,
  decodeCommand,
  encodeCommand,
  type ControlCommand,
} from "../../src/controlplane/control-command.js";
import { ControlState, type ControlResult } from "../../src/controlplane/control-state.js";
import { ControlSnapshotInvalid } from "../../src/controlplane/control-snapshot.js";
import { decideAutopilotStep, AUTOPILOT_DEFAULTS } from "../../src/controlplane/membership-autopilot.js";
import type { MemberRecord } from "../../src/controlplane/control-records.js";

const POLICY = {
  pcrs: { sha256: { "0": "00".repeat(32) } },
  hashAlg: "sha256",
  signatureScheme: "ecdsa",
  firmwareVersionMin: "00000000.00000000",
} as const;
const EK = Buffer.from("ek-public-key-bytes").toString("base64");

let index = 0;
const apply = (s: ControlState, c: ControlCommand): ControlResult => s.apply(encodeCommand(c), ++index);

/** A state with a founding member, a policy, an enrolled peer, an epoch, a KEK, an identity. */
function populated(): ControlState {
  const s = new ControlState();
  const steps: ControlCommand[] = [
    {
      type: "member.add-unattested",
      id: "a",
      address: "127.0.0.1:1",
      zone: "z1",
      weight: 1,
      certificateSerial: "0A",
      atMs: 1,
    },
    { type: "policy.put", name: "prod", policy: POLICY, atMs: 2 },
    {
      type: "member.enroll",
      id: "b",
      address: "127.0.0.1:2",
      zone: "z2",
      weight: 1,
      policy: "prod",
      ekPublicKey: EK,
      ekCertificate: "",
      joinTokenSha256: "ab".repeat(32),
      joinTokenExpiresAtMs: 10_000,
      atMs: 3,
    },
    { type: "cmk.epoch-add", epoch: 1, atMs: 4 },
    { type: "kek.create", project: "p1", epoch: 1, wrapped: "AAAA" },
    {
      type: "identity.issue",
      name: "svc",
      role: "service",
      projects: ["p1"],
      issued: { serial: "0B", notAfterMs: 1e12 },
      atMs: 5,
    },
  ];
  for (const c of steps) {
    const r = apply(s, c);
    if (!r.ok) throw new Error(`${c.type}: ${r.reason}`);
  }
  return s;
}

test("a member moves only along allowed transitions, compare-and-set on its current state", (t) => {
  const s = populated();
  const move = (from: MemberRecord["state"], to: MemberRecord["state"], serial = ""): ControlResult =>
    apply(s, {
      type: "member.transition",
      id: "b",
      from,
      to,
      reason: "",
      certificateSerial: serial,
      atMs: 9,
    });
  t.like(move("active", "fenced"), { ok: false, code: "conflict" }, "b is enrolled, not active");
  t.like(
    move("enrolled", "active"),
    { ok: false, code: "failed-precondition" },
    "enrolled cannot skip the join",
  );
  t.like(move("enrolled", "joining"), { ok: true });
  t.is(s.member("b")!.joinTokenSha256, "", "the one-time join token is consumed when the join starts");
  t.like(
    move("joining", "active", "0C"),
    { ok: false, code: "failed-precondition" },
    "a joining member becomes active only by member.confirm",
  );
  t.like(
    apply(s, {
      type: "member.admit",
      id: "b",
      from: "joining",
      certificateSerial: "0C",
      akPublic: "QUs=",
      quoteClock: { clock: "1", resetCount: 0, restartCount: 0 },
      atMs: 9,
    }),
    { ok: true },
  );
  t.like(apply(s, { type: "member.confirm", id: "b", certificateSerial: "0C", atMs: 9 }), { ok: true });
  t.like(move("active", "removed"), { ok: true });
  t.truthy(s.revocation("0C"), "a removed member's certificate is revoked");
  t.like(move("removed", "active"), { ok: false }, "removed is final");
  t.like(
    apply(s, {
      type: "member.enroll",
      id: "b",
      address: "127.0.0.1:2",
      zone: "z2",
      weight: 1,
      policy: "prod",
      ekPublicKey: EK,
      ekCertificate: "",
      joinTokenSha256: "cd".repeat(32),
      joinTokenExpiresAtMs: 1,
      atMs: 10,
    }),
    { ok: false, code: "already-exists" },
    "a removed peer's id is never reused",
  );
});

test("enrollment needs an existing policy and an EK no other member holds", (t) => {
  const s = populated();
  const enroll = (id: string, policy: string): ControlResult =>
    apply(s, {
      type: "member.enroll",
      id,
      address: "127.0.0.1:3",
      zone: "z3",
      weight: 1,
      policy,
      ekPublicKey: EK,
      ekCertificate: "",
      joinTokenSha256: "ef".repeat(32),
      joinTokenExpiresAtMs: 1,
      atMs: 1,
    });
  t.like(enroll("c", "missing"), { ok: false, code: "not-found" });
  t.like(enroll("c", "prod"), { ok: false, code: "already-exists" }, "b holds this EK");
  t.like(
    apply(s, { type: "policy.remove", name: "prod" }),
    { ok: false, code: "failed-precondition" },
    "b uses it",
  );
});

test("only the founder's own enrollment has no join token: any other without one is refused and changes nothing", (t) => {
  const s = populated();
  const enroll = (id: string, token: string, founder: boolean): ControlResult =>
    apply(s, {
      type: "member.enroll",
      id,
      address: "127.0.0.1:3",
      zone: "z3",
      weight: 1,
      policy: "prod",
      ekPublicKey: Buffer.from(`ek-of-${id}`).toString("base64"),
      ekCertificate: "",
      joinTokenSha256: token,
      joinTokenExpiresAtMs: 0,
      atMs: 1,
      ...(founder ? { founder: true as const } : {}),
    });
  const before = Buffer.from(s.snapshot());
  t.like(enroll("c", "", false), { ok: false, code: "malformed" }, "an enrollment without a join token");
  t.like(enroll("c", "ef".repeat(32), true), { ok: false, code: "malformed" }, "a founder spends no token");
  t.deepEqual(Buffer.from(s.snapshot()), before, "refusals change nothing");
  t.is(s.member("c"), undefined);
  t.like(enroll("c", "", true), { ok: true }, "the founder's own enrollment (founding-duties.ts)");
  t.like(s.member("c"), { state: "enrolled", joinTokenSha256: "" });
  t.like(enroll("d", "ef".repeat(32), false), { ok: true });
  // The marker survives the codec and nothing else is accepted in its place.
  const enrollE = (founder: unknown) => ({
    type: "member.enroll",
    id: "e",
    address: "127.0.0.1:3",
    zone: "z3",
    weight: 1,
    policy: "prod",
    ekPublicKey: EK,
    ekCertificate: "",
    joinTokenSha256: "",
    joinTokenExpiresAtMs: 0,
    atMs: 1,
    founder,
  });
  const decoded = decodeCommand(encodeCommand(enrollE(true) as ControlCommand));
  t.like(decoded, { ok: true, command: { founder: true } });
  const withFounder = (founder: unknown): Uint8Array =>
    Uint8Array.from([1, ...Buffer.from(JSON.stringify(enrollE(founder)))]);
  t.regex((decodeCommand(withFounder(false)) as { reason: string }).reason, /founder/);
  t.regex((decodeCommand(withFounder("yes")) as { reason: string }).reason, /founder/);
});

test("identities: revoking one revokes every certificate it holds; a revoked name cannot be re-issued", (t) => {
  const s = populated();
  t.like(
    apply(s, {
      type: "identity.issue",
      name: "svc",
      role: "service",
      projects: ["p1"],
      issued: { serial: "0D", notAfterMs: 1e12 },
      atMs: 6,
    }),
    { ok: true },
  );
  t.like(
    apply(s, {
      type: "identity.issue",
      name: "other",
      role: "admin",
      projects: [],
      issued: { serial: "0D", notAfterMs: 1e12 },
      atMs: 6,
    }),
    { ok: false, code: "conflict" },
    "a serial is used once",
  );
  const r = apply(s, { type: "identity.revoke", name: "svc", reason: "gone", atMs: 7 });
  t.deepEqual(r, { ok: true, value: { revokedSerials: ["0B", "0D"] } });
  t.truthy(s.revocation("0B"));
  t.truthy(s.revocation("0D"));
  t.like(
    apply(s, {
      type: "identity.issue",
      name: "svc",
      role: "service",
      projects: ["p1"],
      issued: { serial: "0E", notAfterMs: 1e12 },
      atMs: 8,
    }),
    { ok: false, code: "failed-precondition" },
  );
});

test("project KEKs: the first writer wins, a rewrap must name the current epoch, an epoch still wrapping a KEK cannot retire", (t) => {
  const s = populated();
  t.deepEqual(apply(s, { type: "kek.create", project: "p1", epoch: 1, wrapped: "BBBB" }), {
    ok: true,
    value: { project: "p1", epoch: 1, wrapped: "AAAA" },
  });
  t.like(apply(s, { type: "kek.create", project: "p2", epoch: 7, wrapped: "BBBB" }), {
    ok: false,
    code: "failed-precondition",
  });
  t.like(apply(s, { type: "cmk.epoch-add", epoch: 2, atMs: 9 }), { ok: true });
  t.like(apply(s, { type: "cmk.epoch-state", epoch: 1, state: "retired" }), {
    ok: false,
    code: "failed-precondition",
  });
  t.like(apply(s, { type: "kek.rewrap", project: "p1", fromEpoch: 2, epoch: 2, wrapped: "CCCC" }), {
    ok: false,
    code: "conflict",
  });
  t.like(apply(s, { type: "kek.rewrap", project: "p1", fromEpoch: 1, epoch: 2, wrapped: "CCCC" }), {
    ok: true,
  });
  t.like(apply(s, { type: "cmk.epoch-state", epoch: 1, state: "retired" }), { ok: true });
  t.deepEqual(
    s.cmkEpochs().map((e) => [e.epoch, e.state]),
    [
      [1, "retired"],
      [2, "active"],
    ],
  );
});

test("snapshot: restore gives the same state; a flipped byte (magic, version, digest, body) is refused and changes nothing", (t) => {
  const s = populated();
  const image = s.snapshot();
  const copy = new ControlState();
  copy.restore(image);
  t.deepEqual(Buffer.from(copy.snapshot()), Buffer.from(image));
  const before = Buffer.from(copy.snapshot());
  for (const at of [0, 4, 5, 40, image.length - 1]) {
    const bad = Uint8Array.from(image);
    bad[at] = bad[at]! ^ 0x01;
    t.throws(() => copy.restore(bad), { instanceOf: ControlSnapshotInvalid }, `byte ${at}`);
    t.throws(() => copy.checkSnapshot(bad), { instanceOf: ControlSnapshotInvalid });
  }
  t.deepEqual(Buffer.from(copy.snapshot()), before, "a refused image changed nothing");
  const empty = new ControlState();
  empty.restore(new Uint8Array(0));
  t.true(empty.empty, "raft's bootstrap snapshot (no data) is the empty state");
});

test("property: any bytes as a committed entry are answered (never thrown), and a refusal leaves the state unchanged", (t) => {
  const s = populated();
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 256 }),
        fc.json().map((j) => Uint8Array.from([1, ...Buffer.from(j)])),
        fc
          .record({
            type: fc.constantFrom(
              "member.enroll",
              "member.transition",
              "kek.create",
              "identity.issue",
              "ca.set",
              "ring.put",
            ),
            x: fc.anything(),
          })
          .map((o) => Uint8Array.from([1, ...Buffer.from(JSON.stringify(o) ?? "")])),
      ),
      (bytes) => {
        const before = Buffer.from(s.snapshot());
        const r = s.apply(bytes, ++index);
        if (!r.ok) t.deepEqual(Buffer.from(s.snapshot()), before);
        return true;
      },
    ),
    { numRuns: 500 },
  );
  t.like(s.apply(new Uint8Array(COMMAND_BYTES_MAX + 1), ++index), { ok: false, code: "malformed" });
});

test("property: a well-formed command that the state refuses changes nothing", (t) => {
  const s = populated();
  const cmd = fc.oneof(
    fc.record({
      type: fc.constant("member.transition" as const),
      id: fc.constantFrom("a", "b", "zz"),
      from: fc.constantFrom("enrolled", "active", "removed" as const),
      to: fc.constantFrom("active", "fenced", "joining" as const),
      reason: fc.constant(""),
      certificateSerial: fc.constantFrom("", "0A", "0B"),
      atMs: fc.nat(),
    }),
    fc.record({
      type: fc.constant("kek.rewrap" as const),
      project: fc.constantFrom("p1", "p9"),
      fromEpoch: fc.integer({ min: 1, max: 3 }),
      epoch: fc.integer({ min: 1, max: 3 }),
      wrapped: fc.constant("QUJD"),
    }),
    fc.record({ type: fc.constant("policy.remove" as const), name: fc.constantFrom("prod", "none") }),
    fc.record({
      type: fc.constant("identity.revoke" as const),
      name: fc.constantFrom("nobody", "ghost"),
      reason: fc.constant(""),
      atMs: fc.nat(),
    }),
  );
  fc.assert(
    fc.property(cmd, (c) => {
      const before = Buffer.from(s.snapshot());
      const r = apply(s, c as ControlCommand);
      if (!r.ok) t.deepEqual(Buffer.from(s.snapshot()), before, JSON.stringify(c));
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test("codec: unknown fields, unknown types, other versions and bad values are refused with the field named", (t) => {
  const good = encodeCommand({ type: "policy.remove", name: "prod" });
  t.true(decodeCommand(good).ok);
  const raw = (o: unknown, v = 1): Uint8Array => Uint8Array.from([v, ...Buffer.from(JSON.stringify(o))]);
  t.like(decodeCommand(raw({ type: "policy.remove", name: "prod" }, 2)), { ok: false });
  t.regex(
    (decodeCommand(raw({ type: "policy.remove", name: "prod", extra: 1 })) as { reason: string }).reason,
    /extra/,
  );
  t.regex((decodeCommand(raw({ type: "nope" })) as { reason: string }).reason, /unknown command type/);
  t.regex(
    (decodeCommand(raw({ type: "member.address", id: "a\n", address: "x:1" })) as { reason: string }).reason,
    /id/,
  );
  t.regex(
    (decodeCommand(raw({ type: "member.address", id: "a", address: "nope" })) as { reason: string }).reason,
    /address/,
  );
  t.regex(
    (
      decodeCommand(raw({ type: "policy.put", name: "p", policy: { ...POLICY, pcrs: {} }, atMs: 1 })) as {
        reason: string;
      }
    ).reason,
    /pcrs/,
    "an empty PCR policy is refused",
  );
  t.throws(() => encodeCommand({ type: "policy.remove", name: "bad name" }));
});

test("autopilot: adds active members as learners, promotes toward the target in new zones first, never removes below a live quorum", (t) => {
  const m = (id: string, zone: string, state: MemberRecord["state"] = "active"): MemberRecord => ({
    id,
    address: "127.0.0.1:1",
    zone,
    weight: 1,
    state,
    policy: "",
    ekPublicKey: "",
    ekCertificate: "",
    certificateSerial: "",
    joinTokenSha256: "",
    joinTokenExpiresAtMs: 0,
    enrolledAtMs: 0,
    stateChangedAtMs: 0,
    reason: "",
    akPublic: "",
    lastQuoteClock: null,
  });
  const healthy = {
    match: 100,
    next: 101,
    state: "replicate" as const,
    inflight: 0,
    inflightBytes: 0,
    recentActive: true,
  };
  const base = {
    self: "a",
    nowMs: 100_000,
    lastIndex: 100,
    learnerSinceMs: new Map([
      ["b", 0],
      ["c", 0],
      ["d", 0],
    ]),
    voterSeenMs: new Map([["a", 100_000]]),
  };
  t.deepEqual(
    decideAutopilotStep(
      {
        ...base,
        confState: { voters: ["a"], learners: [] },
        progress: {},
        members: [m("a", "z1"), m("b", "z1")],
      },
      AUTOPILOT_DEFAULTS,
    ),
    { kind: "add-learner", id: "b", address: "127.0.0.1:1" },
  );
  t.deepEqual(
    decideAutopilotStep(
      {
        ...base,
        confState: { voters: ["a"], learners: ["b", "c"] },
        progress: { b: healthy, c: healthy },
        members: [m("a", "z1"), m("b", "z1"), m("c", "z2")],
      },
      AUTOPILOT_DEFAULTS,
    ),
    { kind: "promote", id: "c", why: "voter target, new zone" },
  );
  // Three voters, one dead, no learner to promote: keep it (removing it gains nothing and risks quorum).
  const seen = new Map([
    ["a", 100_000],
    ["b", 100_000],
    ["c", 0],
  ]);
  t.is(
    decideAutopilotStep(
      {
        ...base,
        voterSeenMs: seen,
        confState: { voters: ["a", "b", "c"], learners: [] },
        progress: { b: healthy },
        members: [m("a", "z1"), m("b", "z2"), m("c", "z3")],
      },
      AUTOPILOT_DEFAULTS,
    ),
    null,
  );
  // With a healthy learner: promote it first, then remove the dead voter.
  const withD = [m("a", "z1"), m("b", "z2"), m("c", "z3"), m("d", "z3")];
  t.like(
    decideAutopilotStep(
      {
        ...base,
        voterSeenMs: seen,
        confState: { voters: ["a", "b", "c"], learners: ["d"] },
        progress: { b: healthy, d: healthy },
        members: withD,
      },
      AUTOPILOT_DEFAULTS,
    ),
    { kind: "promote", id: "d" },
  );
  t.like(
    decideAutopilotStep(
      {
        ...base,
        voterSeenMs: new Map([...seen, ["d", 100_000]]),
        confState: { voters: ["a", "b", "c", "d"], learners: [] },
        progress: { b: healthy, d: healthy },
        members: withD,
      },
      AUTOPILOT_DEFAULTS,
    ),
    { kind: "remove", id: "c" },
  );
  // Two of three voters dead: removing one would leave 1 live of 2, no quorum: refused.
  t.is(
    decideAutopilotStep(
      {
        ...base,
        voterSeenMs: new Map([
          ["a", 100_000],
          ["b", 0],
          ["c", 0],
        ]),
        confState: { voters: ["a", "b", "c"], learners: [] },
        progress: {},
        members: [m("a", "z1"), m("b", "z2"), m("c", "z3")],
      },
      { ...AUTOPILOT_DEFAULTS, voterTarget: 1 },
    ),
    null,
  );
});

test("attested join: member.admit makes a joining member (certificate, AK, clock, token spent); member.confirm of that admission makes it active; replays and removed members are refused", (t) => {
  const s = populated();
  const clock = (c: number, restart = 0): { clock: string; resetCount: number; restartCount: number } => ({
    clock: String(c),
    resetCount: 1,
    restartCount: restart,
  });
  const admit = (from: MemberRecord["state"], serial: string, c: number): ControlResult =>
    apply(s, {
      type: "member.admit",
      id: "b",
      from,
      certificateSerial: serial,
      akPublic: "QUs=",
      quoteClock: clock(c),
      atMs: 20,
    });
  const confirm = (serial: string): ControlResult =>
    apply(s, { type: "member.confirm", id: "b", certificateSerial: serial, atMs: 20 });
  t.like(admit("active", "0C", 10), { ok: false, code: "conflict" }, "b is enrolled");
  t.like(admit("enrolled", "0A", 10), { ok: false, code: "conflict" }, "a's certificate");
  t.like(confirm("0C"), { ok: false, code: "conflict" }, "nothing admitted with that certificate yet");
  t.like(admit("enrolled", "0C", 10), { ok: true });
  t.like(s.member("b"), {
    state: "joining",
    certificateSerial: "0C",
    joinTokenSha256: "",
    akPublic: "QUs=",
    lastQuoteClock: clock(10),
  });
  t.like(
    apply(s, { type: "member.attested", id: "b", quoteClock: clock(11), atMs: 21 }),
    { ok: false, code: "failed-precondition" },
    "a joining member is not re-quoted",
  );
  // A retried join (its verifier died before answering) replaces the admission; the old one is dead.
  t.like(admit("joining", "0D", 11), { ok: true });
  t.truthy(s.revocation("0C"), "the replaced admission's certificate is revoked");
  t.like(confirm("0C"), { ok: false, code: "conflict" }, "the replaced admission cannot be confirmed");
  t.is(s.member("b")!.state, "joining");
  t.like(confirm("0D"), { ok: true });
  t.is(s.member("b")!.state, "active");
  t.like(confirm("0D"), { ok: true }, "confirming again (a lost answer, retried) changes nothing");
  const attested = (c: number): ControlResult =>
    apply(s, { type: "member.attested", id: "b", quoteClock: clock(c), atMs: 21 });
  t.like(
    attested(11),
    { ok: false, code: "conflict" },
    "a quote clock that does not move forward is a replay",
  );
  t.like(
    apply(s, {
      type: "member.transition",
      id: "b",
      from: "active",
      to: "down",
      reason: "no answer",
      certificateSerial: "",
      atMs: 22,
    }),
    { ok: true },
  );
  t.like(attested(12), { ok: true });
  t.is(s.member("b")!.state, "active", "a down member that answers is active again");
  t.like(admit("active", "0F", 13), { ok: true }, "re-attesting replaces the certificate");
  t.truthy(s.revocation("0D"), "the superseded certificate is revoked");
  t.is(s.member("b")!.state, "joining", "and the member is joining until it confirms again");
  // Never confirmed: the leader undoes the admission (leader-duties.ts).
  t.like(
    apply(s, {
      type: "member.transition",
      id: "b",
      from: "joining",
      to: "enrolled",
      reason: "join not confirmed",
      certificateSerial: "0F",
      atMs: 24,
    }),
    { ok: true },
  );
  t.like(s.member("b"), { state: "enrolled", certificateSerial: "", akPublic: "" });
  t.truthy(s.revocation("0F"), "an undone admission's certificate is revoked");
  t.like(confirm("0F"), { ok: false }, "an undone admission cannot be confirmed");
  t.like(admit("enrolled", "10", 14), { ok: true }, "and the peer may join again");
  t.like(confirm("10"), { ok: true });
  t.like(
    apply(s, {
      type: "member.transition",
      id: "b",
      from: "active",
      to: "removed",
      reason: "",
      certificateSerial: "",
      atMs: 25,
    }),
    { ok: true },
  );
  t.like(
    admit("removed", "11", 15),
    { ok: false, code: "failed-precondition" },
    "a removed peer cannot rejoin",
  );
});

/** populated() with member b admitted (active, attested) and a second project KEK. */
function rotating(): ControlState {
  const s = populated();
  const steps: ControlCommand[] = [
    {
      type: "member.transition",
      id: "b",
      from: "enrolled",
      to: "joining",
      reason: "",
      certificateSerial: "",
      atMs: 6,
    },
    {
      type: "member.admit",
      id: "b",
      from: "joining",
      certificateSerial: "0C",
      akPublic: Buffer.from("ak").toString("base64"),
      quoteClock: { clock: "1", resetCount: 0, restartCount: 0 },
      atMs: 7,
    },
    { type: "member.confirm", id: "b", certificateSerial: "0C", atMs: 7 },
    { type: "kek.create", project: "p2", epoch: 1, wrapped: "AAAA" },
  ];
  for (const c of steps) {
    const r = apply(s, c);
    if (!r.ok) throw new Error(`${c.type}: ${r.reason}`);
  }
  return s;
}

test("rotation: a staged epoch wraps nothing and activates only once every active member holds it; one rotation at a time", (t) => {
  const s = rotating();
  t.like(apply(s, { type: "cmk.epoch-stage", epoch: 2, holder: "zz", atMs: 8 }), {
    ok: false,
    code: "not-found",
  });
  t.like(apply(s, { type: "cmk.epoch-stage", epoch: 1, holder: "a", atMs: 8 }), {
    ok: false,
    code: "already-exists",
  });
  t.like(apply(s, { type: "cmk.epoch-stage", epoch: 2, holder: "a", atMs: 8 }), { ok: true });
  t.like(apply(s, { type: "cmk.epoch-stage", epoch: 3, holder: "a", atMs: 8 }), {
    ok: false,
    code: "failed-precondition",
  });
  t.like(apply(s, { type: "kek.create", project: "p3", epoch: 2, wrapped: "BBBB" }), {
    ok: false,
    code: "failed-precondition",
  });
  t.like(apply(s, { type: "kek.rewrap", project: "p1", fromEpoch: 1, epoch: 2, wrapped: "BBBB" }), {
    ok: false,
    code: "failed-precondition",
  });
  const refused = apply(s, { type: "cmk.epoch-activate", epoch: 2 });
  t.like(refused, { ok: false, code: "failed-precondition" });
  t.regex((refused as { reason: string }).reason, /members b do not hold CMK epoch 2/);
  t.deepEqual(s.cmkEpochLackers(2, ["active"]), ["b"]);
  t.like(apply(s, { type: "cmk.epoch-held", epoch: 2, member: "b" }), { ok: true });
  t.like(apply(s, { type: "cmk.epoch-held", epoch: 2, member: "b" }), { ok: true }, "idempotent");
  t.like(apply(s, { type: "cmk.epoch-activate", epoch: 2 }), { ok: true });
  t.deepEqual(
    s.cmkEpochs().map((e) => [e.epoch, e.state, e.holders]),
    [
      [1, "retiring", []],
      [2, "active", ["a", "b"]],
    ],
  );
  // New KEKs may still be wrapped under the retiring epoch (a peer that has not switched yet).
  t.like(apply(s, { type: "kek.create", project: "p3", epoch: 1, wrapped: "BBBB" }), { ok: true });
});

test("rotation: the old epoch retires only when no KEK nor the CA key refers to it and every member that may serve holds the new one", (t) => {
  const s = rotating();
  apply(s, { type: "cmk.epoch-stage", epoch: 2, holder: "a", atMs: 8 });
  apply(s, { type: "cmk.epoch-held", epoch: 2, member: "b" });
  apply(s, { type: "cmk.epoch-activate", epoch: 2 });
  t.like(apply(s, { type: "cmk.epoch-state", epoch: 2, state: "retired" }), {
    ok: false,
    code: "failed-precondition",
  });
  t.like(apply(s, { type: "cmk.epoch-state", epoch: 1, state: "retired" }), {
    ok: false,
    code: "failed-precondition",
  });
  for (const project of ["p1", "p2"]) {
    t.like(apply(s, { type: "kek.rewrap", project, fromEpoch: 1, epoch: 2, wrapped: "CCCC" }), { ok: true });
  }
  // A member enrolled later, now down without the new epoch, holds retirement back.
  apply(s, {
    type: "member.enroll",
    id: "c",
    address: "127.0.0.1:3",
    zone: "z3",
    weight: 1,
    policy: "prod",
    ekPublicKey: Buffer.from("other-ek").toString("base64"),
    ekCertificate: "",
    joinTokenSha256: "cd".repeat(32),
    joinTokenExpiresAtMs: 10_000,
    atMs: 9,
  });
  apply(s, {
    type: "member.transition",
    id: "c",
    from: "enrolled",
    to: "joining",
    reason: "",
    certificateSerial: "",
    atMs: 9,
  });
  apply(s, {
    type: "member.admit",
    id: "c",
    from: "joining",
    certificateSerial: "0D",
    akPublic: Buffer.from("ak-c").toString("base64"),
    quoteClock: { clock: "1", resetCount: 0, restartCount: 0 },
    atMs: 9,
  });
  apply(s, { type: "member.confirm", id: "c", certificateSerial: "0D", atMs: 9 });
  apply(s, {
    type: "member.transition",
    id: "c",
    from: "active",
    to: "down",
    reason: "no answer",
    certificateSerial: "",
    atMs: 10,
  });
  const waiting = apply(s, { type: "cmk.epoch-state", epoch: 1, state: "retired" });
  t.like(waiting, { ok: false, code: "failed-precondition" });
  t.regex((waiting as { reason: string }).reason, /members c do not hold the active CMK epoch 2/);
  t.like(apply(s, { type: "cmk.epoch-held", epoch: 2, member: "c" }), { ok: true });
  t.like(apply(s, { type: "cmk.epoch-state", epoch: 1, state: "retired" }), { ok: true });
  t.like(apply(s, { type: "cmk.epoch-held", epoch: 1, member: "c" }), { ok: false, code: "conflict" });
  t.like(apply(s, { type: "kek.create", project: "p4", epoch: 1, wrapped: "BBBB" }), {
    ok: false,
    code: "failed-precondition",
  });
  // The holders survive a snapshot.
  const copy = new ControlState();
  copy.restore(s.snapshot());
  t.deepEqual(copy.cmkEpochs(), s.cmkEpochs());
});

test("re-enrolment onto a new TPM: a joined member's EK, AK and quote clock are replaced (its state and certificate kept); an unattested, enrolled or removed member, or another member's EK, is refused and changes nothing", (t) => {
  const s = rotating();
  const newEk = Buffer.from("new-ek-public-key").toString("base64");
  const reenroll = (id: string, ekPublicKey: string, atMs = 30): ControlResult =>
    apply(s, {
      type: "member.reenroll",
      id,
      ekPublicKey,
      ekCertificate: "",
      akPublic: Buffer.from("new-ak").toString("base64"),
      // A new TPM's clock is lower than the old one's last quote: it starts over, it is no replay.
      quoteClock: { clock: "0", resetCount: 0, restartCount: 0 },
      reason: "re-enrolled onto a new TPM",
      atMs,
    });
  const before = Buffer.from(s.snapshot());
  t.like(
    reenroll("a", newEk),
    { ok: false, code: "failed-precondition" },
    "a has no policy: never re-quoted",
  );
  t.like(reenroll("nobody", newEk), { ok: false, code: "not-found" });
  t.deepEqual(Buffer.from(s.snapshot()), before, "refusals change nothing");

  t.like(reenroll("b", newEk), { ok: true });
  t.like(s.member("b"), {
    state: "active",
    certificateSerial: "0C",
    ekPublicKey: newEk,
    ekCertificate: "",
    akPublic: Buffer.from("new-ak").toString("base64"),
    lastQuoteClock: { clock: "0", resetCount: 0, restartCount: 0 },
    reason: "re-enrolled onto a new TPM",
  });
  t.like(
    apply(s, {
      type: "member.attested",
      id: "b",
      quoteClock: { clock: "5", resetCount: 0, restartCount: 0 },
      atMs: 31,
    }),
    { ok: true },
    "re-quotes of the new TPM go on from its clock",
  );

  // Another member may not take b's new EK; an enrolled (not yet joined) member is not re-enrolled.
  const c: ControlCommand = {
    type: "member.enroll",
    id: "c",
    address: "127.0.0.1:3",
    zone: "z3",
    weight: 1,
    policy: "prod",
    ekPublicKey: Buffer.from("ek-of-c").toString("base64"),
    ekCertificate: "",
    joinTokenSha256: "cd".repeat(32),
    joinTokenExpiresAtMs: 10_000,
    atMs: 32,
  };
  t.like(apply(s, c), { ok: true });
  t.like(reenroll("c", Buffer.from("ek-of-c2").toString("base64")), {
    ok: false,
    code: "failed-precondition",
  });
  t.like(
    apply(s, {
      type: "member.transition",
      id: "c",
      from: "enrolled",
      to: "removed",
      reason: "",
      certificateSerial: "",
      atMs: 33,
    }),
    { ok: true },
  );
  t.like(reenroll("c", newEk), { ok: false, code: "failed-precondition" }, "removed stays removed");
  t.like(
    apply(s, { ...c, id: "d", ekPublicKey: newEk, joinTokenSha256: "ef".repeat(32) }),
    { ok: false, code: "already-exists" },
    "the re-enrolled EK is b's now",
  );
  // The codec refuses a re-enrolment without an EK or an AK.
  for (const bad of [{ ekPublicKey: "" }, { akPublic: "" }]) {
    const decoded = decodeCommand(
      new Uint8Array([
        1,
        ...new TextEncoder().encode(
          JSON.stringify({
            type: "member.reenroll",
            id: "b",
            ekPublicKey: newEk,
            ekCertificate: "",
            akPublic: "QUs=",
            quoteClock: { clock: "1", resetCount: 0, restartCount: 0 },
            reason: "",
            atMs: 1,
            ...bad,
          }),
        ),
      ]),
    );
    t.false(decoded.ok, JSON.stringify(bad));
  }
});

test("undoing an unconfirmed join names its admission: an undo for a replaced admission is refused and revokes nothing", (t) => {
  const s = populated();
  const clock = (c: number) => ({ clock: String(c), resetCount: 0, restartCount: 0 });
  const admit = (from: MemberRecord["state"], serial: string, c: number): ControlResult =>
    apply(s, {
      type: "member.admit",
      id: "b",
      from,
      certificateSerial: serial,
      akPublic: "QUs=",
      quoteClock: clock(c),
      atMs: 10,
    });
  const undo = (serial: string): ControlResult =>
    apply(s, {
      type: "member.transition",
      id: "b",
      from: "joining",
      to: "enrolled",
      reason: "join not confirmed",
      certificateSerial: serial,
      atMs: 11,
    });
  t.like(admit("enrolled", "0C", 10), { ok: true });
  // The leader decided to undo admission 0C; before its entry commits the joiner retried (0D).
  t.like(admit("joining", "0D", 11), { ok: true });
  const before = Buffer.from(s.snapshot());
  t.like(undo("0C"), { ok: false, code: "conflict" }, "the undo of 0C does not apply to 0D");
  t.like(undo(""), { ok: false, code: "malformed" }, "an undo names the admission it undoes");
  t.deepEqual(Buffer.from(s.snapshot()), before, "a refused undo changes nothing");
  t.like(s.member("b"), { state: "joining", certificateSerial: "0D" });
  t.falsy(s.revocation("0D"), "the retried admission's certificate is not revoked");
  t.like(apply(s, { type: "member.confirm", id: "b", certificateSerial: "0D", atMs: 12 }), { ok: true });
  t.is(s.member("b")!.state, "active");
});
