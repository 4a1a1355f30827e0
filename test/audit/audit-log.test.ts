import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { AuditLog, type AuditEventInput } from "../../src/audit/audit-log.js";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";

class StepClock {
  ms = Date.UTC(2026, 5, 1);
  now(): Date {
    this.ms += 1000;
    return new Date(this.ms);
  }
}

async function setup(t: ExecutionContext) {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-audit-"));
  const ctx: { dir: string; store: PeerStore; log: AuditLog; clock: StepClock } = {
    dir,
    store: await openPeerStore(dir),
    clock: new StepClock(),
    log: undefined as never,
  };
  ctx.log = await AuditLog.open(ctx.store, ctx.clock);
  t.teardown(async () => {
    await ctx.store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return ctx;
}

const KEY_1 = "aaaaaaaa-0000-4000-8000-000000000001";
const KEY_2 = "aaaaaaaa-0000-4000-8000-000000000002";
const event = (over: Partial<AuditEventInput> = {}): AuditEventInput => ({
  identity: "vol-host-1",
  operation: "GetKey",
  keyId: KEY_1,
  project: "tenant-a",
  outcome: "ok",
  status: "OK",
  ...over,
});

test("append records who, which key, what, when and the outcome; list returns them oldest first", async (t) => {
  const ctx = await setup(t);
  const first = await ctx.log.append(event());
  const second = await ctx.log.append(
    event({ operation: "DeleteKey", outcome: "not_found", status: "NOT_FOUND", detail: "no such key" }),
  );
  t.is(first.sequence, 1);
  t.is(second.sequence, 2);
  t.true(second.time > first.time);
  const { events, nextPageToken } = await ctx.log.list();
  t.is(nextPageToken, "");
  t.deepEqual(events, [first, second]);
  t.like(events[1], {
    identity: "vol-host-1",
    operation: "DeleteKey",
    keyId: KEY_1,
    project: "tenant-a",
    outcome: "not_found",
    status: "NOT_FOUND",
    detail: "no such key",
  });
});

test("sequence numbers continue across restarts", async (t) => {
  const ctx = await setup(t);
  for (let i = 0; i < 3; i++) await ctx.log.append(event());
  await ctx.store.close();
  ctx.store = await openPeerStore(ctx.dir);
  ctx.log = await AuditLog.open(ctx.store, ctx.clock);
  t.is((await ctx.log.append(event())).sequence, 4);
  t.deepEqual(
    (await ctx.log.list()).events.map((e) => e.sequence),
    [1, 2, 3, 4],
  );
});

test("list filters by key and by identity, and pages with a token", async (t) => {
  const ctx = await setup(t);
  await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      ctx.log.append(event({ keyId: i % 3 === 0 ? KEY_2 : KEY_1, identity: i % 2 === 0 ? "alice" : "bob" })),
    ),
  );
  const byKey = await ctx.log.list({ keyId: KEY_2 });
  t.is(byKey.events.length, 10);
  t.true(byKey.events.every((e) => e.keyId === KEY_2));
  const byBoth = await ctx.log.list({ keyId: KEY_2.toUpperCase(), identity: "alice" });
  t.true(byBoth.events.every((e) => e.keyId === KEY_2 && e.identity === "alice"));
  t.is(byBoth.events.length, 5);

  const seen: number[] = [];
  let token = "";
  let pages = 0;
  do {
    const page = await ctx.log.list({ identity: "bob", pageSize: 4, pageToken: token });
    seen.push(...page.events.map((e) => e.sequence));
    token = page.nextPageToken;
    pages += 1;
  } while (token !== "" && pages < 20);
  t.is(seen.length, 15);
  t.deepEqual(
    seen,
    [...seen].sort((a, b) => a - b),
  );
  t.is(new Set(seen).size, 15);
});

test("concurrent appends get distinct sequence numbers and are all durable", async (t) => {
  const ctx = await setup(t);
  const events = await Promise.all(Array.from({ length: 40 }, () => ctx.log.append(event())));
  t.is(new Set(events.map((e) => e.sequence)).size, 40);
  await ctx.store.close();
  ctx.store = await openPeerStore(ctx.dir);
  ctx.log = await AuditLog.open(ctx.store, ctx.clock);
  t.is((await ctx.log.list({ pageSize: 1000 })).events.length, 40);
});

test("bad list arguments are INVALID_ARGUMENT naming the field", async (t) => {
  const ctx = await setup(t);
  const cases: [Parameters<AuditLog["list"]>[0], string][] = [
    [{ keyId: "nope" }, "key_id"],
    [{ identity: "x".repeat(300) }, "identity"],
    [{ pageSize: 1001 }, "page_size"],
    [{ pageSize: -3 }, "page_size"],
    [{ pageToken: "zzz" }, "page_token"],
    [{ pageToken: "a1-000000000000000g" }, "page_token"],
  ];
  for (const [req, field] of cases) {
    const e = await t.throwsAsync<LockboxError>(ctx.log.list(req));
    t.true(isLockboxError(e, "INVALID_ARGUMENT"));
    t.is(e!.field, field);
  }
});

test("events hold text only: material cannot be passed, and oversize detail is cut", async (t) => {
  const ctx = await setup(t);
  // @ts-expect-error material is typed never: key bytes cannot reach the audit log
  const withMaterial: AuditEventInput = { ...event(), material: new Uint8Array(32) };
  t.truthy(withMaterial);
  // @ts-expect-error detail is a string, never bytes
  await t.throwsAsync(ctx.log.append(event({ detail: new Uint8Array(32) })), { instanceOf: TypeError });
  // @ts-expect-error an unknown outcome is refused
  await t.throwsAsync(ctx.log.append(event({ outcome: "maybe" })), { instanceOf: TypeError });
  const long = await ctx.log.append(event({ detail: "d".repeat(5000) }));
  t.is(long.detail.length, 1024);
  t.deepEqual((await ctx.log.list()).events, [long]);
});

test("a filtered list examines a bounded number of events per call and continues with a token", async (t) => {
  const ctx = await setup(t);
  for (let i = 0; i < 12; i++) await ctx.log.append(event({ identity: i === 10 ? "rare" : "common" }));
  const bounded = await AuditLog.open(ctx.store, ctx.clock, { scanMax: 5 });
  const first = await bounded.list({ identity: "rare" });
  t.deepEqual(first.events, []);
  t.not(first.nextPageToken, "");
  const second = await bounded.list({ identity: "rare", pageToken: first.nextPageToken });
  t.deepEqual(second.events, []);
  const third = await bounded.list({ identity: "rare", pageToken: second.nextPageToken });
  t.deepEqual(
    third.events.map((e) => e.sequence),
    [11],
  );
  t.is(third.nextPageToken, "");
});
