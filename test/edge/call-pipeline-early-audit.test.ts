/**
 * The early audit record of a create (src/edge/call-pipeline.ts): an operation that calls
 * `committing` before its write has its "ok" record appended then, while the write runs; the reply
 * still waits for that record; a failure after it is recorded second, saying it supersedes the
 * first; a read never records early. A real AuditLog on a real LevelDB; the operations are test
 * operations that block on a gate where a real one would wait for its write.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { AuditLog, type AuditEventInput } from "../../src/audit/audit-log.js";
import { type CallResult, type Operation, SUPERSEDES, runCall } from "../../src/edge/call-pipeline.js";
import { LockboxError } from "../../src/errors.js";
import type { Caller } from "../../src/identity/caller.js";
import { openPeerStore } from "../../src/store/peer-store.js";

const KEY = "aaaaaaaa-0000-4000-8000-000000000001";
const caller: Caller = { identity: "vol-host-1", role: "service", projects: ["p1"] };

interface Gate {
  promise: Promise<void>;
  open(): void;
}
function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

async function openLog(t: ExecutionContext): Promise<AuditLog> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-early-audit-"));
  const store = await openPeerStore(dir);
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return AuditLog.open(store, undefined, { log: () => {} });
}

/** A create that announces KEY, then waits on `write` as a real one waits for its quorum. */
function createOp(write: Gate, fail?: LockboxError): Operation<object, string> {
  return {
    name: "CreateKey",
    adminOnly: false,
    requestFacts: () => ({ project: "p1" }),
    async run(_caller, _req, committing) {
      committing({ keyId: KEY, project: "p1" });
      await write.promise;
      if (fail !== undefined) throw fail;
      return { response: "made", facts: { keyId: KEY, project: "p1" } };
    },
  };
}

function call(
  op: Operation<object, string>,
  audit: { append(e: AuditEventInput): Promise<unknown> },
  readOnly = false,
): Promise<CallResult<string>> {
  return runCall(
    op,
    { audit: { append: (e) => audit.append(e), countRefusal: () => {} }, log: () => {} },
    {
      request: {},
      readOnly,
      source: () => "127.0.0.1",
      authenticate: () => caller,
    },
  );
}

async function records(log: AuditLog) {
  return (await log.list({})).events.map((e) => [e.operation, e.outcome, e.status, e.keyId, e.detail]);
}

async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test("a create's ok record is written while its write is still running, and only once", async (t) => {
  const log = await openLog(t);
  const write = gate();
  const result = call(createOp(write), log);
  // The write has not finished, yet the record is synced: it was started when the write began.
  await until(async () => (await log.list({})).events.length === 1, "the early record");
  t.deepEqual(await records(log), [["CreateKey", "ok", "OK", KEY, ""]]);
  write.open();
  t.deepEqual(await result, { response: "made" });
  t.deepEqual(await records(log), [["CreateKey", "ok", "OK", KEY, ""]], "no second record for a success");
});

test("a create that fails after its ok record gets a second record that supersedes it", async (t) => {
  const log = await openLog(t);
  const write = gate();
  write.open();
  const result = await call(
    createOp(write, new LockboxError("UNAVAILABLE", "write quorum not reached")),
    log,
  );
  t.deepEqual(result, { failure: { code: "UNAVAILABLE", message: "write quorum not reached" } });
  t.deepEqual(await records(log), [
    ["CreateKey", "ok", "OK", KEY, ""],
    ["CreateKey", "error", "UNAVAILABLE", KEY, `${SUPERSEDES}write quorum not reached`],
  ]);
});

test("the reply waits for the early record to be synced (delayed audit sink)", async (t) => {
  const log = await openLog(t);
  const write = gate();
  write.open();
  const synced = gate();
  let settled = false;
  const result = call(createOp(write), {
    append: async (e) => {
      await synced.promise;
      return log.append(e);
    },
  }).then((r) => {
    settled = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 100));
  t.false(settled, "replied before its audit record was written");
  synced.open();
  t.deepEqual(await result, { response: "made" });
  t.deepEqual(await records(log), [["CreateKey", "ok", "OK", KEY, ""]]);
});

test("a read that calls committing is still recorded after it, not before", async (t) => {
  const log = await openLog(t);
  const write = gate();
  const result = call({ ...createOp(write), name: "GetKey" }, log, true);
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(await records(log), [], "a read's record came before the read finished");
  write.open();
  t.deepEqual(await result, { response: "made" });
  t.deepEqual(await records(log), [["GetKey", "ok", "OK", KEY, ""]]);
});

test("a result that names another key than the one announced is recorded too", async (t) => {
  const log = await openLog(t);
  const other = "aaaaaaaa-0000-4000-8000-000000000002";
  const op: Operation<object, string> = {
    name: "CreateKey",
    adminOnly: false,
    requestFacts: () => ({ project: "p1" }),
    async run(_caller, _req, committing) {
      committing({ keyId: KEY, project: "p1" });
      return { response: "made", facts: { keyId: other, project: "p1" } };
    },
  };
  t.deepEqual(await call(op, log), { response: "made" });
  t.deepEqual(await records(log), [
    ["CreateKey", "ok", "OK", KEY, ""],
    ["CreateKey", "ok", "OK", other, ""],
  ]);
});
