import * as grpc from "@grpc/grpc-js";
import test from "ava";
import type { AuditEventInput, AuditLog } from "../../src/audit/audit-log.js";
import { call, clientsFor, issue, startEdgeWith } from "./peer-fixture.js";

// The peer's real store, key service and audit log, behind an audit sink
// that refuses GetKey records: a mock of a failing disk for one operation.
test("GetKey fails UNAVAILABLE instead of returning a key it cannot audit (mock failing audit sink)", async (t) => {
  const logs: string[] = [];
  let auditLog!: AuditLog;
  const fixture = await startEdgeWith(t, (real) => {
    auditLog = real.auditLog;
    return {
      audit: {
        append: (e: AuditEventInput) =>
          e.operation === "GetKey" ? Promise.reject(new Error("disk full")) : real.auditLog.append(e),
        countRefusal: () => {},
      },
      log: (l: string) => logs.push(l),
    };
  });
  const svc = clientsFor(t, fixture, await issue(fixture, "vol-host", "service", ["p1"]));
  const created = await call(svc.keys, "CreateKey", {
    project: "p1",
    scope: "s",
    name: "n",
    algorithm: "KEY_ALGORITHM_AES",
    bit_length: 256,
  });
  if (!created.ok) return t.fail(created.error.message);
  const got = await call(svc.keys, "GetKey", { id: created.value.key.id });
  t.false(got.ok, "the key must not be handed out unaudited");
  if (!got.ok) t.is(got.error.code, grpc.status.UNAVAILABLE);
  t.true(logs.some((l) => l.includes("AUDIT FAILURE") && l.includes("GetKey")));
  // Writes keep their result: the create above succeeded and is on record.
  const listed = await auditLog.list({});
  t.deepEqual(
    listed.events.map((e) => [e.operation, e.outcome]),
    [["CreateKey", "ok"]],
  );
});
