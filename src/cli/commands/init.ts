/**
 * `lockbox init`: creates a cluster in a new directory: the cluster CA, this
 * peer's server certificate, an admin identity, the development master key
 * file, a store holding a raft group of this one peer, and last config.json
 * (its presence marks a finished init). It never overwrites: if any of
 * those files exists, it refuses before writing anything.
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { LockboxError } from "../../errors.js";
import { join, resolve } from "node:path";
import {
  CONFIG_FILE_NAME,
  LISTEN_DEFAULT,
  newPeerConfig,
  resolvePeerPath,
} from "../../config/peer-config.js";
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
import {
  dirFlag,
  UsageError,
  boolFlag,
  parseCommandArgs,
  printJson,
  runGuarded,
  stringFlag,
} from "../client-options.js";
import type { CliCommand } from "../command.js";
import { EXIT_OK } from "../command.js";

export const ADMIN_IDENTITY = "admin";
export const ADMIN_CERTIFICATE_FILE = "admin.crt";
export const ADMIN_KEY_FILE = "admin.key";
export const PEER_ID_DEFAULT = "peer-1";
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);
/** The admin identity's certificate lasts as long as the CA (10 years); re-issue with `identity issue`. */
const ADMIN_VALIDITY_DAYS = 3650;

const USAGE = [
  "usage: lockbox init --dir DIR [--peer-id ID] [--listen HOST:PORT] [--host-name NAME ...] [--json]",
  "",
  "Creates a lockbox cluster of one peer in DIR (created if missing; must not hold a cluster):",
  "  config.json          peer id, cluster id, listen address, partition power, cluster salt",
  "  ca.crt, ca.key       the cluster CA (ca.key is 0600; keep it offline in production)",
  "  peer.crt, peer.key   this peer's server certificate (SAN 127.0.0.1, localhost, the --listen host, --host-name)",
  "  admin.crt, admin.key an admin client identity named 'admin'",
  "  master-key.dev       the cluster master key in a 0600 file: DEVELOPMENT ONLY, NOT FOR PRODUCTION",
  "  data/                the peer's LevelDB store, with a raft group of this one peer",
  "",
  "options:",
  `  --dir DIR            where to create the cluster (required)  [$LOCKBOX_DIR]`,
  `  --peer-id ID         this peer's id (default ${PEER_ID_DEFAULT})`,
  `  --listen HOST:PORT   the address \`lockbox serve\` listens on (default ${LISTEN_DEFAULT})`,
  "  --host-name NAME     an extra DNS name or IP for the peer certificate (repeatable)",
  "  --json               print the result as one JSON line",
  "  -h, --help           show this help",
].join("\n");

export const command: CliCommand = {
  name: "init",
  summary: "create a cluster: CA, peer and admin identities, master key",
  run(argv) {
    return runGuarded("lockbox init", USAGE, async () => {
      const args = parseCommandArgs(
        argv,
        {
          dir: { type: "string" },
          "peer-id": { type: "string" },
          listen: { type: "string" },
          "host-name": { type: "string", multiple: true },
          json: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
        0,
      );
      if (boolFlag(args, "help")) {
        process.stdout.write(USAGE + "\n");
        return EXIT_OK;
      }
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
      const result = await initCluster({ dir, peerId, listen, hostNames });
      if (boolFlag(args, "json")) {
        printJson({ event: "initialized", ...result });
      } else {
        process.stdout.write(
          [
            `initialized lockbox cluster ${result.clusterId} in ${dir}`,
            `  peer ${result.peerId}, listening on ${result.listen} once served`,
            ...Object.values(result.files).map((f) => `  wrote ${f}`),
            `next: lockbox serve --dir ${dir}`,
            "",
          ].join("\n"),
        );
      }
      process.stderr.write(
        `WARNING: ${DEVELOPMENT_PROTECTOR_WARNING}: the master key is in ${result.files.masterKey}\n`,
      );
      return EXIT_OK;
    });
  },
};

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
    masterKey: string;
    data: string;
  };
}

/** The work of `lockbox init`, callable from tests. Throws ALREADY_EXISTS before writing anything if DIR holds a cluster. */
export async function initCluster(p: {
  dir: string;
  peerId: string;
  listen: string;
  hostNames?: readonly string[];
}): Promise<InitResult> {
  const config = newPeerConfig({ peerId: p.peerId, listen: p.listen });
  const files: InitResult["files"] = {
    config: join(p.dir, CONFIG_FILE_NAME),
    caCertificate: resolvePeerPath(p.dir, config, "caCertificate"),
    caKey: resolvePeerPath(p.dir, config, "caKey"),
    peerCertificate: resolvePeerPath(p.dir, config, "peerCertificate"),
    peerKey: resolvePeerPath(p.dir, config, "peerKey"),
    adminCertificate: join(p.dir, ADMIN_CERTIFICATE_FILE),
    adminKey: join(p.dir, ADMIN_KEY_FILE),
    masterKey: resolvePeerPath(p.dir, config, "masterKey"),
    data: resolvePeerPath(p.dir, config, "data"),
  };
  const existing = Object.values(files).filter((f) => existsSync(f));
  if (existing.length > 0) {
    throw new LockboxError(
      "ALREADY_EXISTS",
      `${p.dir} already holds a lockbox cluster (or part of one): ${existing.join(", ")}; refusing to overwrite`,
    );
  }
  await mkdir(p.dir, { recursive: true, mode: 0o700 });

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
  await DevelopmentFileProtector.create(files.masterKey);
  const store = await openPeerStore(files.data);
  try {
    // The cluster's raft group is founded here, once: this peer is its only voter.
    await bootstrapPeerRaft(store, config.peerId);
  } finally {
    await store.close();
  }
  // Last: a config.json means init finished.
  await writeNewFile(files.config, JSON.stringify(config, null, 2) + "\n", 0o600); // synced, with its directory
  return { dir: p.dir, peerId: config.peerId, clusterId: config.clusterId, listen: config.listen, files };
}
