/**
 * The storage-node use lockbox is for: a LUKS2 volume keyed by a lockbox key,
 * then a clone of it rekeyed with `lockbox key rekey-clone` and
 * `cryptsetup luksChangeKey`, so the clone opens with its own key only.
 * Real cryptsetup on image files (no device-mapper needed: --test-passphrase).
 */
import test from "ava";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import { join } from "node:path";

import { runCli, runCliJson } from "../helpers/cli-process.js";
import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

/** Cheap key slots: the default argon2 slot would take seconds and a GiB of memory per call. */
const PBKDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
const IMAGE_BYTES = 20 * 1024 * 1024; // LUKS2's default header is 16 MiB

let peer: PeerProcess;

test.before(async () => {
  peer = await spawnPeer();
});

test.after.always(async () => {
  await peer?.teardown();
});

function cryptsetup(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile("cryptsetup", args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (err !== null && (err as NodeJS.ErrnoException).code === "ENOENT") {
        reject(
          new Error(
            "cryptsetup is not installed: run scripts/install-deps.sh (Debian package cryptsetup-bin)",
          ),
        );
        return;
      }
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stderr });
    });
  });
}

const opens = async (image: string, keyFile: string): Promise<number> =>
  (await cryptsetup(["open", "--test-passphrase", "--key-file", keyFile, image])).code;

test("a LUKS volume keyed from lockbox, cloned and rekeyed with rekey-clone, opens with its new key only", async (t) => {
  const work = await fs.mkdtemp(join(peer.dir, "..", "luks-"));
  t.teardown(() => fs.rm(work, { recursive: true, force: true }));
  const flags = peer.cliFlags();
  const [volumeKey, cloneKey, image, cloneImage] = ["volume.key", "clone.key", "volume.img", "clone.img"].map(
    (f) => join(work, f),
  ) as [string, string, string, string];

  // 1. The volume's key, from lockbox straight into a 0600 key file.
  const key = await runCliJson<{ id: string; scope: string }>([
    "key",
    "create",
    "--project",
    "volumes",
    "--scope",
    "volume-42",
    "--name",
    "root",
    "--bits",
    "256",
    "--json",
    ...flags,
  ]);
  const got = await runCli(["key", "get", key.id, "--format", "raw", "--out", volumeKey, ...flags]);
  t.is(got.code, 0, got.stderr);
  t.is((await fs.stat(volumeKey)).size, 32);

  // 2. Format the volume with it.
  await fs.writeFile(image, "");
  await fs.truncate(image, IMAGE_BYTES);
  const format = await cryptsetup([
    "luksFormat",
    "--type",
    "luks2",
    "--batch-mode",
    ...PBKDF,
    image,
    volumeKey,
  ]);
  t.is(format.code, 0, format.stderr);
  t.is(await opens(image, volumeKey), 0);

  // 3. Clone the volume (a copy of the image), and give the clone fresh key material in lockbox.
  await fs.copyFile(image, cloneImage);
  // As the README does it: --field id prints the new key's id alone, for the shell to keep.
  const newId = await runCli([
    "key",
    "rekey-clone",
    key.id,
    "--name",
    "root-clone",
    "--field",
    "id",
    ...flags,
  ]);
  t.is(newId.code, 0, newId.stderr);
  const rekeyed = await runCliJson<{ id: string; scope: string; parentId: string }>([
    "key",
    "meta",
    newId.text.trim(),
    "--json",
    ...flags,
  ]);
  t.is(rekeyed.parentId, key.id);
  t.is(rekeyed.scope, "volume-42");
  const gotClone = await runCli(["key", "get", rekeyed.id, "--format", "raw", "--out", cloneKey, ...flags]);
  t.is(gotClone.code, 0, gotClone.stderr);
  t.notDeepEqual(await fs.readFile(cloneKey), await fs.readFile(volumeKey));

  // 4. Change the clone's LUKS key slot to the new key: no re-encryption of the data.
  const change = await cryptsetup([
    "luksChangeKey",
    "--batch-mode",
    ...PBKDF,
    cloneImage,
    "--key-file",
    volumeKey,
    cloneKey,
  ]);
  t.is(change.code, 0, change.stderr);

  // 5. The clone opens with its new key, no longer with the parent's; the parent is untouched.
  t.is(await opens(cloneImage, cloneKey), 0);
  t.is(await opens(cloneImage, volumeKey), 2);
  t.is(await opens(image, volumeKey), 0);
  t.is(await opens(image, cloneKey), 2);
});
