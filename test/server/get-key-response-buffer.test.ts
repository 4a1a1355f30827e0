import test from "ava";
import { serverProtos } from "../../src/server/proto-definitions.js";
import { X509Certificate } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import type { KeyMeta } from "../../src/keys/key-model.js";
import { createClusterCa, issueClientCertificate } from "../../src/pki/certificate-authority.js";
import { ClientCertificateVerifier } from "../../src/pki/client-certificate-verifier.js";
import { keyServiceHandlers, type KeyServiceApi } from "../../src/server/key-service-handlers.js";
import { BatchStreams } from "../../src/server/key-call-batch.js";
import { InFlightLimit } from "../../src/edge/in-flight.js";

// Buffer.from(bytes) copies small inputs into Node's shared 8 KiB allocation pool, whose memory
// Buffer.allocUnsafe later hands, unzeroed, to unrelated code. Key material must not go there.
test("GetKey's response holds the material in its own memory, not Node's shared Buffer pool (mock call)", async (t) => {
  const ca = await createClusterCa({ clusterId: "c" });
  const client = await issueClientCertificate(ca, { identity: "svc", role: "service", projects: ["p"] });
  const raw = new X509Certificate(client.certificatePem).raw;
  const meta: KeyMeta = {
    id: "6b1f0c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f",
    project: "p",
    scope: "s",
    name: "n",
    secretType: "symmetric",
    algorithm: "AES",
    bitLength: 256,
    createdAt: new Date(0),
    updatedAt: new Date(0),
    state: "active",
    parentId: "",
  };
  const material = new Uint8Array(32).fill(0x3c);
  const keys = { getKey: async () => ({ key: meta, material: new Uint8Array(material) }) };
  const handlers = keyServiceHandlers(
    keys as unknown as KeyServiceApi,
    {
      verifier: new ClientCertificateVerifier(ca.certificatePem),
      audit: { append: async () => undefined, countRefusal: () => {} },
      clock: { now: () => new Date() },
      log: () => {},
    },
    serverProtos().keyService,
    { inFlight: new InFlightLimit(64), streams: new BatchStreams() },
  );
  const call = { request: { id: meta.id }, getAuthContext: () => ({ sslPeerCertificate: { raw } }) };
  const response = await new Promise<{ material: Uint8Array }>((resolve, reject) =>
    (handlers.GetKey as grpc.handleUnaryCall<unknown, { material: Uint8Array }>)(
      call as unknown as grpc.ServerUnaryCall<unknown, { material: Uint8Array }>,
      (err, value) => (err ? reject(err) : resolve(value!)),
    ),
  );
  t.deepEqual(new Uint8Array(response.material), material);
  t.is(response.material.buffer.byteLength, 32, "the material's buffer is its own, not a pool slab");
});
