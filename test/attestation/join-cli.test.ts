/**
 * `lockbox join` as an operator runs it: a separate process with its own
 * swtpm, against a real member (startPeer serving JoinService over an
 * InMemoryJoinAuthority, since the control state is not built yet). It
 * writes the peer certificate, its key and the CMK sealed to its TPM, which
 * that TPM unseals to the cluster's CMK; a refusal prints the member's check
 * and code and writes nothing.
 */
import test, { type ExecutionContext } from "ava";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tpm } from "../../tpm/client/tpm.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { localCaCertPaths } from "../../tpm/swtpm/index.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { InMemoryJoinAuthority } from "../../src/attestation/in-memory-join-authority.js";
import { caFingerprint } from "../../src/attestation/join-token.js";
import { initCluster } from "../../src/cli/commands/init.js";
import { loadPeerConfig } from "../../src/config/peer-config.js";
import { peerIdOf } from "../../src/pki/peer-certificate-verifier.js";
import { type RunningPeer, startPeer } from "../../src/peer/start-peer.js";
import { readSealedMasterKeyFile, unsealMasterKey } from "../../src/sealing/sealed-master-key.js";
import { runCli } from "../helpers/cli-process.js";
import { sharedLocalCaDir } from "../tpm/swtpm-fixture.js";
import { type Machine, POLICY_NAME, machine } from "./join-fixture.js";

const JOINER = "peer-4";

async function memberFor(
  t: ExecutionContext,
  m: Machine,
): Promise<{ peer: RunningPeer; caPem: string; authority: InMemoryJoinAuthority; clusterId: string }> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-join-cli-member-"));
  await initCluster({ dir, peerId: "peer-1", listen: "127.0.0.1:0" });
  const { clusterId } = await loadPeerConfig(dir);
  const caPem = await readFile(join(dir, "ca.crt"), "utf8");
  const authority = new InMemoryJoinAuthority(
    { certificatePem: caPem, privateKeyPem: await readFile(join(dir, "ca.key"), "utf8") },
    undefined,
    clusterId,
  );
  authority.setPolicy(
    POLICY_NAME,
    quotePolicyForValues(await m.pcrValues(), {
      hashAlg: "sha256",
      signatureScheme: "ecdsa",
      firmwareVersionMin: "00000000.00000000",
    }),
  );
  authority.enroll({ peerId: JOINER, state: "enrolled", ekPublicKeySpki: m.ekSpki, policyName: POLICY_NAME });
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
  return { peer, caPem, authority, clusterId };
}

async function joinerDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-join-cli-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return join(dir, "peer-4");
}

test("lockbox join: attests, writes the peer certificate and key (0600) and the CMK sealed to its own TPM, which unseals to the cluster's CMK", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const mem = await memberFor(t, m);
  await m.tpm.close(); // swtpm serves one connection at a time: the CLI process needs it
  const dir = await joinerDir(t);
  const r = await runCli(
    [
      "join",
      "--member",
      mem.peer.address,
      "--ca-fingerprint",
      caFingerprint(mem.caPem),
      "--peer-id",
      JOINER,
      "--dir",
      dir,
      "--tpm",
      `swtpm:${m.fixture.swtpm.host}:${m.fixture.swtpm.port}`,
    ],
    { timeoutMs: 60_000 },
  );
  t.is(r.code, 0, r.stderr);
  t.true(r.text.includes(`joined cluster ${mem.clusterId} as peer-4`), r.text);
  t.regex(r.text, /sealed to this TPM \(sha256:0,sha256:1,sha256:2,sha256:3,sha256:7\)/);
  t.is(peerIdOf(new X509Certificate(await readFile(join(dir, "peer.crt")))), JOINER);
  t.is((await stat(join(dir, "peer.key"))).mode & 0o777, 0o600);
  t.false(r.text.includes(Buffer.from(mem.authority.cmkForTest().key).toString("hex")));
  const tpm = new Tpm(await m.fixture.connect());
  const unsealed = await unsealMasterKey(tpm, await readSealedMasterKeyFile(join(dir, "master-key.sealed")), {
    clusterId: mem.clusterId,
    source: "master-key.sealed",
  });
  t.deepEqual(Buffer.from(unsealed.key), Buffer.from(mem.authority.cmkForTest().key));
  t.is(unsealed.epoch, 1);
});

test("lockbox join: a refusal shows the operator the member's check and code, exits 1 and writes nothing", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const mem = await memberFor(t, m);
  await m.tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, Buffer.alloc(32, 0xee))]);
  await m.tpm.close();
  const dir = await joinerDir(t);
  const r = await runCli(
    [
      "join",
      "--member",
      mem.peer.address,
      "--ca-fingerprint",
      caFingerprint(mem.caPem),
      "--peer-id",
      JOINER,
      "--dir",
      dir,
      "--tpm",
      `swtpm:${m.fixture.swtpm.host}:${m.fixture.swtpm.port}`,
      "--json",
    ],
    { timeoutMs: 60_000 },
  );
  t.is(r.code, 1);
  t.regex(
    r.stderr,
    /the cluster refused this machine: pcr-policy\/policy-pcr-value-not-approved: bank=sha256, pcr=7/,
  );
  t.like(JSON.parse(r.text), {
    joined: false,
    refusal: { check: "pcr-policy", code: "policy-pcr-value-not-approved" },
  });
  t.deepEqual(await readdir(dir), []);
});

test("lockbox join: without a CA fingerprint or token it refuses to run (usage, exit 2)", async (t) => {
  const r = await runCli([
    "join",
    "--member",
    "127.0.0.1:1",
    "--peer-id",
    JOINER,
    "--dir",
    "/nonexistent/x",
    "--tpm",
    "swtpm:127.0.0.1:1",
  ]);
  t.is(r.code, 2);
  t.regex(r.stderr, /--ca-fingerprint or --token is required/);
});
