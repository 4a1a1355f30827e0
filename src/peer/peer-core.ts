/**
 * The part of the composition root below the edge: store -> master key -> barrier -> checks that
 * the store belongs to this master key and these ring parameters -> key service + audit log.
 * startPeer (start-peer.ts) builds every peer with it, from the peer's config; key-service tests
 * build theirs with it too, from the same few values, so no test runs a peer assembled another way.
 */
import { AuditLog, type AuditLogOptions } from "../audit/audit-log.js";
import { Barrier } from "../crypto/barrier.js";
import { ENVELOPE_FORMAT, envelopeEpoch, type EnvelopeBinding } from "../crypto/envelope.js";
import type { MasterKeyProvider } from "../crypto/master-key-provider.js";
import { nodeRandomSource, type RandomSource } from "../crypto/random-source.js";
import { LockboxError } from "../errors.js";
import type { ClientRequestOptions } from "../keys/client-requests.js";
import { KeyService } from "../keys/key-service.js";
import type { KekStore } from "../keys/project-keks.js";
import type { KeyReplication } from "../keys/key-replication.js";
import { openPeerStore, type PeerStore, type PeerStoreOptions } from "../store/peer-store.js";
import { systemClock, type Clock } from "../time/clock.js";
import { PARTITION_POWER_MAX } from "../../cluster/ring/partition.js";

const SALT_KEY = "cluster/salt";
const POWER_KEY = "cluster/partition-power";
const CANARY_KEY = "cluster/cmk-canary";
const CANARY_BINDING: EnvelopeBinding = { kind: "cmk-canary", id: "", attributes: {} };

/** What a peer's core is built from: in production, its config and init directory. */
export interface PeerCoreSpec {
  /** The LevelDB directory (created if missing). */
  dataDir: string;
  masterKey: MasterKeyProvider;
  /** The ring parameters every peer of the cluster shares; pinned to the store on first open. */
  clusterSalt: Uint8Array;
  partitionPower: number;
  clock?: Clock;
  random?: RandomSource;
  store?: PeerStoreOptions;
  /** Most live grants one key may have. */
  grantsPerKeyMax?: number;
  /** Where project KEKs live: the control state in a running peer (src/controlplane/control-kek-store.ts). */
  kekStore?: KekStore;
  /** Most consumers one key may have. */
  consumersPerKeyMax?: number;
  /** How long, and how many, client request ids are kept (src/keys/client-requests.ts). */
  clientRequests?: ClientRequestOptions;
  /** Audit retention and refusal windows; where failed aggregate writes are reported. */
  audit?: AuditLogOptions;
  /** Keys on the ring (src/keys/key-replication.ts); absent: keys stay in this peer's store. */
  replication?: KeyReplication;
}

