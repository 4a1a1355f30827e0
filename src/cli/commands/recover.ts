/**
 * `lockbox recover`: rebuilds the cluster master key from k recovery shares
 * when no TPM can unseal it (the TPM was replaced, cleared or destroyed), and
 * seals it to this peer's (new) TPM. Everything is checked before anything is
 * written: each share's checksum, that the shares are one split of this
 * cluster's CMK and at least its threshold, the rebuilt key against the
 * shares' check value and against this peer's store (its CMK canary). Then
 * it seals, replaces the sealed file atomically and records the TPM in
 * config.json. Run it with the peer stopped (the store is opened here).
 *
 * The control state still names this member's old EK and AK. For a member that joined by attestation,
 * recover proves what the new TPM is (EK, credential activation, a quote meeting the member's policy
 * as this peer's control state holds it) and leaves a re-enrolment record, MACed under the CMK, that
 * the peer commits when it starts (src/attestation/reenrolment.ts): the recovered peers are then
 * re-quoted against their new AKs and are not fenced.
 */
import { X509Certificate } from "node:crypto";
import { readFile, rename, rm } from "node:fs/promises";
import { proveNewTpm, writeReenrolment } from "../../attestation/reenrolment.js";
import { readControlImage } from "../../backup/control-backup.js";
import { decodeControlSnapshot, type ControlImage } from "../../controlplane/control-snapshot.js";
import { join, resolve } from "node:path";
import {
  CONFIG_FILE_NAME,
  loadPeerConfig,
  resolvePeerPath,
  type PeerConfig,
} from "../../config/peer-config.js";
import { resolveConfigPath, SEALED_MASTER_KEY_FILE_DEFAULT } from "../../config/master-key-sealing-config.js";
import { Barrier } from "../../crypto/barrier.js";
import { Keyring } from "../../crypto/keyring.js";
import { isMasterKeyError, MasterKeyError } from "../../crypto/master-key-error.js";
import { zeroize } from "../../crypto/random-source.js";
import { readRecoveryShareFile, recoverMasterKey } from "../../crypto/recovery-share.js";
import { LockboxError } from "../../errors.js";
import { masterKeyCanaryEpoch, verifyMasterKeyCanary } from "../../peer/peer-core.js";
import { syncDirectory, writeNewFile } from "../../pki/pem-files.js";
import { PeerTpm } from "../../sealing/peer-tpm.js";
import {
  DEFAULT_SEAL_PCRS,
  decodeSealedMasterKey,
  parseSealPcrs,
  readSealedMasterKeyFile,
  sealMasterKey,
  sealedPcrs,
  sha256Pcrs,
  writeSealedMasterKeyFile,
} from "../../sealing/sealed-master-key.js";
import { parseTpmAddress, TPM_ADDRESS_RULE } from "../../sealing/tpm-address.js";
import { openPeerStore } from "../../store/peer-store.js";
import { UsageError, boolFlag, dirFlag, printJson, stringFlag } from "../client-options.js";
import { defineCommand, dirOption } from "../cli-definition.js";
import { emitRecord } from "../output.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import { SHARE_INDEX_MAX } from "../../crypto/shamir.js";

