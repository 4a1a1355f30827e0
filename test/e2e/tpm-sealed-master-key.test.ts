/**
 * A real peer process whose cluster master key is sealed to its own real
 * swtpm (`lockbox init --tpm`): killed with SIGKILL it restarts and unseals
 * from its swtpm alone, also after the swtpm itself was killed; with a PCR of
 * its policy extended before the restart it refuses to start and says it must
 * attest again; with every TPM state destroyed, k recovery shares written at
 * init restore service on a fresh swtpm (`lockbox recover`), k-1 are refused
 * and change nothing.
 */
import test from "ava";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LockboxClient } from "../../src/client/index.js";
import { TpmtHa } from "../../tpm/spec/basic.js";
import { TPM_ALG_ID } from "../../tpm/spec/constants.js";
import { readRecoveryShareFile, recoverMasterKey } from "../../src/crypto/recovery-share.js";
import { runCli } from "../helpers/cli-process.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";
import { startRestartableSwtpm } from "../tpm/restartable-swtpm.js";

async function tempDir(t: { teardown(fn: () => Promise<void>): void }, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Written {
  id: string;
  materialHex: string;
}

/** One imported key (material chosen here) and one created key (material read back). */
async function writeKeys(client: LockboxClient): Promise<Written[]> {
  const material = randomBytes(32);
  const imported = await client.importKey({ project: "p", scope: "vol", name: "imported", material });
  const created = await client.createKey({ project: "p", scope: "vol", name: "created", bitLength: 256 });
  const { material: createdMaterial } = await client.getKey(created.id);
  return [
    { id: imported.id, materialHex: material.toString("hex") },
    { id: created.id, materialHex: createdMaterial.toString("hex") },
  ];
}

async function readKeys(peer: PeerProcess, keys: readonly Written[]): Promise<string[]> {
  const client = peer.client(peer.admin, { cache: false });
  return Promise.all(keys.map(async (k) => (await client.getKey(k.id)).material.toString("hex")));
}

const fileHash = async (path: string): Promise<string> =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

/** `lockbox serve` that must fail: its exit code and its unseal-failed JSON line. */
async function failingServe(
  dir: string,
): Promise<{ code: number | null; reason?: string; message?: string }> {
  const r = await runCli(["serve", "--dir", dir, "--listen", "127.0.0.1:0", "--json"], { timeoutMs: 30_000 });
  const line = r.text.split("\n").find((l) => l.includes('"unseal-failed"'));
  const parsed = line === undefined ? {} : (JSON.parse(line) as { reason?: string; message?: string });
  return { code: r.code, ...parsed };
}

test("a peer killed with SIGKILL restarts and unseals its CMK from its own swtpm, also after the swtpm was killed; status says tpm", async (t) => {
  const swtpm = await startRestartableSwtpm(t);
  const peer = await spawnPeer({ initArgs: ["--tpm", swtpm.spec] });
  t.teardown(() => peer.teardown());
  const config = JSON.parse(await readFile(join(peer.dir, "config.json"), "utf8")) as Record<string, unknown>;
  t.deepEqual(config.masterKeySealing, {
    protector: "tpm",
    tpm: swtpm.spec,
    sealedFile: "master-key.sealed",
  });
  t.is((await stat(join(peer.dir, "master-key.sealed"))).mode & 0o777, 0o600);
  await t.throwsAsync(stat(join(peer.dir, "master-key.dev")), { code: "ENOENT" }, "no development key file");

  const keys = await writeKeys(peer.client(peer.admin, { cache: false }));
  const status = await peer.client().getStatus();
  t.is(status.masterKeyProtector, "tpm");
  t.is(status.sealState, "unsealed");

  await peer.kill("SIGKILL");
  await peer.restart();
  t.deepEqual(
    await readKeys(peer, keys),
    keys.map((k) => k.materialHex),
  );

  // The machine's TPM crashes too: swtpm killed, started again on its state.
  await peer.kill("SIGKILL");
  await swtpm.stop("SIGKILL");
  await swtpm.start();
  await peer.restart();
  t.deepEqual(
    await readKeys(peer, keys),
    keys.map((k) => k.materialHex),
  );
  // The peer made the crashed swtpm's clock safe again before unsealing (for its quotes).
  t.regex(await peer.log(), /tpm: swtpm:127\.0\.0\.1:\d+ clock safe=true/);
  t.notRegex(await peer.log(), /DEVELOPMENT MASTER KEY PROTECTOR/);
});

test("a PCR of the policy extended before a restart: serve refuses with CMK_PCRS_CHANGED and says to attest again; the sealed file is unchanged", async (t) => {
  const swtpm = await startRestartableSwtpm(t);
  const peer = await spawnPeer({ initArgs: ["--tpm", swtpm.spec, "--pcrs", "0,7"] });
  t.teardown(() => peer.teardown());
  await writeKeys(peer.client(peer.admin, { cache: false }));
  await peer.kill("SIGKILL");
  const sealedBefore = await fileHash(join(peer.dir, "master-key.sealed"));

  const tpm = await swtpm.connect();
  try {
    await tpm.pcrExtend(7, [new TpmtHa(TPM_ALG_ID.SHA256, new Uint8Array(randomBytes(32)))]);
  } finally {
    await tpm.close();
  }
  const failed = await failingServe(peer.dir);
  t.is(failed.code, 1);
  t.is(failed.reason, "CMK_PCRS_CHANGED");
  t.regex(failed.message ?? "", /must attest again/);
  t.is(await fileHash(join(peer.dir, "master-key.sealed")), sealedBefore);
});

test("with its swtpm state destroyed, k recovery shares from init restore service on a fresh swtpm with every key exact; k-1 shares are refused and nothing is written", async (t) => {
  const first = await startRestartableSwtpm(t);
  const sharesDir = await tempDir(t, "lockbox-custodians-");
  const peer = await spawnPeer({
    initArgs: ["--tpm", first.spec, "--shares", "3", "--threshold", "2", "--shares-dir", sharesDir],
  });
  t.teardown(() => peer.teardown());
  const shares = (await readdir(sharesDir)).sort().map((f) => join(sharesDir, f));
  t.is(shares.length, 3);
  for (const s of shares) t.is((await stat(s)).mode & 0o777, 0o600);
  const keys = await writeKeys(peer.client(peer.admin, { cache: false }));
  await peer.kill("SIGKILL");

  // Every TPM state is gone: the machine's TPM is replaced.
  await first.stop("SIGKILL");
  await rm(first.provisioned.stateDir, { recursive: true, force: true });
  const fresh = await startRestartableSwtpm(t);
  const down = await failingServe(peer.dir);
  t.is(down.code, 1);
  t.is(down.reason, "CMK_TPM_FAILED", "the old TPM is gone");

  const watched = ["config.json", "master-key.sealed"].map((f) => join(peer.dir, f));
  const before = await Promise.all(watched.map(fileHash));
  const tooFew = await runCli([
    "recover",
    "--dir",
    peer.dir,
    "--tpm",
    fresh.spec,
    "--json",
    "--shares",
    shares[1]!,
  ]);
  t.is(tooFew.code, 1);
  const refusal = JSON.parse(tooFew.text.trim()) as { event: string; reason: string; message: string };
  t.is(refusal.event, "recover-failed");
  t.is(refusal.reason, "SHARES_TOO_FEW");
  t.regex(refusal.message, /needs 2 of its 3/);
  t.deepEqual(await Promise.all(watched.map(fileHash)), before, "nothing written");

  const recovered = await runCli([
    "recover",
    "--dir",
    peer.dir,
    "--tpm",
    fresh.spec,
    "--json",
    "--shares",
    shares[2]!,
    shares[0]!,
  ]);
  t.is(recovered.code, 0, recovered.stderr);
  const result = JSON.parse(recovered.text.trim()) as {
    event: string;
    storeCheck: string;
    tpm: string;
    epoch: number;
  };
  t.is(result.event, "recovered");
  t.is(result.storeCheck, "match", "the rebuilt key opened the store");
  t.is(result.tpm, fresh.spec);
  t.is(result.epoch, 1);

  await peer.restart();
  t.deepEqual(
    await readKeys(peer, keys),
    keys.map((k) => k.materialHex),
  );
  t.is((await peer.client().getStatus()).masterKeyProtector, "tpm");

  // The CMK itself (rebuilt here from two shares) appears in no log or CLI output, in no encoding.
  const cmk = Buffer.from(
    recoverMasterKey(await Promise.all(shares.slice(0, 2).map(readRecoveryShareFile))).key,
  );
  const printed = [await peer.log(), tooFew.text, tooFew.stderr, recovered.text, recovered.stderr].join("\n");
  for (const encoded of [cmk.toString("hex"), cmk.toString("base64"), cmk.toString("base64url")]) {
    t.false(printed.includes(encoded), "the CMK was printed");
  }
  t.false(
    (await readFile(join(peer.dir, "master-key.sealed"))).includes(cmk),
    "the sealed file holds the CMK in clear",
  );
});

test("init: recovery shares need --tpm, the threshold at most the shares; an unreachable TPM leaves nothing written", async (t) => {
  const dir = await tempDir(t, "lockbox-init-");
  const usage = await runCli([
    "init",
    "--dir",
    join(dir, "a"),
    "--shares",
    "3",
    "--threshold",
    "2",
    "--shares-dir",
    dir,
  ]);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /--shares needs --tpm/);
  const swtpm = await startRestartableSwtpm(t);
  const over = await runCli([
    "init",
    "--dir",
    join(dir, "b"),
    "--tpm",
    swtpm.spec,
    "--shares",
    "2",
    "--threshold",
    "3",
    "--shares-dir",
    dir,
  ]);
  t.is(over.code, 2);
  t.regex(over.stderr, /--threshold 3 exceeds --shares 2/);
  await swtpm.stop("SIGKILL");
  const unreachable = await runCli(["init", "--dir", join(dir, "c"), "--tpm", swtpm.spec]);
  // UNAVAILABLE: the retryable exit class (src/cli/exit-codes.ts).
  t.is(unreachable.code, 5);
  t.regex(unreachable.stderr, /cannot reach the TPM at swtpm:127\.0\.0\.1:/);
  await t.throwsAsync(stat(join(dir, "c")), { code: "ENOENT" }, "nothing written");
});

