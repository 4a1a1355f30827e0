/**
 * A peer's config file, `config.json` in the directory `lockbox init`
 * creates. It names the peer and its cluster, where it listens, the ring
 * parameters every peer must share (partition power, cluster salt), and the
 * files it uses, relative to that directory. Every other tunable (logs,
 * metrics, edge limits, audit retention and export, store) is optional in the
 * file and has a documented default (tunables.ts, docs/configuration.md).
 * Loading validates every field and names the first one that is wrong.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import { LockboxError } from "../errors.js";
import { isNodeId, NODE_ID_RULE } from "../../cluster/node-id.js";
import { describeHostPort, isHostPort } from "../net/host-port.js";
import { PEER_ADDRESSES_MAX } from "../net/peer-addresses.js";
import {
  PEER_RAFT_LIMITS_DEFAULT,
  type PeerRaftLimits,
  validatePeerRaftLimits,
} from "../raft/peer-raft-limits.js";
import { TUNABLES_DEFAULT, type Tunables, validateTunables } from "./tunables.js";
import { type MasterKeySealing, validateMasterKeySealing } from "./master-key-sealing-config.js";

export { type Tunables, TUNABLES_DEFAULT } from "./tunables.js";
import { type RestConfig, validateRestConfig } from "./rest-config.js";

export const CONFIG_FILE_NAME = "config.json";
export const CONFIG_VERSION = 1;
export const PARTITION_POWER_DEFAULT = 10;
export const CLUSTER_SALT_BYTES = 32;
export const LISTEN_DEFAULT = "127.0.0.1:7443";
/** Entries in seedPeers or peerDialOverrides at most. */
export { PEER_ADDRESSES_MAX };

export interface PeerPaths {
  caCertificate: string;
  caKey: string;
  peerCertificate: string;
  peerKey: string;
  /** The development master key file (DevelopmentFileProtector). */
  masterKey: string;
  /** The LevelDB directory. */
  data: string;
}

/** The sections of Tunables sit at the root of config.json, beside these fields. */
export interface PeerConfig extends Tunables {
  version: typeof CONFIG_VERSION;
  peerId: string;
  clusterId: string;
  /** HOST:PORT. */
  listen: string;
  partitionPower: number;
  /** Hex, CLUSTER_SALT_BYTES bytes. */
  clusterSalt: string;
  /** Relative to the config's directory (or absolute). */
  paths: PeerPaths;
  /** The raft node's byte and lag bounds (src/raft/peer-raft-limits.ts); optional in the file. */
  raft: PeerRaftLimits;
  /** The master key sealed to this peer's TPM (master-key-sealing-config.ts); absent: the development file. */
  masterKeySealing?: MasterKeySealing;
  /**
   * Raft peers to dial before the control state names them: a peer that joins an existing cluster
   * knows its members' addresses only once it holds the state, and must answer the leader before that.
   * peer id -> HOST:PORT. Optional.
   */
  seedPeers?: Record<string, string>;
  /**
   * HOST:PORT other peers dial to reach this one, when that is not the address it listens on (a
   * proxy or NAT in front of it; the fault tests' TCP proxy). The leader records it as this peer's
   * member address. Optional; absent: the address the server bound.
   */
  advertise?: string;
  /**
   * Peers to dial at another HOST:PORT than their member address: peer id -> HOST:PORT. Only the TCP
   * destination moves; the server must still present that peer's certificate, named for its member
   * address's host (src/net/peer-dial.ts). For a NAT or tunnel between peers, and for the fault tests'
   * proxy on every link. Optional; applies to raft, replication and attestation channels alike.
   */
  peerDialOverrides?: Record<string, string>;
  /**
   * TESTS ONLY, off by default: lets AdminService.AddPeerUnattested add a member with no TPM
   * attestation. Never set it on a cluster that holds keys that matter.
   */
  allowUnattestedMembersForTests?: boolean;
  /** The Barbican v1 REST listener (rest-config.ts); absent: none. */
  rest?: RestConfig;
}

export const DEFAULT_PATHS: PeerPaths = {
  caCertificate: "ca.crt",
  caKey: "ca.key",
  peerCertificate: "peer.crt",
  peerKey: "peer.key",
  masterKey: "master-key.dev",
  data: "data",
};

export function newPeerConfig(params: { peerId: string; listen: string; clusterId?: string }): PeerConfig {
  const config: PeerConfig = {
    version: CONFIG_VERSION,
    peerId: params.peerId,
    clusterId: params.clusterId ?? randomUUID(),
    listen: params.listen,
    partitionPower: PARTITION_POWER_DEFAULT,
    clusterSalt: randomBytes(CLUSTER_SALT_BYTES).toString("hex"),
    paths: { ...DEFAULT_PATHS },
    raft: { ...PEER_RAFT_LIMITS_DEFAULT },
    ...structuredClone(TUNABLES_DEFAULT),
  };
  return validatePeerConfig(config, "new config");
}

/** Reads and validates DIR/config.json. */
export async function loadPeerConfig(dir: string): Promise<PeerConfig> {
  const path = join(dir, CONFIG_FILE_NAME);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const hint = code === "ENOENT" ? " (run `lockbox init --dir DIR` first)" : "";
    throw new LockboxError(
      "FAILED_PRECONDITION",
      `cannot read ${path}: ${code ?? "error"}${hint}`,
      undefined,
      {
        cause,
      },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new LockboxError("FAILED_PRECONDITION", `${path} is not valid JSON`, undefined, { cause });
  }
  return validatePeerConfig(parsed, path);
}

