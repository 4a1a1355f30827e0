/**
 * `lockbox init`: creates a cluster in a new directory: the cluster CA, this
 * peer's server certificate, an admin identity, the cluster master key (CMK)
 * sealed to this peer's TPM with --tpm, with k-of-n recovery shares for their
 * custodians (or, without --tpm, the DEVELOPMENT ONLY master key file), a
 * store holding a raft group of this one peer, and last config.json (its
 * presence marks a finished init). It never overwrites: if any of those files
 * exists, it refuses before writing anything; the TPM seals the CMK before
 * the first file is written, so a TPM that refuses leaves nothing behind.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { Barrier } from "../../crypto/barrier.js";
import { Keyring, MASTER_KEY_BYTES } from "../../crypto/keyring.js";
import { MasterKeyError } from "../../crypto/master-key-error.js";
import { nodeRandomSource, zeroize } from "../../crypto/random-source.js";
import {
  makeRecoveryShares,
  recoveryShareFileName,
  writeRecoveryShareFiles,
} from "../../crypto/recovery-share.js";
import { SHARE_INDEX_MAX } from "../../crypto/shamir.js";
import { checkMasterKeyCanary } from "../../peer/peer-core.js";
import { PeerTpm } from "../../sealing/peer-tpm.js";
import { FOUNDER_ATTESTATION_FILE, attestFounder } from "../../attestation/founder-attestation.js";
import {
  DEFAULT_SEAL_PCRS,
  parseSealPcrs,
  sealMasterKey,
  sha256Pcrs,
  writeSealedMasterKeyFile,
} from "../../sealing/sealed-master-key.js";
import { parseTpmAddress, TPM_ADDRESS_RULE } from "../../sealing/tpm-address.js";
import { LockboxError } from "../../errors.js";
import { join, resolve } from "node:path";
import {
  CONFIG_FILE_NAME,
  LISTEN_DEFAULT,
  newPeerConfig,
  type PeerConfig,
  resolvePeerPath,
} from "../../config/peer-config.js";
import { resolveConfigPath, SEALED_MASTER_KEY_FILE_DEFAULT } from "../../config/master-key-sealing-config.js";
import {
  DEVELOPMENT_PROTECTOR_WARNING,
  DevelopmentFileProtector,
} from "../../crypto/development-file-protector.js";
import {
  createClusterCa,
  issueClientCertificate,
  issuePeerCertificate,
} from "../../pki/certificate-authority.js";
import { isNodeId, NODE_ID_RULE } from "../../../cluster/node-id.js";
import { describeHostPort, parseHostPort } from "../../net/host-port.js";
import { writeCertificateFile, writeNewFile, writePrivateKeyFile } from "../../pki/pem-files.js";
import { bootstrapPeerRaft } from "../../raft/peer-raft.js";
import { openPeerStore } from "../../store/peer-store.js";
import { dirFlag, type ParsedArgs, UsageError, intFlag, stringFlag } from "../client-options.js";
import { defineCommand, dirOption } from "../cli-definition.js";
import { EXIT_OK } from "../command.js";
import { emitRecord } from "../output.js";

export const ADMIN_IDENTITY = "admin";
export const ADMIN_CERTIFICATE_FILE = "admin.crt";
export const ADMIN_KEY_FILE = "admin.key";
export const PEER_ID_DEFAULT = "peer-1";
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);
/** The admin identity's certificate lasts as long as the CA (10 years); re-issue with `identity issue`. */
const ADMIN_VALIDITY_DAYS = 3650;

const DESCRIPTION = [
  "Creates a lockbox cluster of one peer in DIR (created if missing; must not hold a cluster):",
  "  config.json          peer id, cluster id, listen address, partition power, cluster salt, TPM",
  "  ca.crt, ca.key       the cluster CA (ca.key is 0600; keep it offline in production)",
  "  peer.crt, peer.key   this peer's server certificate (SAN 127.0.0.1, localhost, the --listen host, --host-name)",
  "  admin.crt, admin.key an admin client identity named 'admin'",
  "  master-key.sealed    with --tpm: the cluster master key sealed to this peer's TPM under a PCR policy",
  "  master-key.dev       without --tpm: the master key in a plain 0600 file, DEVELOPMENT ONLY, NOT FOR PRODUCTION",
  "  data/                the peer's LevelDB store, with a raft group of this one peer",
  "and in DIR2, with --shares: one recovery share file per custodian (0600), any K of which rebuild",
  "the master key with `lockbox recover` when no TPM can unseal it. They are written once, here.",
].join("\n");