test("a clean stop sends TPM2_Shutdown(STATE) last: the peer starts again on the same swtpm, and a swtpm killed after it comes back as a restart with its clock safe", async (t) => {
  const swtpm = await startRestartableSwtpm(t);
  const peer = await spawnPeer({ initArgs: ["--tpm", swtpm.spec] });
  t.teardown(() => peer.teardown());
  const keys = await writeKeys(peer.client(peer.admin, { cache: false }));
  await peer.restart(); // SIGTERM: a clean stop, Shutdown(STATE) sent; the swtpm keeps running
  t.deepEqual(
    await readKeys(peer, keys),
    keys.map((k) => k.materialHex),
  );
  await peer.kill("SIGTERM");
  const clock = async () => {
    const tpm = await swtpm.connect();
    try {
      return (await tpm.readClock()).clockInfo;
    } finally {
      await tpm.close();
    }
  };
  const before = await clock(); // a read changes no state: the orderly flag stays
  await swtpm.stop("SIGKILL");
  await swtpm.start();
  const after = await clock();
  t.true(after.safe);
  t.is(after.resetCount, before.resetCount, "not a reset");
  t.is(after.restartCount, before.restartCount + 1, "a restart");
});

test("serve refuses, with its reason and without crashing, a sealed file damaged on disk (CMK_SEALED_FILE_DAMAGED) and a TPM other than the one it was sealed to (CMK_SRK_MISMATCH)", async (t) => {
  const swtpm = await startRestartableSwtpm(t);
  const other = await startRestartableSwtpm(t);
  const peer = await spawnPeer({ initArgs: ["--tpm", swtpm.spec] });
  t.teardown(() => peer.teardown());
  const keys = await writeKeys(peer.client(peer.admin, { cache: false }));
  await peer.kill("SIGKILL");

  const sealedPath = join(peer.dir, "master-key.sealed");
  const sealed = await readFile(sealedPath);
  const damaged = Buffer.from(sealed);
  damaged[Math.floor(damaged.length / 2)]! ^= 0x40;
  await writeFile(sealedPath, damaged);
  const d = await failingServe(peer.dir);
  t.is(d.code, 1);
  t.is(d.reason, "CMK_SEALED_FILE_DAMAGED");
  await writeFile(sealedPath, sealed);

  const configPath = join(peer.dir, "config.json");
  const configText = await readFile(configPath, "utf8");
  await writeFile(configPath, configText.replace(swtpm.spec, other.spec));
  const m = await failingServe(peer.dir);
  t.is(m.code, 1);
  t.is(m.reason, "CMK_SRK_MISMATCH");
  t.regex(m.message ?? "", /lockbox recover/);

  // Put back, it serves as before.
  await writeFile(configPath, configText);
  await peer.restart();
  t.deepEqual(
    await readKeys(peer, keys),
    keys.map((k) => k.materialHex),
  );
});
