/**
 * Re-quotes over real gRPC with mTLS: the attester serves
 * lockbox.v1.AttestationService with the certificate it got by joining and
 * its own swtpm; the monitor asks with its peer certificate. The server is a
 * plain grpc-js mTLS server, not yet the peer's edge (wiring the service and
 * the monitor into startPeer waits for the peer's TPM and the control state).
 */
import * as grpc from "@grpc/grpc-js";
import test, { type ExecutionContext } from "ava";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { AttestationMonitor } from "../../src/attestation/attestation-monitor.js";
import { GrpcRequoteChannel } from "../../src/attestation/grpc-requote-channel.js";
import { joinCluster } from "../../src/attestation/joiner.js";
import { requoteService } from "../../src/attestation/requote-service.js";
import {
  type CertifiedKey,
  issueClientCertificate,
  issuePeerCertificate,
} from "../../src/pki/certificate-authority.js";
import { PeerCertificateVerifier } from "../../src/pki/peer-certificate-verifier.js";
import { peerRefusalCodeOf } from "../../src/pki/peer-refusal.js";
import { type Cluster, type Machine, cluster, machine, tlsKey } from "./join-fixture.js";

const PEER = "peer-4";

interface Attester {
  address: string;
  stop(): Promise<void>;
}

/** `m` joins `c`, then serves AttestationService with its issued certificate on a free loopback port. */
async function attester(
  t: ExecutionContext,
  c: Cluster,
  m: Machine,
  notAnswering?: () => string | null,
): Promise<Attester> {
  const key = tlsKey();
  const joined = await joinCluster({
    tpm: m.tpm,
    peerId: PEER,
    channel: c.channel(),
    tlsPublicKeySpki: key.spki,
  });
  const server = new grpc.Server();
  const service = requoteService({
    useTpm: (fn) => fn(m.tpm),
    verifier: new PeerCertificateVerifier(c.caCertificatePem),
    async admitCaller({ peerId }) {
      const state = c.authority.record(peerId)?.state;
      if (state === "fenced") return { code: "fenced", reason: `peer ${peerId} is fenced` };
      return state === "active" ? null : `peer ${peerId} is ${state ?? "not a member"}`;
    },
    ...(notAnswering !== undefined ? { notAnswering } : {}),
  });
  server.addService(service.definition, service.implementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createSsl(
        Buffer.from(c.caCertificatePem),
        [{ cert_chain: Buffer.from(joined.certificatePem), private_key: Buffer.from(key.privateKeyPem) }],
        true,
      ),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    server.forceShutdown();
  };
  t.teardown(stop);
  return { address: `127.0.0.1:${port}`, stop };
}

function monitorOf(
  c: Cluster,
  self: CertifiedKey,
  address: string,
): { monitor: AttestationMonitor; channel: GrpcRequoteChannel } {
  const channel = new GrpcRequoteChannel({
    tls: { caCertificatePem: c.caCertificatePem, ...self },
    addressOf: (id) => (id === PEER ? address : undefined),
  });
  const monitor = new AttestationMonitor({
    selfId: "peer-1",
    authority: c.authority,
    channel,
    audit: c.audit,
    intervalMs: 3_000,
    timeoutMs: 2_000,
  });
  return { monitor, channel };
}

/** The cluster fixture's CA, to issue the monitoring member's certificate. */
const caOf = (c: Cluster): CertifiedKey => c.ca;

test("over gRPC with mTLS: a member re-quotes another and it attests; once its server is gone it is marked down, not fenced", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const a = await attester(t, c, m);
  c.authority.enroll({
    peerId: "peer-1",
    state: "active",
    ekPublicKeySpki: new Uint8Array(0),
    policyName: "none",
  });
  const self = await issuePeerCertificate(caOf(c), { peerId: "peer-1" });
  const { monitor, channel } = monitorOf(c, self, a.address);
  t.teardown(() => channel.close());
  t.deepEqual(await monitor.round(), [{ peerId: PEER, outcome: "attested" }]);

  await a.stop();
  const [down] = await monitor.round();
  t.like(down, { peerId: PEER, outcome: "down" });
  t.is(c.authority.record(PEER)?.state, "down");
});

