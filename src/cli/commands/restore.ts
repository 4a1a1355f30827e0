/**
 * `lockbox restore --dir DIR --from FILE`: brings a peer's store back from `lockbox backup`. The
 * whole file is checked first (DATA_LOSS, and nothing written, when it is damaged); the store must
 * be empty (a restore never merges into live data); config.json is written from the backup when
 * DIR has none, and must name the same cluster and peer when it has one. The master key, CA and
 * peer certificates are not in a backup: put them back into DIR before starting the peer.
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { resolveConfigPath } from "../../config/master-key-sealing-config.js";
import { CONFIG_FILE_NAME, loadPeerConfig, resolvePeerPath } from "../../config/peer-config.js";
import { LockboxError } from "../../errors.js";
import { openPeerStore } from "../../store/peer-store.js";
import { UsageError, boolFlag, dirFlag, requiredFlag, stringFlag } from "../client-options.js";
import { TPM_ADDRESS_RULE, parseTpmAddress } from "../../sealing/tpm-address.js";
import { readManufacturerCas, recoverCluster } from "./recover.js";
import { defineCommand, dirOption } from "../cli-definition.js";
import { emitRecord } from "../output.js";
import { EXIT_OK } from "../command.js";

const DESCRIPTION = [
  "Restores a peer's store from a file `lockbox backup` wrote, into DIR whose store is empty or",
  "absent (move a damaged one aside first). The file is checked whole before anything is written.",
  "config.json comes from the backup unless DIR has one (then it must name the same cluster and peer).",
  "The master key, the CA and the peer's certificate and key are not in a backup: restore them into",
  "DIR as well, then start the peer.",
  "",
  "When the master key is lost with the machine (its TPM gone), give the recovery shares of",
  "`lockbox init --shares` (and --tpm for this machine's TPM): the master key is rebuilt, checked",
  "against the restored store and sealed to this TPM, as `lockbox recover` does. When every other",
  "member of the cluster is gone too, --single-voter founds the cluster again from the backup's",
  "control snapshot (FILE.control) with this peer as its one voter; remove the lost members with",
  "`lockbox peer remove` once it serves. Never use it while other members still run: that forks the cluster.",
].join("\n");

export const command = defineCommand({
  name: "restore",
  summary: "restore a peer's store from a backup",
  description: DESCRIPTION,
  options: [
    dirOption("the peer's init directory"),
    {
      flags: "--from <FILE>",
      description: "the backup file (FILE.control beside it for a cluster)",
      required: true,
    },
    {
      flags: "--shares <FILE>",
      description: "a recovery share file (repeatable; at least the threshold) to rebuild the master key",
      repeatable: true,
    },
    {
      flags: "--tpm <SPEC>",
      description: `with --shares: the TPM to seal to, ${TPM_ADDRESS_RULE} (default: the config's)`,
    },
    {
      flags: "--manufacturer-ca <FILE>",
      description:
        "with --shares: the new TPM's EK certificate must chain to this CA (repeatable); without it the EK is re-enrolled by public key",
      repeatable: true,
    },
    {
      flags: "--single-voter",
      description:
        "found the cluster again from the control snapshot, this peer its one voter (every other member is gone)",
    },
  ],
  output: true,
  async run(args) {
    const dir = resolve(dirFlag(args));
    const from = resolve(requiredFlag(args, "from"));
    const shareFiles = ((args.values.shares as string[] | undefined) ?? []).map((f) => resolve(f));
    const tpm = stringFlag(args, "tpm");
    if (tpm !== undefined && shareFiles.length === 0)
      throw new UsageError("--tpm goes with --shares (the TPM to seal the rebuilt master key to)", "--tpm");
    if (tpm !== undefined && parseTpmAddress(tpm) === undefined)
      throw new UsageError(`--tpm must be ${TPM_ADDRESS_RULE}, got '${tpm}'`, "--tpm");
    const manufacturerCas = await readManufacturerCas(args.values["manufacturer-ca"]);
    if (manufacturerCas.length > 0 && shareFiles.length === 0)
      throw new UsageError(
        "--manufacturer-ca goes with --shares (it checks the new TPM's EK)",
        "--manufacturer-ca",
      );
    const singleVoter = boolFlag(args, "single-voter");
    const { restoreStoreBackup, verifyStoreBackup } = await import("../../backup/store-backup.js");
    const { readControlSnapshot, refoundRaft } = await import("../../backup/control-backup.js");
    const backup = await verifyStoreBackup(from);
    // The control snapshot is checked whole too, before anything is written.
    const control =
      backup.controlSnapshot === undefined
        ? undefined
        : await readControlSnapshot(
            join(dirname(from), backup.controlSnapshot.file),
            backup.controlSnapshot.sha256,
          );
    if (singleVoter && control === undefined)
      throw new UsageError(
        `${from} has no control snapshot (a backup of a peer of no cluster?)`,
        "--single-voter",
      );
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
    let recovered: Awaited<ReturnType<typeof recoverCluster>> | undefined;
    if (shareFiles.length > 0)
      recovered = await recoverCluster({
        dir,
        shareFiles,
        manufacturerCas,
        ...(tpm !== undefined ? { tpm } : {}),
      });
    const others = (control?.voters ?? []).filter((v) => v !== backup.peerId);
    if (singleVoter && control !== undefined) {
      const raftStore = await openPeerStore(dataDir);
      try {
        await refoundRaft(raftStore, config.peerId, control);
      } finally {
        await raftStore.close();
      }
    }
    // The master key: sealed to the TPM (masterKeySealing), else the development file.
    const restoredConfig = await loadPeerConfig(dir);
    const masterKey =
      restoredConfig.masterKeySealing !== undefined
        ? resolveConfigPath(dir, restoredConfig.masterKeySealing.sealedFile)
        : resolvePeerPath(dir, restoredConfig, "masterKey");
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
      ...(recovered !== undefined ? { masterKey: recovered } : {}),
      ...(control !== undefined
        ? {
            controlSnapshot: {
              index: control.index,
              voters: singleVoter ? [config.peerId] : control.voters,
              refounded: singleVoter,
            },
          }
        : {}),
    };
    emitRecord(
      result,
      () =>
        `restored ${backup.entries} entries of peer ${backup.peerId} (backup of ${backup.createdAt}) into ${dataDir}\n` +
        (recovered !== undefined
          ? `rebuilt the master key (epoch ${recovered.epoch}) from ${recovered.sharesUsed} shares; sealed to ${recovered.tpm}\n` +
            (recovered.reenrolment.state === "recorded"
              ? `re-enrolment of the new TPM recorded (policy ${recovered.reenrolment.policy}); the peer commits it when it starts\n`
              : "")
          : "") +
        (singleVoter
          ? `raft founded again at index ${control!.index} with ${config.peerId} its one voter` +
            (others.length > 0
              ? `; remove the lost members: ${others.map((o) => `lockbox peer remove --peer-id ${o}`).join("; ")}\n`
              : "\n")
          : others.length > 0
            ? `its raft group has the voters ${control!.voters.join(", ")}: it serves the control state once a quorum of them runs (or restore with --shares and --single-voter when they are gone)\n`
            : "") +
        (missing.length > 0 ? `before starting the peer, put back: ${missing.join(", ")}\n` : ""),
    );
    return EXIT_OK;
  },
});
