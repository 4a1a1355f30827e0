/**
 * Idempotency is declared once, in the protos (`option idempotency_level`),
 * and both edges read it from their loaded definitions: the server treats
 * NO_SIDE_EFFECTS methods as reads (refused when they cannot be audited),
 * the client retries DEADLINE_EXCEEDED only for declared methods. This pins
 * the declarations both read.
 */
import test from "ava";
import { lockboxProtos } from "../../src/client/proto-definitions.js";
import { type Idempotency, idempotencyOf, serverProtos } from "../../src/server/proto-definitions.js";

const DECLARED: Record<string, Idempotency> = {
  CreateKey: "IDEMPOTENCY_UNKNOWN",
  ImportKey: "IDEMPOTENCY_UNKNOWN",
  GetKey: "NO_SIDE_EFFECTS",
  GetKeyMetadata: "NO_SIDE_EFFECTS",
  ListKeys: "NO_SIDE_EFFECTS",
  DeleteKey: "IDEMPOTENCY_UNKNOWN",
  CloneKey: "IDEMPOTENCY_UNKNOWN",
  RekeyClone: "IDEMPOTENCY_UNKNOWN",
  CreateGrant: "IDEMPOTENCY_UNKNOWN",
  RevokeGrant: "IDEMPOTENT",
  AddConsumer: "IDEMPOTENT",
  RemoveConsumer: "IDEMPOTENT",
  ListConsumers: "NO_SIDE_EFFECTS",
  // A stream of the calls above: each call in it follows its own method's declaration.
  Batch: "IDEMPOTENCY_UNKNOWN",
  GetStatus: "NO_SIDE_EFFECTS",
  GetRing: "NO_SIDE_EFFECTS",
  ListAuditEvents: "NO_SIDE_EFFECTS",
  // The control state's calls (issue 9): lists are reads; changes are not retried blindly.
  EnrollPeer: "IDEMPOTENCY_UNKNOWN",
  ListPeers: "NO_SIDE_EFFECTS",
  RemovePeer: "IDEMPOTENCY_UNKNOWN",
  DrainPeer: "IDEMPOTENCY_UNKNOWN",
  AddPeerUnattested: "IDEMPOTENCY_UNKNOWN",
  PutPolicy: "IDEMPOTENCY_UNKNOWN",
  ListPolicies: "NO_SIDE_EFFECTS",
  RemovePolicy: "IDEMPOTENCY_UNKNOWN",
  IssueIdentity: "IDEMPOTENCY_UNKNOWN",
  ListIdentities: "NO_SIDE_EFFECTS",
  RevokeIdentity: "IDEMPOTENCY_UNKNOWN",
  // A retried rotate would resume the rotation it started, without the recovery shares it returned.
  RotateMasterKey: "IDEMPOTENCY_UNKNOWN",
  GetMasterKeyStatus: "NO_SIDE_EFFECTS",
};

test("the server edge and the client read the same idempotency from the protos", (t) => {
  const server = serverProtos();
  const client = lockboxProtos();
  const clientMethods = {
    ...client.keys.lockbox.v1.KeyService.service,
    ...client.admin.lockbox.v1.AdminService.service,
  } as Record<string, { options?: { idempotency_level?: unknown } }>;
  const serverMethods = { ...server.keyService, ...server.adminService };
  t.deepEqual(Object.keys(serverMethods).sort(), Object.keys(DECLARED).sort());
  for (const [name, level] of Object.entries(DECLARED)) {
    t.is(idempotencyOf(serverMethods[name]!), level, `server: ${name}`);
    t.is(clientMethods[name]?.options?.idempotency_level, level, `client: ${name}`);
  }
});