export const command = defineCommand({
  name: "init",
  summary: "create a cluster: CA, peer and admin identities, master key",
  description: DESCRIPTION,
  options: [
    dirOption("where to create the cluster"),
    { flags: "--tpm <SPEC>", description: `this peer's TPM: ${TPM_ADDRESS_RULE} (e.g. device:/dev/tpmrm0)` },
    {
      flags: "--pcrs <LIST>",
      description: `SHA-256 PCRs the master key is sealed to (default ${DEFAULT_SEAL_PCRS.join(",")}; needs --tpm)`,
    },
    {
      flags: "--shares <N>",
      description: `recovery shares to write (2..${SHARE_INDEX_MAX}; needs --tpm, --threshold, --shares-dir)`,
    },
    { flags: "--threshold <K>", description: "shares needed to recover (2..N)" },
    { flags: "--shares-dir <DIR2>", description: "where the share files go (created 0700 if missing)" },
    { flags: "--peer-id <ID>", description: "this peer's id", default: PEER_ID_DEFAULT },
    {
      flags: "--listen <HOST:PORT>",
      description: "the address `lockbox serve` listens on",
      default: LISTEN_DEFAULT,
    },
    {
      flags: "--host-name <NAME>",
      description: "an extra DNS name or IP for the peer certificate (repeatable)",
      repeatable: true,
    },
  ],
  output: true,
  async run(args) {
    const dir = resolve(dirFlag(args));
    const peerId = stringFlag(args, "peer-id") ?? PEER_ID_DEFAULT;
    if (!isNodeId(peerId)) throw new UsageError(`--peer-id must be ${NODE_ID_RULE}`, "--peer-id");
    const listen = stringFlag(args, "listen") ?? LISTEN_DEFAULT;
    if (parseHostPort(listen, { portZero: true }) === undefined) {
      throw new UsageError(
        `--listen must be ${describeHostPort({ portZero: true })}, got '${listen}'`,
        "--listen",
      );
    }
    const hostNames = (args.values["host-name"] as string[] | undefined) ?? [];
    for (const h of hostNames) {
      if (!/^[A-Za-z0-9.:-]{1,253}$/.test(h))
        throw new UsageError(`--host-name '${h}' is not a host name or IP`, "--host-name");
    }
    const sealing = sealingArgs(args);
    const result = await initCluster({ dir, peerId, listen, hostNames, ...sealing });
    emitRecord({ event: "initialized", ...result }, () =>
      [
        `initialized lockbox cluster ${result.clusterId} in ${dir}`,
        `  peer ${result.peerId}, listening on ${result.listen} once served`,
        ...Object.values(result.files)
          .flat()
          .map((f) => `  wrote ${f}`),
        `next: lockbox serve --dir ${dir}`,
        "",
      ].join("\n"),
    );
    if (result.files.masterKey !== undefined) {
      process.stderr.write(
        `WARNING: ${DEVELOPMENT_PROTECTOR_WARNING}: the master key is in ${result.files.masterKey}\n`,
      );
    } else if (result.files.recoveryShares === undefined) {
      process.stderr.write(
        "WARNING: no recovery shares were written (--shares): if this TPM is lost or cleared, so is every key\n",
      );
    } else {
      process.stderr.write(
        `give each of the ${result.files.recoveryShares.length} recovery share files to its own custodian, then delete it here; any ${sealing.shares?.threshold} of them rebuild the master key\n`,
      );
    }
    return EXIT_OK;
  },
});

export interface InitResult {
  dir: string;
  peerId: string;
  clusterId: string;
  listen: string;
  files: {
    config: string;
    caCertificate: string;
    caKey: string;
    peerCertificate: string;
    peerKey: string;
    adminCertificate: string;
    adminKey: string;
    /** The development master key file (without --tpm). */
    masterKey?: string;
    /** The master key sealed to the TPM (with --tpm). */
    sealedMasterKey?: string;
    /** This peer's TPM identity (EK, activated AK, PCR policy), recorded by the leader (with --tpm). */
    founderAttestation?: string;
    /** One file per recovery share, in share order (with --shares). */
    recoveryShares?: string[];
    data: string;
  };
}

export interface InitSealing {
  /** The TPM to seal the master key to: swtpm:HOST:PORT or device:PATH. */
  tpm?: string;
  /** SHA-256 PCRs of the seal policy; DEFAULT_SEAL_PCRS without. */
  pcrs?: readonly number[];
  /** k-of-n recovery shares, written to `dir` (requires `tpm`). */
  shares?: { count: number; threshold: number; dir: string };
}