export const command = defineCommand({
  name: "recover",
  summary: "rebuild the master key from recovery shares and seal it to this TPM",
  description: [
    "Rebuilds the cluster master key from recovery shares (written by `lockbox init --shares`) when no",
    "TPM can unseal it, checks it against this peer's store, and seals it to this peer's TPM. Stop the",
    "peer first. Fewer shares than the threshold, a damaged share, shares of another split or cluster,",
    "or a key that does not open the store: a clear error, and nothing is written.",
    "Under --json a failure is one line too: {event:'recover-failed',reason,message}.",
  ].join("\n"),
  arguments: [{ name: "[share-files...]", description: "more share files, after --shares" }],
  options: [
    dirOption("the peer's init directory"),
    {
      flags: "--shares <FILE>",
      description: "a share file; repeat --shares or list more after the options (at least the threshold)",
      required: true,
      repeatable: true,
    },
    { flags: "--tpm <SPEC>", description: `the TPM to seal to: ${TPM_ADDRESS_RULE} (default: the config's)` },
    {
      flags: "--pcrs <LIST>",
      description: "SHA-256 PCRs to seal to (default: those of the old sealed file, else 0,1,2,3,7)",
    },
    {
      flags: "--manufacturer-ca <FILE>",
      description:
        "the new TPM's EK certificate must chain to this CA (PEM or DER; repeatable: root and intermediates); " +
        "without it the EK is re-enrolled by its public key only",
      repeatable: true,
    },
  ],
  output: true,
  async run(args) {
    const dir = resolve(dirFlag(args));
    const shareFiles = [...((args.values.shares as string[] | undefined) ?? []), ...args.positionals];
    if (shareFiles.length === 0) throw new UsageError("--shares is required", "--shares");
    if (shareFiles.length > SHARE_INDEX_MAX)
      throw new UsageError(`at most ${SHARE_INDEX_MAX} share files`, "--shares");
    const tpmFlag = stringFlag(args, "tpm");
    if (tpmFlag !== undefined && parseTpmAddress(tpmFlag) === undefined)
      throw new UsageError(`--tpm must be ${TPM_ADDRESS_RULE}, got '${tpmFlag}'`, "--tpm");
    const pcrsText = stringFlag(args, "pcrs");
    const pcrs = pcrsText === undefined ? undefined : parseSealPcrs(pcrsText);
    if (pcrsText !== undefined && pcrs === undefined)
      throw new UsageError(`--pcrs must be a list of PCRs 0..23 like 0,1,2,3,7, got '${pcrsText}'`, "--pcrs");
    const json = boolFlag(args, "json");
    const manufacturerCas = await readManufacturerCas(args.values["manufacturer-ca"]);
    try {
      const result = await recoverCluster({
        dir,
        manufacturerCas,
        shareFiles: shareFiles.map((f) => resolve(f)),
        ...(tpmFlag !== undefined ? { tpm: tpmFlag } : {}),
        ...(pcrs !== undefined ? { pcrs } : {}),
      });
      emitRecord({ event: "recovered", ...result }, () =>
        [
          `recovered the master key of cluster ${result.clusterId} (epoch ${result.epoch}) from ${result.sharesUsed} shares`,
          `  store check: ${result.storeCheck === "match" ? "the key opens this peer's store" : "the store has no canary yet (checked against the shares' check value only)"}`,
          `  sealed to ${result.tpm} (PCRs sha256:${result.pcrs.join(",")}) in ${result.sealedFile}`,
          result.reenrolment.state === "recorded"
            ? `  re-enrolment: the new TPM met policy ${result.reenrolment.policy} (EK ${result.reenrolment.ek}); the peer commits it when it starts`
            : `  re-enrolment: none (${result.reenrolment.reason})`,
          `next: lockbox serve --dir ${dir}`,
          "",
        ].join("\n"),
      );
      return EXIT_OK;
    } catch (err) {
      if (!isMasterKeyError(err)) throw err;
      if (json) printJson({ event: "recover-failed", reason: err.reason, message: err.message });
      process.stderr.write(`lockbox recover: ${err.reason}: ${err.message}\n`);
      return EXIT_FAILURE;
    }
  },
});

export interface RecoverResult {
  clusterId: string;
  epoch: number;
  sharesUsed: number;
  storeCheck: "match" | "absent";
  tpm: string;
  pcrs: number[];
  sealedFile: string;
  /** The new TPM recorded for the member's re-enrolment, or why there is none. */
  reenrolment:
    | { state: "recorded"; policy: string; ek: "certificate" | "public-key"; file: string }
    | { state: "none"; reason: string };
}

/** The work of `lockbox recover`, callable from tests. Writes nothing unless every check passed. */
export async function recoverCluster(p: {
  dir: string;
  shareFiles: readonly string[];
  tpm?: string;
  pcrs?: readonly number[];
  /** The new TPM's EK certificate must chain to these; empty: the EK is re-enrolled by public key. */
  manufacturerCas?: readonly X509Certificate[];
}): Promise<RecoverResult> {
  const config = await loadPeerConfig(p.dir);
  const tpmSpec = p.tpm ?? config.masterKeySealing?.tpm;
  if (tpmSpec === undefined) {
    throw new LockboxError("INVALID_ARGUMENT", "this peer's config names no TPM: give --tpm", "tpm");
  }
  const tpmAddress = parseTpmAddress(tpmSpec);
  if (tpmAddress === undefined)
    throw new LockboxError("INVALID_ARGUMENT", `tpm must be ${TPM_ADDRESS_RULE}`, "tpm");
  const sealedFile = resolveConfigPath(
    p.dir,
    config.masterKeySealing?.sealedFile ?? SEALED_MASTER_KEY_FILE_DEFAULT,
  );

  const shares = [];
  for (const f of p.shareFiles) shares.push(await readRecoveryShareFile(f));
  const { epoch, key } = recoverMasterKey(shares, { clusterId: config.clusterId });
  try {
    const { storeCheck, control } = await checkAgainstStore(p.dir, config, epoch, key);
    const pcrs = [...(p.pcrs ?? (await previousPcrs(sealedFile)) ?? DEFAULT_SEAL_PCRS)];
    const self = control?.members.find((m) => m.id === config.peerId);
    const policy = self === undefined ? undefined : control?.policies.find((x) => x.name === self.policy);
    const peerTpm = new PeerTpm(tpmAddress);
    // Proved before anything is written: a TPM that does not meet the member's policy changes nothing.
    const proved =
      self === undefined || self.akPublic === "" || policy === undefined
        ? undefined
        : await peerTpm.use((tpm) =>
            proveNewTpm(tpm, {
              clusterId: config.clusterId,
              peerId: config.peerId,
              epoch,
              policyName: policy.name,
              policy: policy.policy,
              manufacturerCas: p.manufacturerCas ?? [],
              nowMs: Date.now(),
            }),
          );
    const sealed = await peerTpm.use((tpm) =>
      sealMasterKey(tpm, { cmk: key, epoch, clusterId: config.clusterId, pcrs: sha256Pcrs(pcrs) }),
    );
    await writeSealedMasterKeyFile(sealedFile, sealed, { replace: true });
    const reenrolmentFile = proved === undefined ? undefined : await writeReenrolment(p.dir, proved, key);
    const sealing = config.masterKeySealing;
    if (sealing === undefined || sealing.tpm !== tpmSpec) {
      await replaceConfig(p.dir, {
        ...config,
        masterKeySealing: {
          protector: "tpm",
          tpm: tpmSpec,
          sealedFile: sealing?.sealedFile ?? SEALED_MASTER_KEY_FILE_DEFAULT,
        },
      });
    }
    return {
      clusterId: config.clusterId,
      epoch,
      sharesUsed: shares[0]!.threshold,
      storeCheck,
      tpm: tpmSpec,
      pcrs,
      sealedFile,
      reenrolment:
        proved !== undefined && reenrolmentFile !== undefined
          ? {
              state: "recorded",
              policy: proved.policy,
              ek: proved.ekCertificate !== "" ? "certificate" : "public-key",
              file: reenrolmentFile,
            }
          : {
              state: "none",
              reason:
                control === undefined
                  ? "this peer's store holds no control state"
                  : self === undefined
                    ? `peer ${config.peerId} is not a member in this peer's control state`
                    : "the member never joined by attestation (no AK or policy): it is not re-quoted",
            },
    };
  } finally {
    zeroize(key);
  }
}

