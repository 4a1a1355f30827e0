/**
 * The attested join over real gRPC: a real peer (startPeer: LevelDB, raft,
 * the bounded TLS edge) serving lockbox.v1.JoinService, and a joiner with its
 * own swtpm that knows the cluster only by its CA fingerprint or join token.
 * The member's authority is an InMemoryJoinAuthority (the control state's is
 * not built yet); everything else is the real thing.
 */
import * as grpc from "@grpc/grpc-js";
import test, { type ExecutionContext } from "ava";
import { X509Certificate, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { localCaCertPaths } from "../../tpm/swtpm/index.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { InMemoryJoinAuthority } from "../../src/attestation/in-memory-join-authority.js";
import { ClusterAuthenticationError, connectToCluster } from "../../src/attestation/join-client.js";
import { caFingerprint, createJoinToken, joinTokenHash } from "../../src/attestation/join-token.js";
import { JoinRefusedError, joinCluster } from "../../src/attestation/joiner.js";
import { loadJoinService } from "../../src/attestation/join-proto.js";
import { initCluster } from "../../src/cli/commands/init.js";
import { createClusterCa } from "../../src/pki/certificate-authority.js";
import { PeerCertificateVerifier } from "../../src/pki/peer-certificate-verifier.js";
import { type RunningPeer, startPeer } from "../../src/peer/start-peer.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { AuditLog } from "../../src/audit/audit-log.js";
import { type Machine, POLICY_NAME, machine, tlsKey } from "./join-fixture.js";
import { sharedLocalCaDir } from "../tpm/swtpm-fixture.js";

const JOINER = "peer-4";

interface Member {
  peer: RunningPeer;
  dir: string;
  caPem: string;
  authority: InMemoryJoinAuthority;
}

/** A real peer-1 serving JoinService, with `m` enrolled as JOINER under a policy approving its PCRs now. */
async function member(
  t: ExecutionContext,
  m: Machine,
  extra: { joinTokenHash?: Uint8Array } = {},
): Promise<Member> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-join-grpc-"));
  await initCluster({ dir, peerId: "peer-1", listen: "127.0.0.1:0" });
  const caPem = await readFile(join(dir, "ca.crt"), "utf8");
  const authority = new InMemoryJoinAuthority({
    certificatePem: caPem,
    privateKeyPem: await readFile(join(dir, "ca.key"), "utf8"),
  });
  authority.setPolicy(
    POLICY_NAME,
    quotePolicyForValues(await m.pcrValues(), {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    }),
  );
  authority.enroll({
    peerId: JOINER,
    state: "enrolled",
    ekPublicKeySpki: m.ekSpki,
    policyName: POLICY_NAME,
    ...extra,
  });
  const caPaths = localCaCertPaths(sharedLocalCaDir());
  const manufacturerCas = [
    new X509Certificate(await readFile(caPaths.root)),
    new X509Certificate(await readFile(caPaths.intermediate)),
  ];
  const peer = await startPeer({
    dir,
    listen: "127.0.0.1:0",
    log: () => {},
    join: { authority, manufacturerCas },
  });
  t.teardown(async () => {
    await peer.close(500);
    await rm(dir, { recursive: true, force: true });
  });
  return { peer, dir, caPem, authority };
}

/** The peer's audit records of joins, read from its store after it closed. */
async function joinAudit(mem: Member): Promise<string[]> {
  await mem.peer.close(500);
  const store = await openPeerStore(join(mem.dir, "data"));
  try {
    const log = await AuditLog.open(store, undefined, { log: () => {} });
    return (await log.list({ pageSize: 1000 })).events
      .filter((e) => e.operation === "Join")
      .map((e) => `${e.outcome} ${e.detail}`);
  } finally {
    await store.close();
  }
}

test("over gRPC: a joiner that knows only the CA fingerprint joins; its certificate is a peer certificate of this cluster for its own key, and the CMK is the cluster's", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const mem = await member(t, m);
  const conn = await connectToCluster({ address: mem.peer.address, caFingerprint: caFingerprint(mem.caPem) });
  t.teardown(() => conn.close());
  const key = tlsKey();
  const joined = await joinCluster({ tpm: m.tpm, peerId: JOINER, channel: conn, tlsPublicKeySpki: key.spki });
  t.deepEqual(Buffer.from(joined.cmk.key), Buffer.from(mem.authority.cmkForTest().key));
  t.is(joined.caCertificatePem, mem.caPem);
  const identity = new PeerCertificateVerifier(mem.caPem).verify(
    new X509Certificate(joined.certificatePem).raw,
  );
  t.is(identity.peerId, JOINER);
  t.is(mem.authority.record(JOINER)?.state, "active");
  const audit = await joinAudit(mem);
  t.true(
    audit.some((line) => line.startsWith(`ok peer ${JOINER} attested and admitted`)),
    audit.join(" | "),
  );
});