/** --tpm, --pcrs, --shares, --threshold, --shares-dir, checked together. */
function sealingArgs(args: ParsedArgs): InitSealing {
  const tpm = stringFlag(args, "tpm");
  const pcrsText = stringFlag(args, "pcrs");
  const count = intFlag(args, "shares", 2, SHARE_INDEX_MAX);
  const threshold = intFlag(args, "threshold", 2, SHARE_INDEX_MAX);
  const sharesDir = stringFlag(args, "shares-dir");
  if (tpm === undefined) {
    for (const [flag, v] of [
      ["--pcrs", pcrsText],
      ["--shares", count],
      ["--threshold", threshold],
      ["--shares-dir", sharesDir],
    ] as const) {
      if (v !== undefined)
        throw new UsageError(`${flag} needs --tpm (recovery shares are of a TPM-sealed master key)`, flag);
    }
    return {};
  }
  if (parseTpmAddress(tpm) === undefined)
    throw new UsageError(`--tpm must be ${TPM_ADDRESS_RULE}, got '${tpm}'`, "--tpm");
  let pcrs: number[] | undefined;
  if (pcrsText !== undefined) {
    pcrs = parseSealPcrs(pcrsText);
    if (pcrs === undefined)
      throw new UsageError(
        `--pcrs must be a list of PCRs 0..23 like 0,1,2,3,7 (SHA-256 bank), got '${pcrsText}'`,
        "--pcrs",
      );
  }
  const anyShares = count !== undefined || threshold !== undefined || sharesDir !== undefined;
  if (!anyShares) return { tpm, ...(pcrs ? { pcrs } : {}) };
  if (count === undefined || threshold === undefined || sharesDir === undefined)
    throw new UsageError("--shares, --threshold and --shares-dir go together", "--shares");
  if (threshold > count)
    throw new UsageError(`--threshold ${threshold} exceeds --shares ${count}`, "--threshold");
  return { tpm, ...(pcrs ? { pcrs } : {}), shares: { count, threshold, dir: resolve(sharesDir) } };
}