/** The absolute path of one of the config's files. */
export function resolvePeerPath(dir: string, config: PeerConfig, which: keyof PeerPaths): string {
  const p = config.paths[which];
  return isAbsolute(p) ? p : join(dir, p);
}

export function validatePeerConfig(value: unknown, source: string): PeerConfig {
  const bad = (field: string, what: string): LockboxError =>
    new LockboxError("FAILED_PRECONDITION", `${source}: ${field} ${what}`, field);
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad("(root)", "must be an object");
  const o = value as Record<string, unknown>;
  if (o.version !== CONFIG_VERSION) throw bad("version", `must be ${CONFIG_VERSION}`);
  if (!isNodeId(o.peerId)) throw bad("peerId", `must be ${NODE_ID_RULE}`);
  if (typeof o.clusterId !== "string" || !/^[0-9a-f-]{36}$/.test(o.clusterId))
    throw bad("clusterId", "must be a UUID");
  if (typeof o.listen !== "string" || !isHostPort(o.listen, { portZero: true })) {
    throw bad("listen", `must be ${describeHostPort({ portZero: true })}`);
  }
  if (
    typeof o.partitionPower !== "number" ||
    !Number.isInteger(o.partitionPower) ||
    o.partitionPower < 0 ||
    o.partitionPower > 24
  ) {
    throw bad("partitionPower", "must be an integer in 0..24");
  }
  if (
    typeof o.clusterSalt !== "string" ||
    !new RegExp(`^[0-9a-f]{${CLUSTER_SALT_BYTES * 2}}$`).test(o.clusterSalt)
  ) {
    throw bad("clusterSalt", `must be ${CLUSTER_SALT_BYTES * 2} lower-case hex digits`);
  }
  if (typeof o.paths !== "object" || o.paths === null) throw bad("paths", "must be an object");
  const known = new Set([
    "version",
    "peerId",
    "clusterId",
    "listen",
    "partitionPower",
    "clusterSalt",
    "paths",
    "masterKeySealing",
    "raft",
    "seedPeers",
    "advertise",
    "peerDialOverrides",
    "allowUnattestedMembersForTests",
    "rest",
  ]);
  for (const key of Object.keys(o)) {
    if (!known.has(key) && !Object.hasOwn(TUNABLES_DEFAULT, key)) throw bad(key, "is not a config field");
  }
  const paths = o.paths as Record<string, unknown>;
  for (const name of Object.keys(DEFAULT_PATHS) as (keyof PeerPaths)[]) {
    const p = paths[name];
    if (typeof p !== "string" || p.length === 0 || p.includes("\0"))
      throw bad(`paths.${name}`, "must be a file path");
  }
  const raft = validatePeerRaftLimits(o.raft, bad);
  const tunables = validateTunables(o, (field, what) => bad(field, what));
  const sealing =
    o.masterKeySealing === undefined ? undefined : validateMasterKeySealing(o.masterKeySealing, bad);
  const optional: Pick<
    PeerConfig,
    "seedPeers" | "advertise" | "peerDialOverrides" | "allowUnattestedMembersForTests"
  > = {};
  if (o.advertise !== undefined) {
    if (typeof o.advertise !== "string" || !isHostPort(o.advertise))
      throw bad("advertise", `must be ${describeHostPort()}`);
    optional.advertise = o.advertise;
  }
  if (o.seedPeers !== undefined) {
    optional.seedPeers = peerAddressMap(o.seedPeers, "seedPeers", bad);
  }
  if (o.peerDialOverrides !== undefined)
    optional.peerDialOverrides = peerAddressMap(o.peerDialOverrides, "peerDialOverrides", bad);
  if (o.allowUnattestedMembersForTests !== undefined) {
    if (typeof o.allowUnattestedMembersForTests !== "boolean") {
      throw bad("allowUnattestedMembersForTests", "must be true or false");
    }
    optional.allowUnattestedMembersForTests = o.allowUnattestedMembersForTests;
  }
  const rest = o.rest === undefined ? undefined : validateRestConfig(o.rest, bad);
  return {
    ...optional,
    ...(rest !== undefined ? { rest } : {}),
    ...(sealing !== undefined ? { masterKeySealing: sealing } : {}),
    version: CONFIG_VERSION,
    peerId: o.peerId,
    clusterId: o.clusterId,
    listen: o.listen,
    partitionPower: o.partitionPower,
    clusterSalt: o.clusterSalt,
    paths: Object.fromEntries(
      Object.keys(DEFAULT_PATHS).map((k) => [k, paths[k] as string]),
    ) as unknown as PeerPaths,
    raft,
    ...tunables,
  };
}

/** Peer id -> HOST:PORT, at most PEER_ADDRESSES_MAX entries (seedPeers, peerDialOverrides). */
function peerAddressMap(
  value: unknown,
  field: string,
  bad: (field: string, what: string) => LockboxError,
): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad(field, "must be an object of peer id -> HOST:PORT");
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > PEER_ADDRESSES_MAX) throw bad(field, `names more than ${PEER_ADDRESSES_MAX} peers`);
  for (const [id, address] of entries) {
    if (!isNodeId(id)) throw bad(`${field}.${id}`, `must be keyed by ${NODE_ID_RULE}`);
    if (typeof address !== "string" || !isHostPort(address)) throw bad(`${field}.${id}`, "must be HOST:PORT");
  }
  return Object.fromEntries(entries) as Record<string, string>;
}