test("over gRPC: a refusal reaches the joining operator with its check and code (a PCR extended before the join), is audited on the member, and no CMK is sent", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const mem = await member(t, m);
  await m.tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0xcd))]);
  const conn = await connectToCluster({ address: mem.peer.address, caFingerprint: caFingerprint(mem.caPem) });
  t.teardown(() => conn.close());
  const err = await t.throwsAsync(
    joinCluster({ tpm: m.tpm, peerId: JOINER, channel: conn, tlsPublicKeySpki: tlsKey().spki }),
    {
      instanceOf: JoinRefusedError,
    },
  );
  const refusal = (err as JoinRefusedError).refusal;
  t.like(refusal, { check: "pcr-policy", code: "policy-pcr-value-not-approved", recoverable: false });
  t.like(refusal.details, { bank: "sha256", pcr: 7 });
  t.true((err as JoinRefusedError).message.includes("pcr-policy/policy-pcr-value-not-approved"));
  t.is(mem.authority.admissions.length, 0);
  const audit = await joinAudit(mem);
  t.true(
    audit.some((line) =>
      line.startsWith(`denied peer ${JOINER} (claimed) refused: pcr-policy/policy-pcr-value-not-approved`),
    ),
    audit.join(" | "),
  );
});

test("over gRPC: a joiner given another cluster's CA fingerprint refuses to join before sending anything of its TPM", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const mem = await member(t, m);
  const other = await createClusterCa({ clusterId: "other" });
  const err = await t.throwsAsync(
    connectToCluster({ address: mem.peer.address, caFingerprint: caFingerprint(other.certificatePem) }),
    {
      instanceOf: ClusterAuthenticationError,
    },
  );
  t.is((err as ClusterAuthenticationError).code, "ca-fingerprint-mismatch");
  t.is(mem.authority.admissions.length, 0);
});

test("over gRPC: with a join token, the token's fingerprint authenticates the cluster and its secret admits the joiner once", async (t) => {
  const m = await machine(t, { identity: "shared" });
  // The token names the CA, so the member is made first and the token enrolled after.
  const mem = await member(t, m);
  const { token } = createJoinToken(mem.caPem);
  mem.authority.enroll({ ...(await mem.authority.member(JOINER))!, joinTokenHash: joinTokenHash(token) });
  const conn = await connectToCluster({ address: mem.peer.address, caFingerprint: token.caFingerprint! });
  t.teardown(() => conn.close());
  const joined = await joinCluster({
    tpm: m.tpm,
    peerId: JOINER,
    channel: conn,
    joinToken: token,
    tlsPublicKeySpki: tlsKey().spki,
  });
  t.is(joined.cmk.epoch, 1);
  t.is(mem.authority.record(JOINER)?.joinTokenHash, undefined);
});

test("over gRPC: hostile join requests from a caller without a certificate are answered with named refusals and change nothing; an honest join still works after them", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const mem = await member(t, m);
  const JoinService = loadJoinService();
  const raw = new JoinService(
    mem.peer.address,
    grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false }),
    { "grpc.ssl_target_name_override": "localhost", "grpc.default_authority": "localhost" },
  );
  t.teardown(() => raw.close());
  const ask = (method: string, request: object) =>
    new Promise<Record<string, unknown>>((resolve, reject) =>
      (
        raw as unknown as Record<
          string,
          (r: object, cb: (e: Error | null, v: Record<string, unknown>) => void) => void
        >
      )[method]!.call(raw, request, (e, v) => (e ? reject(e) : resolve(v))),
    );
  const codeOf = (res: Record<string, unknown>) => (res.refusal as { code: string } | null)?.code;
  t.is(codeOf(await ask("AttestJoin", { session_id: randomBytes(16) })), "session-unknown");
  t.is(codeOf(await ask("ActivateJoin", { session_id: randomBytes(3) })), "message-malformed");
  t.is(codeOf(await ask("BeginJoin", { peer_id: "x".repeat(65) })), "message-malformed");
  t.is(codeOf(await ask("BeginJoin", { peer_id: "peer-99" })), "member-unknown");
  t.is(codeOf(await ask("BeginJoin", { peer_id: JOINER, ek_public: randomBytes(300) })), "ek-malformed");
  const tooBig = await t.throwsAsync(
    ask("BeginJoin", { peer_id: JOINER, ek_certificate: randomBytes(8192) }),
  );
  t.is(
    (tooBig as grpc.ServiceError).code,
    grpc.status.RESOURCE_EXHAUSTED,
    "a message above the receive limit is never read",
  );
  t.is(mem.authority.admissions.length, 0);

  const conn = await connectToCluster({ address: mem.peer.address, caFingerprint: caFingerprint(mem.caPem) });
  t.teardown(() => conn.close());
  const joined = await joinCluster({
    tpm: m.tpm,
    peerId: JOINER,
    channel: conn,
    tlsPublicKeySpki: tlsKey().spki,
  });
  t.is(joined.cmk.epoch, 1);
});