/** The work of `lockbox init`, callable from tests. Throws ALREADY_EXISTS before writing anything if DIR holds a cluster. */
export async function initCluster(
  p: {
    dir: string;
    peerId: string;
    listen: string;
    hostNames?: readonly string[];
  } & InitSealing,
): Promise<InitResult> {
  if (p.shares !== undefined && p.tpm === undefined) {
    throw new LockboxError(
      "INVALID_ARGUMENT",
      "recovery shares need a TPM-sealed master key (tpm)",
      "shares",
    );
  }
  const tpmAddress = p.tpm === undefined ? undefined : parseTpmAddress(p.tpm);
  if (p.tpm !== undefined && tpmAddress === undefined) {
    throw new LockboxError("INVALID_ARGUMENT", `tpm must be ${TPM_ADDRESS_RULE}`, "tpm");
  }
  const config = newPeerConfig({ peerId: p.peerId, listen: p.listen });
  if (p.tpm !== undefined) {
    config.masterKeySealing = { protector: "tpm", tpm: p.tpm, sealedFile: SEALED_MASTER_KEY_FILE_DEFAULT };
  }
  const files: InitResult["files"] = {
    config: join(p.dir, CONFIG_FILE_NAME),
    caCertificate: resolvePeerPath(p.dir, config, "caCertificate"),
    caKey: resolvePeerPath(p.dir, config, "caKey"),
    peerCertificate: resolvePeerPath(p.dir, config, "peerCertificate"),
    peerKey: resolvePeerPath(p.dir, config, "peerKey"),
    adminCertificate: join(p.dir, ADMIN_CERTIFICATE_FILE),
    adminKey: join(p.dir, ADMIN_KEY_FILE),
    ...(config.masterKeySealing === undefined
      ? { masterKey: resolvePeerPath(p.dir, config, "masterKey") }
      : {
          sealedMasterKey: resolveConfigPath(p.dir, config.masterKeySealing.sealedFile),
          founderAttestation: join(p.dir, FOUNDER_ATTESTATION_FILE),
        }),
    data: resolvePeerPath(p.dir, config, "data"),
  };
  const shareFiles =
    p.shares === undefined
      ? []
      : Array.from({ length: p.shares.count }, (_, i) =>
          join(
            p.shares!.dir,
            recoveryShareFileName({
              clusterId: config.clusterId,
              epoch: CMK_EPOCH_FIRST,
              index: i + 1,
              shares: p.shares!.count,
            }),
          ),
        );
  const existing = [...Object.values(files), ...shareFiles].filter(
    (f): f is string => typeof f === "string" && existsSync(f),
  );
  if (existing.length > 0) {
    throw new LockboxError(
      "ALREADY_EXISTS",
      `${p.dir} already holds a lockbox cluster (or part of one): ${existing.join(", ")}; refusing to overwrite`,
    );
  }
  // The CMK is sealed before any file is written: a TPM that refuses leaves nothing behind.
  const cmk = tpmAddress === undefined ? undefined : nodeRandomSource.bytes(MASTER_KEY_BYTES);
  try {
    // With the seal, the founder's TPM identity: its AK, activated against its own EK, and the PCR
    // policy of its state now, so continuous attestation re-quotes it like a joined peer.
    const tpmWork =
      cmk === undefined || tpmAddress === undefined
        ? undefined
        : await new PeerTpm(tpmAddress)
            .use(async (tpm) => ({
              sealed: await sealMasterKey(tpm, {
                cmk,
                epoch: CMK_EPOCH_FIRST,
                clusterId: config.clusterId,
                pcrs: sha256Pcrs(p.pcrs ?? DEFAULT_SEAL_PCRS),
              }),
              founder: await attestFounder(tpm, { peerId: p.peerId, pcrs: p.pcrs ?? DEFAULT_SEAL_PCRS }),
            }))
            .catch((cause: unknown) => {
              if (cause instanceof MasterKeyError || cause instanceof LockboxError) throw cause;
              throw new MasterKeyError(
                "CMK_TPM_FAILED",
                `cannot reach the TPM at ${tpmAddress.spec}: ${cause instanceof Error ? cause.message : String(cause)}`,
                { cause },
              );
            });
    const sealed = tpmWork?.sealed;
    await mkdir(p.dir, { recursive: true, mode: 0o700 });
    await writeIdentities(p, config, files);
    if (tpmWork !== undefined) {
      await writeNewFile(files.founderAttestation!, JSON.stringify(tpmWork.founder, null, 2) + "\n", 0o644);
    }
    if (sealed !== undefined && cmk !== undefined) {
      await writeSealedMasterKeyFile(files.sealedMasterKey!, sealed);
      if (p.shares !== undefined) {
        await mkdir(p.shares.dir, { recursive: true, mode: 0o700 });
        const shares = makeRecoveryShares({
          cmk,
          clusterId: config.clusterId,
          epoch: CMK_EPOCH_FIRST,
          threshold: p.shares.threshold,
          shares: p.shares.count,
        });
        files.recoveryShares = await writeRecoveryShareFiles(p.shares.dir, shares);
        for (const s of shares) zeroize(s.share);
      }
    } else {
      await DevelopmentFileProtector.create(files.masterKey!);
    }
    const store = await openPeerStore(files.data);
    try {
      // The cluster's raft group is founded here, once: this peer is its only voter.
      await bootstrapPeerRaft(store, config.peerId);
      if (cmk !== undefined) {
        // The store's CMK canary, written now, lets `lockbox recover` check a rebuilt CMK against it.
        const barrier = new Barrier();
        barrier.unseal(Keyring.empty().withEpoch(CMK_EPOCH_FIRST, cmk));
        try {
          await checkMasterKeyCanary(store, barrier);
        } finally {
          barrier.seal();
        }
      }
    } finally {
      await store.close();
    }
  } finally {
    zeroize(cmk);
  }
  // Last: a config.json means init finished.
  await writeNewFile(files.config, JSON.stringify(config, null, 2) + "\n", 0o600); // synced, with its directory
  return { dir: p.dir, peerId: config.peerId, clusterId: config.clusterId, listen: config.listen, files };
}

/** The first CMK epoch; `lockbox master-key rotate` makes the next ones. */
export const CMK_EPOCH_FIRST = 1;

async function writeIdentities(
  p: { dir: string; peerId: string; listen: string; hostNames?: readonly string[] },
  config: PeerConfig,
  files: InitResult["files"],
): Promise<void> {
  const ca = await createClusterCa({ clusterId: config.clusterId });
  // The listen host is a name clients will dial, unless it is a wildcard.
  const listenHost = parseHostPort(p.listen, { portZero: true })?.host;
  if (listenHost === undefined) {
    throw new LockboxError(
      "INVALID_ARGUMENT",
      `listen must be ${describeHostPort({ portZero: true })}`,
      "listen",
    );
  }
  const hostNames = [...(p.hostNames ?? []), ...(WILDCARD_HOSTS.has(listenHost) ? [] : [listenHost])];
  const peer = await issuePeerCertificate(ca, { peerId: p.peerId, hostNames });
  const admin = await issueClientCertificate(ca, {
    identity: ADMIN_IDENTITY,
    role: "admin",
    projects: [],
    days: ADMIN_VALIDITY_DAYS,
  });
  await writeCertificateFile(files.caCertificate, ca.certificatePem);
  await writePrivateKeyFile(files.caKey, ca.privateKeyPem);
  await writeCertificateFile(files.peerCertificate, peer.certificatePem);
  await writePrivateKeyFile(files.peerKey, peer.privateKeyPem);
  await writeCertificateFile(files.adminCertificate, admin.certificatePem);
  await writePrivateKeyFile(files.adminKey, admin.privateKeyPem);
}
