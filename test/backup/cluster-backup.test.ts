/**
 * Cluster backup and restore with recovery shares, with the real CLI, a real peer process and real
 * swtpm processes: a founding peer whose master key is sealed to its swtpm (and split into 3
 * recovery shares, any 2) holds keys and a cluster-wide identity; `lockbox backup` of the stopped
 * peer writes its store and a raft snapshot of its control state (FILE.control), neither holding
 * key material or the master key in the clear. Then the machine is lost: store, sealed master key
 * and TPM state destroyed. A damaged control snapshot is refused with nothing written;
 * `lockbox restore --shares --tpm --single-voter` onto a fresh swtpm rebuilds the master key,
 * founds the raft group again from the snapshot, and the peer serves every key with its exact
 * material, still knows the identity, and takes new writes that go through raft.
 */
import test from "ava";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { readRecoveryShareFile, recoverMasterKey } from "../../src/crypto/recovery-share.js";
import { runCli } from "../helpers/cli-process.js";
import { spawnPeer } from "../helpers/peer-process.js";
import { startRestartableSwtpm } from "../tpm/restartable-swtpm.js";

const exists = (path: string): Promise<boolean> =>
  fs.stat(path).then(
    () => true,
    () => false,
  );

test("cluster backup round trip: keys and control state backed up, machine and TPM lost, restore with 2 of 3 shares onto a fresh swtpm serves every key exactly", async (t) => {
  const first = await startRestartableSwtpm(t);
  const sharesDir = await fs.mkdtemp(join(tmpdir(), "lockbox-custodians-"));
  t.teardown(() => fs.rm(sharesDir, { recursive: true, force: true }));
  const peer = await spawnPeer({
    initArgs: ["--tpm", first.spec, "--shares", "3", "--threshold", "2", "--shares-dir", sharesDir],
  });
  t.teardown(() => peer.teardown());
  const shares = (await fs.readdir(sharesDir)).sort().map((f) => join(sharesDir, f));

  const admin = peer.client(peer.admin, { cache: false });
  const kept = new Map<string, Buffer>();
  for (let i = 0; i < 6; i++) {
    const key =
      i % 2 === 0
        ? await admin.importKey({
            project: `p${i % 3}`,
            scope: `vol-${i}`,
            name: `k${i}`,
            material: randomBytes(32),
          })
        : await admin.createKey({ project: `p${i % 3}`, scope: `vol-${i}`, name: `k${i}`, bitLength: 256 });
    kept.set(key.id, Buffer.from((await admin.getKey(key.id)).material));
  }
  // A cluster-wide identity lives in the control state only: it must come back with it.
  await peer.issueIdentity("svc-backup", "service", ["p0"]);
  admin.close();

  await peer.kill("SIGTERM");
  const backupsDir = await fs.mkdtemp(join(tmpdir(), "lockbox-backups-"));
  t.teardown(() => fs.rm(backupsDir, { recursive: true, force: true }));
  const file = join(backupsDir, "peer-1.backup");
  const backup = await runCli(["backup", "--dir", peer.dir, "--out", file, "--json"]);
  t.is(backup.code, 0, backup.stderr);
  const summary = JSON.parse(backup.text) as {
    controlSnapshot?: { file: string; index: number; voters: string[]; members: number };
  };
  if (summary.controlSnapshot === undefined) return t.fail("no control snapshot in a cluster peer's backup");
  t.is(summary.controlSnapshot.file, `${file}.control`);
  t.true(summary.controlSnapshot.index >= 1, `raft index ${summary.controlSnapshot.index}`);
  t.deepEqual(summary.controlSnapshot.voters, ["peer-1"]);
  t.is(summary.controlSnapshot.members, 1);
  t.is((await fs.stat(`${file}.control`)).mode & 0o777, 0o600);

  // Neither file holds a key or the master key in the clear, in any encoding.
  const cmk = Buffer.from(
    recoverMasterKey(await Promise.all(shares.slice(0, 2).map(readRecoveryShareFile))).key,
  );
  for (const f of [file, `${file}.control`]) {
    const bytes = await fs.readFile(f);
    for (const secret of [...kept.values(), cmk]) {
      for (const encoded of [
        secret,
        Buffer.from(secret.toString("hex")),
        Buffer.from(secret.toString("base64")),
      ])
        t.false(bytes.includes(encoded), `${f} holds key material in the clear`);
    }
  }
  const control = await fs.readFile(`${file}.control`, "utf8");
  t.true(control.includes("svc-backup"), "the control snapshot holds the identity");

  // The machine is lost: its store, its sealed master key, its TPM.
  await fs.rm(join(peer.dir, "data"), { recursive: true, force: true });
  await fs.rm(join(peer.dir, "master-key.sealed"), { force: true });
  await first.stop("SIGKILL");
  await fs.rm(first.provisioned.stateDir, { recursive: true, force: true });
  const fresh = await startRestartableSwtpm(t);

  // A damaged control snapshot: refused as data loss, before anything is written.
  const good = await fs.readFile(`${file}.control`);
  const flipped = Buffer.from(good);
  flipped[flipped.length - 10]! ^= 0x01;
  await fs.writeFile(`${file}.control`, flipped);
  const damaged = await runCli([
    "restore",
    "--dir",
    peer.dir,
    "--from",
    file,
    "--shares",
    shares[0]!,
    "--shares",
    shares[2]!,
    "--tpm",
    fresh.spec,
    "--single-voter",
  ]);
  t.is(damaged.code, 6, damaged.stderr);
  t.regex(damaged.stderr, /control snapshot/);
  t.false(await exists(join(peer.dir, "data")), "nothing restored from a damaged pair");
  await fs.writeFile(`${file}.control`, good);

  const restored = await runCli([
    "restore",
    "--dir",
    peer.dir,
    "--from",
    file,
    "--shares",
    shares[0]!,
    "--shares",
    shares[2]!,
    "--tpm",
    fresh.spec,
    "--single-voter",
    "--json",
  ]);
  t.is(restored.code, 0, restored.stderr);
  const result = JSON.parse(restored.text) as {
    missingFiles: string[];
    masterKey: { storeCheck: string; tpm: string; sharesUsed: number };
    controlSnapshot: { refounded: boolean; voters: string[] };
  };
  t.deepEqual(result.missingFiles, []);
  t.like(result.masterKey, { storeCheck: "match", tpm: fresh.spec, sharesUsed: 2 });
  t.like(result.controlSnapshot, { refounded: true, voters: ["peer-1"] });
  for (const printed of [restored.text, restored.stderr, backup.text, backup.stderr]) {
    t.false(printed.includes(cmk.toString("hex")) || printed.includes(cmk.toString("base64")));
  }

  await peer.restart();
  const after = peer.client(peer.admin, { cache: false });
  t.teardown(() => after.close());
  for (const [id, material] of kept)
    t.deepEqual(Buffer.from((await after.getKey(id)).material), material, id);
  const status = await after.getStatus();
  t.is(status.masterKeyProtector, "tpm");
  t.deepEqual(status.raft?.voters, ["peer-1"]);
  const identities = await runCli(["identity", "list", ...peer.cliFlags(), "--field", "name"]);
  t.is(identities.code, 0, identities.stderr);
  t.true(identities.text.split("\n").includes("svc-backup"), identities.text);
  // Raft works again: a new project's KEK is proposed and committed before its first key.
  const fresh1 = await after.createKey({ project: "after-restore", scope: "v", name: "n", bitLength: 256 });
  t.is((await after.getKey(fresh1.id)).material.length, 32);
});
