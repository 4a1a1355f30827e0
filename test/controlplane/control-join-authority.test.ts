/**
 * The attested join over the replicated control state: a member serves JoinService with
 * ControlJoinAuthority; the operator enrolls the joiner (AdminService.EnrollPeer with its EK public key
 * and a PCR policy) and `lockbox join` with the printed join token attests it, with its own swtpm. The
 * admission commits through raft: the member is active with the issued certificate's serial, its join
 * token spent, and the leader's autopilot adds it to raft as a learner. Attesting again (an active
 * member may) gets a new certificate.
 */
import test from "ava";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { localCaCertPaths } from "../../tpm/swtpm/index.js";
import { quotePolicyForValues } from "../../tpm/verify/quote-policy.js";
import { initCluster } from "../../src/cli/commands/init.js";
import { LockboxClient } from "../../src/client/index.js";
import { startPeer } from "../../src/peer/start-peer.js";
import { PEER_ADDRESSES_MAX, newPeerConfig, validatePeerConfig } from "../../src/config/peer-config.js";
import { seedPeersFor } from "../../src/controlplane/control-join-authority.js";
import { encodeCommand } from "../../src/controlplane/control-command.js";
import { ControlState } from "../../src/controlplane/control-state.js";
import { runCli } from "../helpers/cli-process.js";
import { sharedLocalCaDir } from "../tpm/swtpm-fixture.js";
import { POLICY_NAME, machine } from "../attestation/join-fixture.js";

test("lockbox join with the token peer enroll printed is admitted through the control state; attesting again replaces its certificate", async (t) => {
  const m = await machine(t, { identity: "shared" });
  const dir = await mkdtemp(join(tmpdir(), "lockbox-control-join-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await initCluster({ dir, peerId: "peer-1", listen: "127.0.0.1:0" });
  const caPaths = localCaCertPaths(sharedLocalCaDir());
  const peer = await startPeer({
    dir,
    listen: "127.0.0.1:0",
    log: () => {},
    joinWithControlState: {
      manufacturerCas: [
        new X509Certificate(await readFile(caPaths.root)),
        new X509Certificate(await readFile(caPaths.intermediate)),
      ],
    },
  });
  t.teardown(() => peer.close(500));
  const admin = new LockboxClient({
    endpoints: [peer.address],
    tls: { ca: join(dir, "ca.crt"), cert: join(dir, "admin.crt"), key: join(dir, "admin.key") },
  });
  t.teardown(() => admin.close());
  const policy = quotePolicyForValues(await m.pcrValues(), {
    hashAlg: "sha256",
    signatureScheme: "ecdsa",
    firmwareVersionMin: "00000000.00000000",
  });
  await admin.adminCall("PutPolicy", { name: POLICY_NAME, policy_json: JSON.stringify(policy) });
  const enrolled = await admin.adminCall<{ join_token: string; ca_fingerprint_sha256: string }>(
    "EnrollPeer",
    {
      peer_id: "peer-4",
      address: "127.0.0.1:7994",
      zone: "zone-2",
      weight: 1,
      ek_certificate: Buffer.alloc(0),
      ek_public_key: Buffer.from(m.ekSpki),
      policy: POLICY_NAME,
      token_ttl_seconds: 600,
    },
  );
  await m.tpm.close(); // swtpm serves one connection at a time: the CLI process needs it
  const joinOnce = async (): Promise<{ code: number | null; text: string; stderr: string }> => {
    const joinerDir = await mkdtemp(join(tmpdir(), "lockbox-control-joiner-"));
    t.teardown(() => rm(joinerDir, { recursive: true, force: true }));
    return runCli(
      [
        "join",
        "--member",
        peer.address,
        "--token",
        enrolled.join_token,
        "--ca-fingerprint",
        enrolled.ca_fingerprint_sha256,
        "--peer-id",
        "peer-4",
        "--dir",
        join(joinerDir, "peer-4"),
        "--tpm",
        `swtpm:${m.fixture.swtpm.host}:${m.fixture.swtpm.port}`,
      ],
      { timeoutMs: 60_000 },
    );
  };
  const r = await joinOnce();
  t.is(r.code, 0, r.stderr);
  type Listed = { peers: { peer_id: string; state: string; suffrage: string; certificate_serial: string }[] };
  const listed = await admin.adminCall<Listed>("ListPeers", {});
  const p4 = listed.peers.find((p) => p.peer_id === "peer-4");
  t.like(p4, { state: "active" });
  t.regex(p4?.certificate_serial ?? "", /^[0-9A-F]+$/);
  // Attesting again (as a restarted or fenced member does) is admitted with a new certificate; the
  // superseded one is revoked by the same entry (control-state.test.ts pins that).
  const again = await joinOnce();
  t.is(again.code, 0, again.stderr);
  const after = (await admin.adminCall<Listed>("ListPeers", {})).peers.find((p) => p.peer_id === "peer-4");
  t.like(after, { state: "active" });
  t.not(after?.certificate_serial, p4?.certificate_serial);
});

test("a joiner's seedPeers name at most PEER_ADDRESSES_MAX serving members, raft voters first, so its config.json validates", (t) => {
  const s = new ControlState();
  const count = PEER_ADDRESSES_MAX + 6;
  for (let i = 1; i <= count; i++) {
    const r = s.apply(
      encodeCommand({
        type: "member.add-unattested",
        id: `peer-${i}`,
        address: `127.0.0.1:${10_000 + i}`,
        zone: "zone-1",
        weight: 1,
        certificateSerial: (0x100 + i).toString(16).toUpperCase(),
        atMs: i,
      }),
      i,
    );
    if (!r.ok) throw new Error(r.reason);
  }
  // The voters are the last members added: a plain prefix would leave them out.
  const voters = [`peer-${count}`, `peer-${count - 1}`, `peer-${count - 2}`];
  const seeds = seedPeersFor(s.members(), "peer-1", voters);
  t.is(Object.keys(seeds).length, PEER_ADDRESSES_MAX);
  for (const v of voters) t.is(seeds[v], `127.0.0.1:${10_000 + Number(v.slice(5))}`, `voter ${v} is a seed`);
  t.false("peer-1" in seeds, "the joiner is not its own seed");
  const base = newPeerConfig({ peerId: "peer-1", listen: "127.0.0.1:0" });
  t.notThrows(() => validatePeerConfig({ ...base, seedPeers: seeds }, "joiner config"));
  const few = new Set(["peer-1", "peer-2", "peer-3", "peer-4"]);
  const small = seedPeersFor(
    s.members().filter((m) => few.has(m.id)),
    "peer-1",
    [],
  );
  t.deepEqual(
    Object.keys(small).sort(),
    ["peer-2", "peer-3", "peer-4"],
    "a small cluster: every serving member",
  );
});
