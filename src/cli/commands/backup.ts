/**
 * `lockbox backup --dir DIR --out FILE`: a consistent backup of the peer's store and config
 * (src/backup/store-backup.ts), read offline: the peer of DIR must be stopped, since LevelDB lets
 * one process at a time open a store. The backup holds keys only wrapped; without the master key
 * it restores nothing, and it does not contain the master key: keep both (README).
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { resolveConfigPath } from "../../config/master-key-sealing-config.js";
import { CONFIG_FILE_NAME, loadPeerConfig, resolvePeerPath } from "../../config/peer-config.js";
import { isLockboxError, LockboxError } from "../../errors.js";
import { LOCKBOX_VERSION } from "../../peer/version.js";
import { openPeerStore } from "../../store/peer-store.js";
import { dirFlag, requiredFlag } from "../client-options.js";
import { defineCommand, dirOption } from "../cli-definition.js";
import { emitRecord } from "../output.js";
import { EXIT_OK } from "../command.js";

const DESCRIPTION = [
  "Writes a consistent backup of the stopped peer of DIR: every entry of its store (keys only",
  "wrapped under the master key; the audit log; raft state) and its config.json, checked by SHA-256.",
  "It does NOT contain the master key, the CA key or the peer's key: keep them apart, and with it.",
  "For a peer of a cluster it also writes FILE.control: a raft snapshot of the control state as of",
  "its last committed entry (members, policies, ring, CMK epochs, project KEKs and the CA key, all",
  "only wrapped under the master key), which `lockbox restore --shares ... --single-voter` founds a",
  "cluster again from. Keep FILE and FILE.control together.",
  "Restore with `lockbox restore`. Stop the peer first (`lockbox dev-cluster stop`, or its service).",
].join("\n");

/** The master key's file: sealed to the TPM (masterKeySealing), else the development file. */
const masterKeyFile = (dir: string, config: Awaited<ReturnType<typeof loadPeerConfig>>): string =>
  config.masterKeySealing !== undefined
    ? resolveConfigPath(dir, config.masterKeySealing.sealedFile)
    : resolvePeerPath(dir, config, "masterKey");

export const command = defineCommand({
  name: "backup",
  summary: "back up a stopped peer's store and config",
  description: DESCRIPTION,
  options: [
    dirOption("the peer's init directory"),
    {
      flags: "--out <FILE>",
      description: "the backup file to create (0600; an existing file is never overwritten)",
      required: true,
    },
  ],
  output: true,
  async run(args) {
    const dir = resolve(dirFlag(args));
    const out = resolve(requiredFlag(args, "out"));
    const config = await loadPeerConfig(dir);
    const rawConfig = JSON.parse(await readFile(join(dir, CONFIG_FILE_NAME), "utf8")) as Record<
      string,
      unknown
    >;
    const { writeStoreBackup } = await import("../../backup/store-backup.js");
    const { writeControlSnapshot } = await import("../../backup/control-backup.js");
    const store = await openPeerStore(resolvePeerPath(dir, config, "data")).catch((err: unknown) => {
      throw isLockboxError(err, "UNAVAILABLE")
        ? new LockboxError(
            // Not retryable: the operator must stop the peer first (exit class "other", not "unavailable").
            "FAILED_PRECONDITION",
            `the store of ${dir} is in use: stop its peer first (a backup reads the store offline)`,
            undefined,
            { cause: err },
          )
        : err;
    });
    let summary;
    let control;
    try {
      if (existsSync(out))
        throw new LockboxError("ALREADY_EXISTS", `${out} exists; refusing to overwrite it`);
      // The control state first, from the same stopped store: both describe one instant.
      control = await writeControlSnapshot(store, out);
      summary = await writeStoreBackup(
        store,
        {
          ...(control !== undefined
            ? { controlSnapshot: { file: basename(control.file), sha256: control.sha256 } }
            : {}),
          peerId: config.peerId,
          clusterId: config.clusterId,
          createdAt: new Date().toISOString(),
          lockboxVersion: LOCKBOX_VERSION,
          config: rawConfig,
        },
        out,
      ).catch((err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code;
        throw code === "EEXIST"
          ? new LockboxError("ALREADY_EXISTS", `${out} exists; refusing to overwrite it`)
          : err;
      });
    } finally {
      await store.close();
    }
    const result = {
      file: out,
      peerId: config.peerId,
      clusterId: config.clusterId,
      ...summary,
      ...(control !== undefined ? { controlSnapshot: control } : {}),
    };
    emitRecord(
      result,
      () =>
        `backup of peer ${config.peerId} written to ${out}: ${summary.entries} entries, ${summary.bytes} bytes, sha256 ${summary.sha256}\n` +
        (control !== undefined
          ? `control state (raft index ${control.index}, ${control.members} members) written to ${control.file}\n`
          : "") +
        `keep it together with the master key (${masterKeyFile(dir, config)}) or the recovery shares, which it does not contain\n`,
    );
    return EXIT_OK;
  },
});
