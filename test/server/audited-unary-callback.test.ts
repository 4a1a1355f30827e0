import test from "ava";
import { X509Certificate } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import type { AuditEventInput } from "../../src/audit/audit-log.js";
import { createClusterCa, issueClientCertificate } from "../../src/pki/certificate-authority.js";
import { ClientCertificateVerifier } from "../../src/pki/client-certificate-verifier.js";
import { auditedUnary, type Operation } from "../../src/server/audited-unary.js";
import { serverProtos } from "../../src/server/proto-definitions.js";

// grpc-js's unary callback is not ours; if it ever throws (a reply on a torn-down stream), the
// wrapper's promise chain must absorb it, since an unhandled rejection ends the peer process.
test("a throwing reply callback is logged, not left as an unhandled rejection (mock call and callback)", async (t) => {
  const ca = await createClusterCa({ clusterId: "c" });
  const client = await issueClientCertificate(ca, { identity: "svc", role: "service", projects: ["p"] });
  const raw = new X509Certificate(client.certificatePem).raw;
  const logs: string[] = [];
  const audited: AuditEventInput[] = [];
  const op: Operation<object, object> = {
    name: "GetKey",
    adminOnly: false,
    requestFacts: () => ({}),
    run: async () => ({ response: {} }),
  };
  const handler = auditedUnary(
    op,
    {
      verifier: new ClientCertificateVerifier(ca.certificatePem),
      audit: { append: async (e: AuditEventInput) => void audited.push(e), countRefusal: () => {} },
      clock: { now: () => new Date() },
      log: (l) => logs.push(l),
    },
    serverProtos().keyService.GetKey!,
  );
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  t.teardown(() => process.off("unhandledRejection", onUnhandled));

  let replies = 0;
  const call = { request: {}, getAuthContext: () => ({ sslPeerCertificate: { raw } }) };
  handler(call as unknown as grpc.ServerUnaryCall<object, object>, () => {
    replies += 1;
    throw new Error("stream already destroyed");
  });
  // Bounded wait for the reply and for any rejection to be reported.
  for (let i = 0; i < 100 && (replies === 0 || logs.length === 0); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setImmediate(r));
  t.is(replies, 1);
  t.deepEqual(unhandled, []);
  t.true(logs.some((l) => l.includes("GetKey") && l.includes("stream already destroyed")));
  t.is(audited.length, 1);
});
