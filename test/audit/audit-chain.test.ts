/**
 * The audit log's hash chain, escaping, retention and refusal aggregates, on
 * a real LevelDB: an intact log verifies; an edited, removed or re-hashed
 * record, a removed last record, and records removed before a retention
 * anchor are each named; retention keeps the shortened chain verifiable.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { createHash } from "node:crypto";
import { AuditLog, type AuditEventInput, verifyAuditLog } from "../../src/audit/audit-log.js";
import { HEAD_KEY, recordKey } from "../../src/audit/audit-chain.js";
import { escapeClientText, terminalSafe } from "../../src/audit/audit-text.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";

class StepClock {
  ms = Date.UTC(2026, 5, 1);
  now(): Date {
    this.ms += 1000;
    return new Date(this.ms);
  }
}

async function setup(t: ExecutionContext, options: Parameters<typeof AuditLog.open>[2] = {}) {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-audit-chain-"));
  const clock = new StepClock();
  let store: PeerStore = await openPeerStore(dir);
  let log = await AuditLog.open(store, clock, { log: () => {}, ...options });
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    clock,
    get store() {
      return store;
    },
    get log() {
      return log;
    },
    async reopen() {
      await log.close();
      await store.close();
      store = await openPeerStore(dir);
      log = await AuditLog.open(store, clock, { log: () => {}, ...options });
    },
  };
}

const event = (i: number): AuditEventInput => ({
  identity: "vol-host-1",
  operation: "GetKey",
  keyId: `key-${i}`,
  project: "tenant-a",
  outcome: "ok",
  status: "OK",
});

async function appendMany(log: AuditLog, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await log.append(event(i));
}

async function edit(
  store: PeerStore,
  sequence: number,
  change: (o: Record<string, unknown>) => void,
): Promise<void> {
  const key = recordKey(sequence);
  const bytes = (await store.get("audit", key))!;
  const o = JSON.parse(Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
  change(o);
  await store.write([{ type: "put", sublevel: "audit", key, value: Buffer.from(JSON.stringify(o)) }]);
}

test("an intact log verifies, and keeps verifying across a restart", async (t) => {
  const s = await setup(t);
  await appendMany(s.log, 10);
  t.like(await verifyAuditLog(s.store), { ok: true, records: 10, first: 1, last: 10 });
  await s.reopen();
  await appendMany(s.log, 5);
  t.like(await verifyAuditLog(s.store), { ok: true, records: 15, first: 1, last: 15 });
});

test("an edited record is named: its content no longer matches its hash", async (t) => {
  const s = await setup(t);
  await appendMany(s.log, 10);
  await edit(s.store, 4, (o) => (o.operation = "DeleteKey"));
  const v = await verifyAuditLog(s.store);
  t.like(v, { ok: false, sequence: 4 });
  if (!v.ok) t.regex(v.problem, /#4 was edited/);
});

test("an edited and re-hashed record is caught by the next record's link", async (t) => {
  const s = await setup(t);
  await appendMany(s.log, 10);
  await edit(s.store, 4, (o) => {
    o.operation = "DeleteKey";
    const c = [
      2,
      o.sequence,
      o.time,
      o.identity,
      o.operation,
      o.keyId,
      o.project,
      o.outcome,
      o.status,
      o.detail,
    ];
    o.hash = createHash("sha256")
      .update(JSON.stringify([...c, o.source, o.count, o.prev]))
      .digest("hex");
  });
  const v = await verifyAuditLog(s.store);
  t.like(v, { ok: false, sequence: 5 });
  if (!v.ok) t.regex(v.problem, /#5 does not link to #4/);
});

test("a removed record is named, also the first and the last", async (t) => {
  for (const removed of [1, 6, 10]) {
    const s = await setup(t);
    await appendMany(s.log, 10);
    await s.store.write([{ type: "del", sublevel: "audit", key: recordKey(removed) }]);
    const v = await verifyAuditLog(s.store);
    t.like(v, { ok: false, sequence: removed }, `record ${removed}`);
    if (!v.ok) t.regex(v.problem, new RegExp(`#${removed} is missing`));
  }
});

test("a removed head is noticed", async (t) => {
  const s = await setup(t);
  await appendMany(s.log, 3);
  await s.store.write([{ type: "del", sublevel: "audit", key: HEAD_KEY }]);
  t.like(await verifyAuditLog(s.store), { ok: false, sequence: 3 });
});

test("retention drops the oldest records, leaves an anchor, and the rest still verifies; removing more is named", async (t) => {
  const s = await setup(t, { retention: { recordsMax: 5 } });
  await appendMany(s.log, 20);
  // Retention runs at open (and every 1024 appends).
  await s.reopen();
  const v = await verifyAuditLog(s.store);
  t.like(v, { ok: true, records: 5, first: 16, last: 20, dropped: 15 });
  const listed = await s.log.list({});
  t.deepEqual(
    listed.events.map((e) => e.sequence),
    [16, 17, 18, 19, 20],
  );
  await s.store.write([{ type: "del", sublevel: "audit", key: recordKey(16) }]);
  const after = await verifyAuditLog(s.store);
  t.like(after, { ok: false, sequence: 16 });
});

test("retention by age drops records older than ageMaxMs", async (t) => {
  const s = await setup(t, { retention: { ageMaxMs: 10_000 } });
  await appendMany(s.log, 10); // one second apart
  s.clock.ms += 5_000;
  await s.reopen();
  const v = await verifyAuditLog(s.store);
  t.true(v.ok);
  if (v.ok) t.true(v.records < 10 && v.records > 0, `kept ${v.records}`);
});

test("client text is stored escaped: no control character, escape sequence or line break survives", async (t) => {
  const s = await setup(t);
  const nasty = "\u001b[2K\r2026-06-01T00:00:00Z  #99  admin  DeleteKey  ok\n\u202eevil\\x1b";
  await s.log.append({ ...event(0), keyId: nasty, project: nasty, detail: nasty, identity: nasty });
  const [e] = (await s.log.list({})).events;
  for (const field of [e!.keyId, e!.project, e!.detail, e!.identity]) {
    t.false(/[\u0000-\u001f\u007f-\u009f\u202e]/.test(field), JSON.stringify(field));
    t.true(field.startsWith("\\x1b[2K\\x0d2026"), field);
    // A backslash the client sent is doubled, so it cannot pass for an escape.
    t.true(field.endsWith("\\u{202e}evil\\\\x1b"), field);
  }
  t.is(escapeClientText("plain text"), "plain text");
  t.is(terminalSafe("a\\x1b\u001b"), "a\\x1b\\x1b");
  t.true((await verifyAuditLog(s.store)).ok);
});

test("refused calls become one record per source, operation and reason per window, with their count", async (t) => {
  const s = await setup(t, { refusals: { windowMs: 60_000 } });
  for (let i = 0; i < 5000; i++) {
    s.log.countRefusal({
      source: i % 2 === 0 ? "10.0.0.1" : "10.0.0.2",
      operation: "GetKey",
      status: "UNAUTHENTICATED",
      reason: "no client certificate",
    });
  }
  await s.log.close(); // writes the window now
  const events = (await s.log.list({})).events;
  t.is(events.length, 2);
  t.deepEqual(events.map((e) => [e.source, e.count, e.status, e.outcome]).sort(), [
    ["10.0.0.1", 2500, "UNAUTHENTICATED", "denied"],
    ["10.0.0.2", 2500, "UNAUTHENTICATED", "denied"],
  ]);
  t.true((await verifyAuditLog(s.store)).ok);
});

test("refusals beyond keysMax distinct counters share one overflow record", async (t) => {
  const s = await setup(t, { refusals: { windowMs: 60_000, keysMax: 8 } });
  for (let i = 0; i < 100; i++) {
    s.log.countRefusal({
      source: `10.0.0.${i}`,
      operation: "GetKey",
      status: "UNAUTHENTICATED",
      reason: "r",
    });
  }
  await s.log.close();
  const events = (await s.log.list({})).events;
  t.is(events.length, 9);
  t.is(
    events.reduce((sum, e) => sum + e.count, 0),
    100,
  );
});
