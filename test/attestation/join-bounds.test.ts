/**
 * What callers without a certificate can make a verifier hold is bounded:
 * joins in progress, joins begun per second, a session's life; unknown or
 * expired sessions and a full table are refused without a session and
 * counted into aggregate audit records rather than written one by one.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import { withTransient } from "../../tpm/client/scoped.js";
import { createAk } from "../../tpm/keys/ak.js";
import { joinerHello } from "../../src/attestation/joiner.js";
import type { JoinHello } from "../../src/attestation/join-messages.js";
import { cluster, machine } from "./join-fixture.js";

const PEER = "peer-4";

async function hello(m: Awaited<ReturnType<typeof machine>>): Promise<JoinHello> {
  return withTransient(
    m.tpm,
    () => createAk(m.tpm),
    (ak) => joinerHello(m.tpm, PEER, ak),
  );
}

test("joins in progress are capped at sessionsMax, and a session's place is freed when its life ends", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t, {
    sessionsMax: 3,
    startsPerSecondMax: 100,
    sessionTtlMs: 5_000,
    nonceTtlMs: 1_000,
  });
  await c.enroll(m, PEER);
  const h = await hello(m);
  const answers = [];
  for (let i = 0; i < 5; i++) answers.push(await c.verifier.begin(h, "10.0.0.1"));
  t.deepEqual(
    answers.map((a) => (a.ok ? "challenge" : a.refusal.code)),
    ["challenge", "challenge", "challenge", "joins-busy", "joins-busy"],
  );
  t.is(c.verifier.sessionsInProgress, 3);
  c.clock.advance(5_001);
  t.is(c.verifier.sessionsInProgress, 0, "expired sessions are dropped");
  const late = answers[0]!;
  if (!late.ok) throw new Error("expected a challenge");
  const r = await c.verifier.activate(
    {
      sessionId: late.value.sessionId,
      credential: new Uint8Array(32),
      tpmResponseCode: 0,
      joinTokenProof: new Uint8Array(0),
    },
    "10.0.0.1",
  );
  t.like(r, { ok: false, refusal: { check: "session", code: "session-expired" } });
  t.true((await c.verifier.begin(h, "10.0.0.1")).ok, "a new join starts once places are free");
});

test("joins begun per second are capped, refused ones too, and a flood of bogus steps writes no audit record per call", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t, { startsPerSecondMax: 4 });
  await c.enroll(m, PEER);
  const h = await hello(m);
  const bogus = { ...h, peerId: "peer-nobody" };
  const codes: string[] = [];
  for (let i = 0; i < 10; i++) {
    const r = await c.verifier.begin(bogus, "10.0.0.2");
    codes.push(r.ok ? "ok" : r.refusal.code);
  }
  t.deepEqual(codes.slice(0, 4), ["member-unknown", "member-unknown", "member-unknown", "member-unknown"]);
  t.true(codes.slice(4).every((code) => code === "joins-busy"));
  for (let i = 0; i < 200; i++) {
    const r = await c.verifier.activate(
      {
        sessionId: randomBytes(16),
        credential: new Uint8Array(0),
        tpmResponseCode: 0,
        joinTokenProof: new Uint8Array(0),
      },
      "10.0.0.2",
    );
    t.is(r.ok ? "ok" : r.refusal.code, "session-unknown");
  }
  const events = await c.joinEvents();
  t.is(
    events.filter((e) => e.outcome === "denied").length,
    4,
    "one record per refused start within the rate, none for the rest",
  );
  t.is(c.verifier.sessionsInProgress, 0);
});