test("over gRPC with mTLS: a member whose re-enrolment waits to commit answers no re-quote (UNAVAILABLE): marked down, not fenced for a quote its recorded AK cannot verify; once it answers, its quotes are judged again", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  let pending: string | null = "a re-enrolment onto a new TPM waits to commit";
  const a = await attester(t, c, m, () => pending);
  c.authority.enroll({
    peerId: "peer-1",
    state: "active",
    ekPublicKeySpki: new Uint8Array(0),
    policyName: "none",
  });
  const self = await issuePeerCertificate(caOf(c), { peerId: "peer-1" });
  const { monitor, channel } = monitorOf(c, self, a.address);
  t.teardown(() => channel.close());
  // Its quote would fail now; unanswered, it is only down.
  await m.tpm.pcrExtend(0, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0x18))]);
  const [down] = await monitor.round();
  t.like(down, { peerId: PEER, outcome: "down" });
  t.regex((down as { reason: string }).reason, /no answer to a re-quote/);
  t.is(c.authority.record(PEER)?.state, "down");
  pending = null;
  const [judged] = await monitor.round();
  t.like(judged, { peerId: PEER, outcome: "fenced", refusal: { check: "pcr-policy" } });
});

test("over gRPC with mTLS: a quote that fails fences the member", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const a = await attester(t, c, m);
  c.authority.enroll({
    peerId: "peer-1",
    state: "active",
    ekPublicKeySpki: new Uint8Array(0),
    policyName: "none",
  });
  const self = await issuePeerCertificate(caOf(c), { peerId: "peer-1" });
  const { monitor, channel } = monitorOf(c, self, a.address);
  t.teardown(() => channel.close());
  await m.tpm.pcrExtend(0, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0x17))]);
  const [v] = await monitor.round();
  t.like(v, { peerId: PEER, outcome: "fenced", refusal: { check: "pcr-policy" } });
  t.is(c.authority.record(PEER)?.state, "fenced");
});

test("over gRPC with mTLS: re-quotes are refused to a fenced member's certificate and to a client identity", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const c = await cluster(t);
  await c.enroll(m, PEER);
  const a = await attester(t, c, m);
  c.authority.enroll({
    peerId: "peer-2",
    state: "fenced",
    ekPublicKeySpki: new Uint8Array(0),
    policyName: "none",
  });
  const fenced = await issuePeerCertificate(caOf(c), { peerId: "peer-2" });
  const asFenced = monitorOf(c, fenced, a.address).channel;
  t.teardown(() => asFenced.close());
  const denied = await t.throwsAsync(
    asFenced.requote(
      PEER,
      { nonce: Buffer.alloc(32, 1), pcrs: [{ hashAlg: TPM_ALG_ID.SHA256, pcr: 0 }] },
      5_000,
    ),
  );
  t.is((denied as grpc.ServiceError).code, grpc.status.PERMISSION_DENIED);
  t.regex((denied as grpc.ServiceError).details, /peer peer-2 refused: peer peer-2 is fenced/);
  t.is(peerRefusalCodeOf(denied), "fenced", "the refusal names its code in the trailer, not only in words");

  const client = await issueClientCertificate(caOf(c), {
    identity: "vol-host",
    role: "service",
    projects: ["p"],
  });
  const asClient = monitorOf(c, client, a.address).channel;
  t.teardown(() => asClient.close());
  const unauth = await t.throwsAsync(
    asClient.requote(
      PEER,
      { nonce: Buffer.alloc(32, 1), pcrs: [{ hashAlg: TPM_ALG_ID.SHA256, pcr: 0 }] },
      5_000,
    ),
  );
  t.is((unauth as grpc.ServiceError).code, grpc.status.UNAUTHENTICATED);
});
