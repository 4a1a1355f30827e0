/**
 * Recovery of a whole cluster onto new TPMs (issue 9 acceptance "Recovery"), with real processes: three
 * peers from `lockbox dev-cluster start`, each with its own swtpm; the master key rotated with recovery
 * shares of the new epoch; then every peer and every swtpm killed with SIGKILL and every swtpm state
 * destroyed. On a new set of swtpms, k shares restore every peer (`lockbox recover` re-seals the CMK to
 * each new TPM) and the cluster serves again: every key reads back exactly, a new project gets a KEK.
 * k-1 shares are refused with a clear error and nothing is written; shares of the retired epoch (init's)
 * are refused naming the epoch the store is under.
 *
 * The control state still named each member's old EK and AK: `recover` proves each new TPM (EK
 * certificate chained to the manufacturer CA, or its public key alone; credential activation; a quote
 * meeting the member's policy) and the peer commits that re-enrolment when it starts, audited. With a
 * 1 s attestation interval the recovered peers are then re-quoted against their new AKs and stay
 * unfenced (and up) across several intervals, and every peer serves keys. A rotation afterwards
 * delivers the next epoch to them by attestation against their new AKs.
 *
 * A single peer recovered from init's shares is tpm-sealed-master-key.test.ts; this is the cluster.
 */
import test from "ava";
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { LockboxClient } from "../../src/client/index.js";
import { isRecorded, readRecords } from "../../src/cli/dev-processes.js";
import { localCaCertPaths } from "../../tpm/swtpm/index.js";
import { CLI_MAIN, runCli, runCliJson, withoutLockboxVars } from "../helpers/cli-process.js";
import { spawnOwned } from "../helpers/spawn-owned.js";
import { startRestartableSwtpm } from "../tpm/restartable-swtpm.js";

const START_TIMEOUT_MS = 170_000;
const PEERS = ["peer-1", "peer-2", "peer-3"] as const;
/** The restarted peers' attestation interval ($LOCKBOX_ATTESTATION_INTERVAL_MS): several pass within the test. */
const INTERVAL_MS = 1_000;

interface PeerRow {
  peer_id: string;
  state: string;
  policy: string;
}

interface Started {
  endpoints: string;
  admin: { ca: string; cert: string; key: string };
}

const fileHash = async (path: string): Promise<string> =>
  createHash("sha256")
    .update(await fs.readFile(path))
    .digest("hex");

