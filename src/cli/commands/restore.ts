/**
 * `lockbox restore --dir DIR --from FILE`: brings a peer's store back from `lockbox backup`. The
 * whole file is checked first (DATA_LOSS, and nothing written, when it is damaged); the store must
 * be empty (a restore never merges into live data); config.json is written from the backup when
 * DIR has none, and must name the same cluster and peer when it has one. The master key, CA and
 * peer certificates are not in a backup: put them back into DIR before starting the peer.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { resolveConfigPath } from "../../config/master-key-sealing-config.js";
import { CONFIG_FILE_NAME, loadPeerConfig, resolvePeerPath } from "../../config/peer-config.js";
import { LockboxError } from "../../errors.js";
import { openPeerStore } from "../../store/peer-store.js";
import { dirFlag, requiredFlag } from "../client-options.js";
import { defineCommand, dirOption } from "../cli-definition.js";
import { emitRecord } from "../output.js";
import { EXIT_OK } from "../command.js";

const DESCRIPTION = [
  "Restores a peer's store from a file `lockbox backup` wrote, into DIR whose store is empty or",
  "absent (move a damaged one aside first). The file is checked whole before anything is written.",
  "config.json comes from the backup unless DIR has one (then it must name the same cluster and peer).",
  "The master key, the CA and the peer's certificate and key are not in a backup: restore them into",
  "DIR as well, then start the peer.",
].join("\n");

export const command = defineCommand({
  name: "restore",
  summary: "restore a peer's store from a backup",
  description: DESCRIPTION,
  options: [
    dirOption("the peer's init directory"),
    { flags: "--from <FILE>", description: "the backup file", required: true },
  ],
  output: true,
  async run(args) {
    const dir = resolve(dirFlag(args));
    const from = resolve(requiredFlag(args, "from"));
    const { restoreStoreBackup, verifyStoreBackup } = await import("../../backup/store-backup.js");
    const backup = await verifyStoreBackup(from);
    const configPath = join(dir, CONFIG_FILE_NAME);
    if (existsSync(configPath)) {
      const current = await loadPeerConfig(dir);
      if (current.clusterId !== backup.clusterId || current.peerId !== backup.peerId) {
        throw new LockboxError(
          "FAILED_PRECONDITION",
          `${from} is a backup of peer ${backup.peerId} of cluster ${backup.clusterId}, but ${configPath} is peer ${current.peerId} of cluster ${current.clusterId}`,
        );
      }
    } else {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(configPath, JSON.stringify(backup.config, null, 2) + "\n", {
        mode: 0o600,
        flag: "wx",
      });
    }
    const config = await loadPeerConfig(dir);
    const dataDir = resolvePeerPath(dir, config, "data");
    const store = await openPeerStore(dataDir);
    try {
      await restoreStoreBackup(from, store).catch((err: unknown) => {
        if (err instanceof LockboxError && err.code === "FAILED_PRECONDITION") throw err;
        throw new LockboxError(
          "DATA_LOSS",
          `restore into ${dataDir} failed part way (${err instanceof Error ? err.message : String(err)}); remove ${dataDir} and run restore again`,
        );
      });
    } finally {
      await store.close();
    }
    // The master key: sealed to the TPM (masterKeySealing), else the development file.
    const masterKey =
      config.masterKeySealing !== undefined
        ? resolveConfigPath(dir, config.masterKeySealing.sealedFile)
        : resolvePeerPath(dir, config, "masterKey");
    const missing = [
      masterKey,
      ...(["caCertificate", "peerCertificate", "peerKey"] as const).map((k) =>
        resolvePeerPath(dir, config, k),
      ),
    ].filter((f) => !existsSync(f));
    const result = {
      dir,
      peerId: backup.peerId,
      clusterId: backup.clusterId,
      createdAt: backup.createdAt,
      entries: backup.entries,
      sha256: backup.sha256,
      missingFiles: missing,
    };
    emitRecord(
      result,
      () =>
        `restored ${backup.entries} entries of peer ${backup.peerId} (backup of ${backup.createdAt}) into ${dataDir}\n` +
        (missing.length > 0 ? `before starting the peer, put back: ${missing.join(", ")}\n` : ""),
    );
    return EXIT_OK;
  },
});
