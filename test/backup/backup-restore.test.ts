/**
 * Backup and restore of one peer, with the real CLI and a real peer process: keys created (some
 * cloned, one destroyed), a backup refused while the peer runs, taken once it is stopped; the
 * peer's store destroyed; a damaged backup refused without writing; the backup restored; the peer
 * started again serves every key with its exact material, keeps the destroyed one destroyed, and
 * its audit log verifies. The backup holds no key material in the clear.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { join } from "node:path";

import { isLockboxClientError } from "../../src/client/index.js";
import { runCli } from "../helpers/cli-process.js";
import { spawnPeer } from "../helpers/peer-process.js";

test("keys created, backup taken, store destroyed, restore: every key readable with its exact material", async (t) => {
  const peer = await spawnPeer();
  t.teardown(() => peer.teardown());
  const admin = peer.client(peer.admin, { cache: false });
  const kept = new Map<string, Buffer>();
  for (let i = 0; i < 12; i++) {
    const key = await admin.createKey({
      project: `p${i % 3}`,
      scope: `vol-${i}`,
      name: `k${i}`,
      bitLength: 256,
    });
    kept.set(key.id, Buffer.from((await admin.getKey(key.id)).material));
    if (i % 4 === 0) {
      const clone = await admin.rekeyClone(key.id);
      kept.set(clone.id, Buffer.from((await admin.getKey(clone.id)).material));
    }
  }
  const doomed = await admin.createKey({ project: "p0", scope: "gone", name: "gone", bitLength: 256 });
  await admin.deleteKey(doomed.id);

  const file = join(peer.dir, "..", `${peer.dir.split("/").pop()}.backup`);
  t.teardown(() => fs.rm(file, { force: true }));
  const whileRunning = await runCli(["backup", "--dir", peer.dir, "--out", file]);
  t.is(whileRunning.code, 1);
  t.regex(whileRunning.stderr, /stop its peer first/);

  await peer.kill("SIGTERM");
  const backup = await runCli(["backup", "--dir", peer.dir, "--out", file, "--json"]);
  t.is(backup.code, 0, backup.stderr);
  const summary = JSON.parse(backup.text) as { entries: number; sha256: string };
  t.true(summary.entries > kept.size);
  t.is((await fs.stat(file)).mode & 0o777, 0o600);
  const again = await runCli(["backup", "--dir", peer.dir, "--out", file]);
  t.is(again.code, 1, "an existing backup is never overwritten");
  t.regex(again.stderr, /refusing to overwrite/);

  const bytes = await fs.readFile(file);
  for (const material of kept.values()) {
    t.false(bytes.includes(material), "no key in the clear");
    t.false(bytes.includes(Buffer.from(material.toString("hex"))));
  }

  // The peer's state is lost.
  await fs.rm(join(peer.dir, "data"), { recursive: true, force: true });

  // A damaged copy is refused, and nothing is written.
  const broken = `${file}.broken`;
  t.teardown(() => fs.rm(broken, { force: true }));
  const flipped = Buffer.from(bytes);
  flipped[Math.floor(flipped.length / 2)]! ^= 0x01;
  await fs.writeFile(broken, flipped);
  const refused = await runCli(["restore", "--dir", peer.dir, "--from", broken]);
  t.is(refused.code, 6, "a damaged backup is the data-loss exit class");
  t.regex(refused.stderr, /is damaged .*SHA-256 differs/);
  t.false(
    await fs.stat(join(peer.dir, "data")).then(
      () => true,
      () => false,
    ),
    "no store was created from a damaged backup",
  );

  const restored = await runCli(["restore", "--dir", peer.dir, "--from", file, "--json"]);
  t.is(restored.code, 0, restored.stderr);
  t.like(JSON.parse(restored.text), { entries: summary.entries, sha256: summary.sha256, missingFiles: [] });
  const intoFull = await runCli(["restore", "--dir", peer.dir, "--from", file]);
  t.is(intoFull.code, 1, "never restored over a store that holds data");
  t.regex(intoFull.stderr, /not empty/);

  await peer.restart();
  const after = peer.client(peer.admin, { cache: false });
  for (const [id, material] of kept) {
    t.deepEqual(Buffer.from((await after.getKey(id)).material), material, id);
  }
  const destroyed = await after.getKey(doomed.id).catch((e: unknown) => e);
  t.true(isLockboxClientError(destroyed, "FAILED_PRECONDITION"));
  await peer.kill("SIGTERM");
  const verify = await runCli(["audit", "verify", "--dir", peer.dir]);
  t.is(verify.code, 0, verify.stderr);
  t.regex(verify.text, /audit log intact/);
});