/**
 * The rebuilt key must open this peer's store (its CMK canary), when the store has one; also reads the
 * control state the store holds (this member's record and policy, for its re-enrolment).
 */
async function checkAgainstStore(
  dir: string,
  config: PeerConfig,
  epoch: number,
  key: Uint8Array,
): Promise<{ storeCheck: "match" | "absent"; control: ControlImage | undefined }> {
  let store;
  try {
    store = await openPeerStore(resolvePeerPath(dir, config, "data"));
  } catch (cause) {
    throw new LockboxError(
      "FAILED_PRECONDITION",
      `cannot open this peer's store (is the peer still running? stop it first): ${cause instanceof Error ? cause.message : String(cause)}`,
      undefined,
      { cause },
    );
  }
  const barrier = new Barrier();
  try {
    barrier.unseal(Keyring.empty().withEpoch(epoch, key));
    const storeCheck = await verifyMasterKeyCanary(store, barrier);
    const at = await readControlImage(store);
    return { storeCheck, control: at === undefined ? undefined : decodeControlSnapshot(at.image) };
  } catch (cause) {
    if (cause instanceof LockboxError && cause.code === "FAILED_PRECONDITION" && !barrier.sealed) {
      const storeEpoch = await masterKeyCanaryEpoch(store);
      if (storeEpoch !== undefined && storeEpoch !== epoch) {
        // Shares rebuild the one epoch they were made for; after a rotation the store is under a newer one.
        throw new MasterKeyError(
          "SHARES_WRONG_KEY",
          `these shares rebuild master-key epoch ${epoch}, but this peer's store is under epoch ${storeEpoch}: ` +
            `use the shares made for epoch ${storeEpoch} (\`lockbox master-key rotate --recovery-shares\`)`,
          { cause },
        );
      }
      throw new MasterKeyError(
        "SHARES_WRONG_KEY",
        "the master key rebuilt from the shares does not open this peer's store (shares of another cluster's store?)",
        { cause },
      );
    }
    throw cause;
  } finally {
    barrier.seal();
    await store.close();
  }
}

/** The PCR selection of the sealed file being replaced, if it is still readable. */
async function previousPcrs(path: string): Promise<number[] | undefined> {
  try {
    return sealedPcrs(decodeSealedMasterKey(await readSealedMasterKeyFile(path), path));
  } catch {
    return undefined;
  }
}

/** --manufacturer-ca files, each one certificate in PEM or DER; a file that is not one is a usage error. */
export async function readManufacturerCas(value: unknown): Promise<X509Certificate[]> {
  const files = Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
  const cas: X509Certificate[] = [];
  for (const file of files) {
    try {
      cas.push(new X509Certificate(await readFile(file)));
    } catch (err) {
      throw new UsageError(
        `--manufacturer-ca ${file}: not a readable X.509 certificate (${(err as Error).message})`,
        "--manufacturer-ca",
      );
    }
  }
  return cas;
}

async function replaceConfig(dir: string, config: PeerConfig): Promise<void> {
  const path = join(dir, CONFIG_FILE_NAME);
  const temp = join(dir, `.${CONFIG_FILE_NAME}.new`);
  await rm(temp, { force: true });
  await writeNewFile(temp, JSON.stringify(config, null, 2) + "\n", 0o600);
  await rename(temp, path);
  await syncDirectory(dir);
}