export interface PeerCore {
  store: PeerStore;
  barrier: Barrier;
  keys: KeyService;
  audit: AuditLog;
  /** Zeroes KEKs, seals the barrier, flushes and closes the store. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens the store, unseals the barrier with the master key, refuses a master key or ring
 * parameters other than the ones the store was written with, and opens the key service and audit
 * log over it. Whatever was opened is closed again if a later step fails.
 */
export async function openPeerCore(spec: PeerCoreSpec): Promise<PeerCore> {
  const clock = spec.clock ?? systemClock;
  const random = spec.random ?? nodeRandomSource;
  const barrier = new Barrier(random);
  const cleanups: (() => Promise<void>)[] = [async () => barrier.seal()];
  const cleanup = async (): Promise<void> => {
    for (const step of cleanups.splice(0).reverse()) await step();
  };
  try {
    await barrier.unsealWith(spec.masterKey);
    const store = await openPeerStore(spec.dataDir, spec.store);
    cleanups.push(() => store.close());
    // A wrong master key must stop the peer here, not surface later as DATA_LOSS on every read.
    await checkMasterKeyCanary(store, barrier);
    // Likewise an edited partition power or salt must stop it, not hide every key it holds.
    await pinClusterParameters(store, spec.clusterSalt, spec.partitionPower);
    const keys = await KeyService.open({
      store,
      barrier,
      clusterSalt: spec.clusterSalt,
      partitionPower: spec.partitionPower,
      clock,
      random,
      ...(spec.grantsPerKeyMax !== undefined ? { grantsPerKeyMax: spec.grantsPerKeyMax } : {}),
      ...(spec.kekStore !== undefined ? { kekStore: spec.kekStore } : {}),
      ...(spec.consumersPerKeyMax !== undefined ? { consumersPerKeyMax: spec.consumersPerKeyMax } : {}),
      ...(spec.clientRequests !== undefined ? { clientRequests: spec.clientRequests } : {}),
      ...(spec.replication !== undefined ? { replication: spec.replication } : {}),
    });
    cleanups.push(() => keys.close());
    const audit = await AuditLog.open(store, clock, spec.audit);
    // Before the store closes (cleanups run in reverse): the last window of counted refusals is written.
    cleanups.push(() => audit.close());
    let closing: Promise<void> | undefined;
    return { store, barrier, keys, audit, close: () => (closing ??= cleanup()) };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * Pins the ring parameters a peer's config names to its store: the first call records them
 * ("meta" cluster/salt, cluster/partition-power, in one batch); later calls refuse others with
 * FAILED_PRECONDITION naming the field. Records sit at partitionOf(salt, id, power), so serving a
 * store with other parameters would find none of its keys and file new ones elsewhere.
 */
export async function pinClusterParameters(
  store: PeerStore,
  clusterSalt: Uint8Array,
  partitionPower: number,
): Promise<void> {
  if (!Number.isInteger(partitionPower) || partitionPower < 0 || partitionPower > PARTITION_POWER_MAX) {
    throw new RangeError(`partitionPower must be an integer in 0..${PARTITION_POWER_MAX}`);
  }
  const [salt, power] = await store.sublevel("meta").getMany([SALT_KEY, POWER_KEY]);
  if (salt === undefined && power === undefined) {
    await store.write([
      { type: "put", sublevel: "meta", key: SALT_KEY, value: new Uint8Array(clusterSalt) },
      { type: "put", sublevel: "meta", key: POWER_KEY, value: Uint8Array.of(partitionPower) },
    ]);
    return;
  }
  if (salt === undefined || power === undefined || power.length !== 1) {
    throw new LockboxError("DATA_LOSS", "stored cluster parameters are incomplete");
  }
  const mismatch = (field: string): LockboxError =>
    new LockboxError(
      "FAILED_PRECONDITION",
      `the config's ${field} differs from the one this store was written with; restore it`,
      field,
    );
  if (power[0] !== partitionPower) throw mismatch("partitionPower");
  if (!Buffer.from(salt).equals(Buffer.from(clusterSalt))) throw mismatch("clusterSalt");
}

/**
 * Refuses a CMK other than the one this store was first opened with: the first call stores a
 * small blob wrapped under the CMK ("meta" cluster/cmk-canary); later calls must unwrap it.
 * Throws FAILED_PRECONDITION "the master key does not match this store" on a mismatch (or
 * "sealed" when the barrier is sealed).
 */
export async function checkMasterKeyCanary(store: PeerStore, barrier: Barrier): Promise<void> {
  if ((await verifyMasterKeyCanary(store, barrier)) === "absent") {
    const value = barrier.wrap(new Uint8Array(0), CANARY_BINDING);
    await store.write([{ type: "put", sublevel: "meta", key: CANARY_KEY, value }]);
  }
}

/** The CMK epoch the store's canary is wrapped under, or undefined when it has none (for clear errors). */
export async function masterKeyCanaryEpoch(store: PeerStore): Promise<number | undefined> {
  const canary = await store.get("meta", CANARY_KEY);
  if (canary === undefined || canary[0] !== ENVELOPE_FORMAT) return undefined;
  try {
    return envelopeEpoch(canary);
  } catch {
    return undefined;
  }
}

/**
 * Re-wraps the store's canary under the barrier's active epoch when it is under another one: after a
 * rotation activated a new epoch, and always before this peer forgets the old one (cmk-epoch-keeper.ts),
 * so a restart still recognises its master key.
 */
export async function rewrapMasterKeyCanary(store: PeerStore, barrier: Barrier): Promise<void> {
  const canary = await store.get("meta", CANARY_KEY);
  if (canary === undefined || envelopeEpoch(canary) === barrier.activeEpoch) return;
  barrier.unwrap(canary, CANARY_BINDING);
  const value = barrier.wrap(new Uint8Array(0), CANARY_BINDING);
  await store.write([{ type: "put", sublevel: "meta", key: CANARY_KEY, value }]);
}

/**
 * checkMasterKeyCanary without the first write: "match" when the store's canary unwraps under the
 * barrier's CMK, "absent" when the store has none yet; throws as checkMasterKeyCanary on a mismatch.
 * `lockbox recover` checks a rebuilt CMK with it before sealing it anywhere.
 */
export async function verifyMasterKeyCanary(store: PeerStore, barrier: Barrier): Promise<"match" | "absent"> {
  barrier.requireUnsealed();
  const canary = await store.get("meta", CANARY_KEY);
  if (canary === undefined) return "absent";
  // Format 1 stores (before records were authenticated) are not read: lockbox has no deployed
  // stores, so the format changed outright. Say so rather than blame the master key.
  if (canary[0] !== ENVELOPE_FORMAT) {
    throw new LockboxError(
      "FAILED_PRECONDITION",
      `this store was written in storage format ${canary[0]}, which this lockbox does not read; create a new one with lockbox init`,
    );
  }
  try {
    barrier.unwrap(canary, CANARY_BINDING);
  } catch (cause) {
    throw new LockboxError("FAILED_PRECONDITION", "the master key does not match this store", undefined, {
      cause,
    });
  }
  return "match";
}
