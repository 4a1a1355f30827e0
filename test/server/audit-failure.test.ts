import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AuditLog, type AuditEventInput } from "../../src/audit/audit-log.js";
import { Barrier } from "../../src/crypto/barrier.js";
import { DevelopmentFileProtector } from "../../src/crypto/development-file-protector.js";
import { KeyService } from "../../src/keys/key-service.js";
import { startLockboxServer } from "../../src/server/lockbox-server.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { call, clientsFor, issue, startTestPeer } from "./peer-fixture.js";

// The peer's real store, key service and audit log, behind an audit sink
// that refuses GetKey records: a mock of a failing disk for one operation.
test("GetKey fails UNAVAILABLE instead of returning a key it cannot audit (mock failing audit sink)", async (t) => {
  const base = await startTestPeer(t);
  await base.peer.close(500); // only its directory is used: init's files and store
  const store = await openPeerStore(join(base.dir, "data"));
  const barrier = new Barrier();
  await barrier.unsealWith(new DevelopmentFileProtector(join(base.dir, "master-key.dev"), { log: () => {} }));
  const keys = await KeyService.open({ store, barrier, clusterSalt: new Uint8Array(32), partitionPower: 10 });
  const auditLog = await AuditLog.open(store);
  const logs: string[] = [];
  const server = await startLockboxServer(
    {
      tls: {
        caCertificatePem: readFileSync(join(base.dir, "ca.crt"), "utf8"),
        certificatePem: readFileSync(join(base.dir, "peer.crt"), "utf8"),
        privateKeyPem: readFileSync(join(base.dir, "peer.key"), "utf8"),
      },
      keys,
      admin: { status: () => Promise.reject(new Error("unused")), listAuditEvents: (r) => auditLog.list(r) },
      audit: {
        append: (e: AuditEventInput) =>
          e.operation === "GetKey" ? Promise.reject(new Error("disk full")) : auditLog.append(e),
      },
      log: (l) => logs.push(l),
    },
    "127.0.0.1:0",
  );
  t.teardown(async () => {
    await server.close(500);
    await keys.close();
    await store.close();
  });
  const fixture = { ...base, peer: { ...base.peer, address: server.address, port: server.port } };
  const svc = clientsFor(t, fixture, await issue(base, "vol-host", "service", ["p1"]));
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