test("every swtpm state destroyed: k recovery shares of the rotated epoch restore the 3-peer cluster on new swtpms, re-enrolled so no peer is fenced across several attestation intervals (keys exact, new KEKs work, the next rotation reaches every peer); k-1 shares and the retired epoch's shares are refused and change nothing", async (t) => {
  t.timeout(START_TIMEOUT_MS + 180_000);
  const root = await fs.mkdtemp(join(tmpdir(), "lockbox-recover-"));
  const dir = join(root, "cluster");
  const restarted: ChildProcess[] = [];
  t.teardown(async () => {
    for (const c of restarted) c.kill("SIGKILL");
    for (const r of await readRecords(join(dir, "run"))) if (isRecorded(r)) process.kill(r.pid, "SIGKILL");
    await fs.rm(root, { recursive: true, force: true });
  });

  const started = await runCliJson<Started>(["dev-cluster", "start", "--dir", dir, "--json"], {
    timeoutMs: START_TIMEOUT_MS,
  });
  const endpoints = started.endpoints.split(",");
  const admin = ["--ca", started.admin.ca, "--cert", started.admin.cert, "--key", started.admin.key];
  const clients = endpoints.map(
    (e) =>
      new LockboxClient({
        endpoints: [e],
        tls: { ca: started.admin.ca, cert: started.admin.cert, key: started.admin.key },
        cache: false,
        deadlineMs: 10_000,
      }),
  );
  t.teardown(() => clients.forEach((c) => c.close()));
  // Until the data plane replicates keys, a key lives on the peer that created it.
  const written: { peer: number; id: string; hex: string }[] = [];
  const create = async (peer: number, project: string): Promise<void> => {
    const k = await clients[peer]!.createKey({
      project,
      scope: "vol",
      name: `k${written.length}`,
      bitLength: 256,
    });
    written.push({ peer, id: k.id, hex: (await clients[peer]!.getKey(k.id)).material.toString("hex") });
  };
  for (let i = 0; i < 6; i++) await create(i % 3, `rec-${i}`);

  // Rotated with 3 shares of the new epoch, any 2 of which rebuild it.
  const sharesDir = join(root, "custodians");
  await fs.mkdir(sharesDir, { mode: 0o700 });
  const rotated = await runCli(
    [
      "master-key",
      "rotate",
      "--endpoint",
      endpoints[0]!,
      ...admin,
      "--recovery-shares",
      "3",
      "--threshold",
      "2",
      "--shares-dir",
      sharesDir,
      "--json",
    ],
    { timeoutMs: 170_000 },
  );
  t.is(rotated.code, 0, rotated.stderr);
  const rotation = JSON.parse(rotated.text.trim()) as {
    epoch: number;
    complete: boolean;
    recoveryShareFiles: string[];
  };
  t.like(rotation, { epoch: 2, complete: true });
  t.is(rotation.recoveryShareFiles.length, 3);
  for (const f of rotation.recoveryShareFiles) t.is((await fs.stat(f)).mode & 0o777, 0o600);
  const shares = rotation.recoveryShareFiles;
  for (let i = 0; i < 3; i++) await create(i, `rec-after-${i}`);
  // Wait until every peer forgot epoch 1 (its canary is then under epoch 2).
  for (let i = 0; i < 60; i++) {
    const held = await Promise.all(
      endpoints.map((e) =>
        runCliJson<{ peer_held_epochs: number[] }>([
          "master-key",
          "status",
          "--endpoint",
          e,
          ...admin,
          "--json",
        ]),
      ),
    );
    if (held.every((h) => h.peer_held_epochs.join() === "2")) break;
    await sleep(250);
  }

  // The members that joined by attestation (a policy): the ones re-quoted, so the ones to re-enrol.
  const attested = (await clients[0]!.adminCall<{ peers: PeerRow[] }>("ListPeers", {})).peers
    .filter((p) => p.policy !== "")
    .map((p) => p.peer_id);
  t.true(attested.length >= 2, `attested members: ${attested.join(", ")}`);

  // Every machine's TPM is lost: every process killed, every swtpm state destroyed.
  for (const r of await readRecords(join(dir, "run"))) if (isRecorded(r)) process.kill(r.pid, "SIGKILL");
  for (const r of await readRecords(join(dir, "run"))) {
    for (let i = 0; i < 50 && isRecorded(r); i++) await sleep(100);
  }
  await fs.rm(join(dir, "tpm"), { recursive: true, force: true });
  // New machines' TPMs, their EK certificates from the same manufacturer CA.
  const fresh = await Promise.all(PEERS.map(() => startRestartableSwtpm(t, join(dir, "manufacturer-ca"))));
  const cas = localCaCertPaths(join(dir, "manufacturer-ca"));
  const manufacturerCa = ["--manufacturer-ca", cas.root, "--manufacturer-ca", cas.intermediate];

  const recover = (id: string, tpm: string, files: string[], extra: string[] = []) =>
    runCli(["recover", "--dir", join(dir, id), "--tpm", tpm, "--json", ...extra, "--shares", ...files], {
      timeoutMs: 60_000,
    });
  const watched = ["config.json", "master-key.sealed"].map((f) => join(dir, "peer-1", f));
  const before = await Promise.all(watched.map(fileHash));
  // k-1 shares: refused, nothing written.
  const tooFew = await recover("peer-1", fresh[0]!.spec, [shares[0]!]);
  t.is(tooFew.code, 1);
  t.like(JSON.parse(tooFew.text.trim()), { event: "recover-failed", reason: "SHARES_TOO_FEW" });
  t.regex(tooFew.stderr, /needs 2 of its 3/);
  // init's shares rebuild the retired epoch 1, which no longer opens the store: refused, naming both epochs.
  const initShares = (await fs.readdir(join(dir, "recovery-shares")))
    .sort()
    .map((f) => join(dir, "recovery-shares", f));
  const retired = await recover("peer-1", fresh[0]!.spec, initShares.slice(0, 2));
  t.is(retired.code, 1);
  t.like(JSON.parse(retired.text.trim()), { event: "recover-failed", reason: "SHARES_WRONG_KEY" });
  t.regex(retired.stderr, /rebuild master-key epoch 1, but this peer's store is under epoch 2/);
  t.deepEqual(await Promise.all(watched.map(fileHash)), before, "nothing written");

  // k shares (a different pair for each peer) re-seal the CMK of epoch 2 to each new swtpm.
  const pairs = [
    [shares[0]!, shares[1]!],
    [shares[1]!, shares[2]!],
    [shares[2]!, shares[0]!],
  ];
  // The last peer's EK is re-enrolled by its public key alone (no --manufacturer-ca), the others' by certificate.
  for (const [i, id] of PEERS.entries()) {
    const byCertificate = i < PEERS.length - 1;
    const r = await recover(id, fresh[i]!.spec, pairs[i]!, byCertificate ? manufacturerCa : []);
    t.is(r.code, 0, `${id}: ${r.stderr}`);
    t.like(JSON.parse(r.text.trim()), {
      event: "recovered",
      epoch: 2,
      storeCheck: "match",
      tpm: fresh[i]!.spec,
      reenrolment: attested.includes(id)
        ? { state: "recorded", ek: byCertificate ? "certificate" : "public-key" }
        : { state: "none" },
    });
  }

  for (const id of PEERS) {
    restarted.push(
      spawnOwned(process.execPath, [CLI_MAIN, "serve", "--dir", join(dir, id), "--json"], {
        stdio: "ignore",
        env: { ...withoutLockboxVars(process.env), LOCKBOX_ATTESTATION_INTERVAL_MS: String(INTERVAL_MS) },
      }),
    );
  }
  for (const [i, c] of clients.entries()) {
    let status: { masterKeyEpoch?: number; masterKeyProtector?: string } = {};
    for (let n = 0; n < 120 && status.masterKeyEpoch !== 2; n++) {
      await sleep(250);
      status = await c.getStatus().catch(() => ({}));
    }
    t.like(status, { masterKeyEpoch: 2, masterKeyProtector: "tpm" }, PEERS[i]);
  }
  // Each re-enrolment committed and audited by its peer; every member active again (re-quoted against
  // its new AK: the old one is gone with its TPM).
  const reenrolled = async (id: string): Promise<boolean> => {
    const i = PEERS.indexOf(id as (typeof PEERS)[number]);
    const events = await clients[i]!.listAuditEvents({ identity: id, pageSize: 1000 });
    return events.items.some((e) => e.operation === "Reenroll" && e.status === "OK");
  };
  let rows: PeerRow[] = [];
  // Up to 60 s: under CI's parallel load a re-quote can miss its deadline (1 s interval here), and a
  // member that did is marked down until a later quote answers. A peer marked down (it answers no
  // re-quote while its re-enrolment waits to commit) that is then elected leader is returned by its
  // followers' re-quotes: before they could record one, it stayed down for as long as it led (CI,
  // 2026-12-02: peer-2 down for the whole 60 s). A member refused by its policy would be fenced,
  // which this wait never accepts.
  for (let n = 0; n < 240; n++) {
    rows = await clients[0]!.adminCall<{ peers: PeerRow[] }>("ListPeers", {}).then(
      (r) => r.peers,
      () => [],
    );
    const done = await Promise.all(attested.map(reenrolled)).catch(() => [false]);
    if (rows.length === 3 && rows.every((r) => r.state === "active") && done.every((d) => d)) break;
    await sleep(250);
  }
  t.deepEqual(
    rows.map((r) => [r.peer_id, r.state]),
    PEERS.map((id) => [id, "active"]),
    JSON.stringify(rows),
  );
  for (const id of attested) t.true(await reenrolled(id), `${id}: no Reenroll audit record`);
  // Across three attestation intervals no member is fenced or down, and no peer thinks itself fenced.
  const seen = new Set<string>();
  const observeUntil = Date.now() + 3 * INTERVAL_MS;
  while (Date.now() < observeUntil) {
    for (const r of (await clients[0]!.adminCall<{ peers: PeerRow[] }>("ListPeers", {})).peers)
      seen.add(`${r.peer_id}:${r.state}`);
    for (const [i, c] of clients.entries()) {
      const status = await c.getStatus();
      if (status.attestation?.fenced === true) seen.add(`${PEERS[i]}:thinks-fenced`);
    }
    await sleep(200);
  }
  t.deepEqual(
    [...seen].sort(),
    PEERS.map((id) => `${id}:active`),
  );
  for (const k of written) t.is((await clients[k.peer]!.getKey(k.id)).material.toString("hex"), k.hex, k.id);
  // The control plane serves again: a new project's KEK is created (under epoch 2) through raft.
  let made = false;
  for (let n = 0; n < 40 && !made; n++) {
    made = await create(2, "rec-new")
      .then(() => true)
      .catch(() => false);
    if (!made) await sleep(500);
  }
  t.true(made, "no new key could be created after the recovery");
  const status = await runCliJson<{ epochs: { epoch: number; state: string; project_keks: number }[] }>([
    "master-key",
    "status",
    "--endpoint",
    endpoints[2]!,
    ...admin,
    "--json",
  ]);
  t.deepEqual(
    status.epochs.map((e) => [e.epoch, e.state]),
    [
      [1, "retired"],
      [2, "active"],
    ],
  );
  t.is(status.epochs[1]!.project_keks, 6 + 3 + 1);

  // The new TPMs carry on: a rotation delivers the next epoch to the re-enrolled members by
  // attestation (a quote checked against each member's new AK), and every key stays readable.
  const again = await runCli(["master-key", "rotate", "--endpoint", endpoints[0]!, ...admin, "--json"], {
    timeoutMs: 170_000,
  });
  t.is(again.code, 0, again.stderr);
  t.like(JSON.parse(again.text.trim()), { epoch: 3, complete: true });
  for (const [i, c] of clients.entries()) {
    let epoch = 0;
    for (let n = 0; n < 120 && epoch !== 3; n++) {
      epoch = (await c.getStatus().catch(() => ({ masterKeyEpoch: 0 }))).masterKeyEpoch ?? 0;
      if (epoch !== 3) await sleep(250);
    }
    t.is(epoch, 3, `${PEERS[i]} did not switch to epoch 3`);
  }
  for (const k of written) t.is((await clients[k.peer]!.getKey(k.id)).material.toString("hex"), k.hex, k.id);
});
