/**
 * The common way to bring up a single peer's key service: open the store, obtain the CMK through
 * the provider, unseal the barrier, load (or, on first open, create) the cluster salt and
 * partition power, check that the CMK is the one this store was written with, and open the audit
 * log.
 */
import { Barrier } from "../crypto/barrier.js";
import { ENVELOPE_FORMAT, type EnvelopeBinding } from "../crypto/envelope.js";
import type { MasterKeyProvider, MasterKeyProviderDescription } from "../crypto/master-key-provider.js";
import { nodeRandomSource, type RandomSource } from "../crypto/random-source.js";
import { AuditLog } from "../audit/audit-log.js";
import { LockboxError } from "../errors.js";
import { openPeerStore, type PeerStore, type PeerStoreOptions } from "../store/peer-store.js";
import { PARTITION_POWER_MAX } from "../../cluster/ring/partition.js";
import { systemClock, type Clock } from "./key-model.js";
import { KeyService } from "./key-service.js";

export const DEFAULT_PARTITION_POWER = 10;
const SALT_KEY = "cluster/salt";
const POWER_KEY = "cluster/partition-power";
const CANARY_KEY = "cluster/cmk-canary";
const CANARY_BINDING: EnvelopeBinding = { kind: "cmk-canary", id: "", attributes: {} };

export interface OpenKeyServiceOptions {
  /** Used only when the store is new; an existing store keeps its own. */
  partitionPower?: number;
  clock?: Clock;
  random?: RandomSource;
  store?: PeerStoreOptions;
  /** Most live grants one key may have. */
  grantsPerKeyMax?: number;
}

export interface KeyServiceHandle {
  service: KeyService;
  store: PeerStore;
  barrier: Barrier;
  audit: AuditLog;
  clusterSalt: Uint8Array;
  partitionPower: number;
  masterKeyEpoch: number;
  protector: MasterKeyProviderDescription;
  /** Zeroes KEKs, seals the barrier, flushes and closes the store. */
  close(): Promise<void>;
}

/** Opens the key service over the LevelDB in `dir` (created if missing). */
export async function openKeyService(
  dir: string,
  provider: MasterKeyProvider,
  options: OpenKeyServiceOptions = {},
): Promise<KeyServiceHandle> {
  const random = options.random ?? nodeRandomSource;
  const clock = options.clock ?? systemClock;
  const store = await openPeerStore(dir, options.store);
  const barrier = new Barrier(random);
  try {
    await barrier.unsealWith(provider);
    const { clusterSalt, partitionPower } = await loadClusterParameters(store, barrier, random, options);
    const service = await KeyService.open({
      store,
      barrier,
      clusterSalt,
      partitionPower,
      clock,
      random,
      ...(options.grantsPerKeyMax !== undefined ? { grantsPerKeyMax: options.grantsPerKeyMax } : {}),
    });
    const audit = await AuditLog.open(store, clock);
    return {
      service,
      store,
      barrier,
      audit,
      clusterSalt,
      partitionPower,
      masterKeyEpoch: barrier.activeEpoch,
      protector: provider.describe(),
      close: async () => {
        await service.close();
        barrier.seal();
        await store.close();
      },
    };
  } catch (e) {
    barrier.seal();
    await store.close();
    throw e;
  }
}

async function loadClusterParameters(
  store: PeerStore,
  barrier: Barrier,
  random: RandomSource,
  options: OpenKeyServiceOptions,
): Promise<{ clusterSalt: Uint8Array; partitionPower: number }> {
  const [salt, power] = await store.sublevel("meta").getMany([SALT_KEY, POWER_KEY]);
  if (salt !== undefined && power !== undefined) {
    await checkMasterKeyCanary(store, barrier);
    if (power.length !== 1 || power[0]! > PARTITION_POWER_MAX || salt.length !== 32) {
      throw new LockboxError("DATA_LOSS", "stored cluster parameters are corrupt");
    }
    return { clusterSalt: salt, partitionPower: power[0]! };
  }
  if (salt !== undefined || power !== undefined) {
    throw new LockboxError("DATA_LOSS", "stored cluster parameters are incomplete");
  }
  const partitionPower = options.partitionPower ?? DEFAULT_PARTITION_POWER;
  if (!Number.isInteger(partitionPower) || partitionPower < 0 || partitionPower > PARTITION_POWER_MAX) {
    throw new RangeError(`partitionPower must be an integer in 0..${PARTITION_POWER_MAX}`);
  }
  await checkMasterKeyCanary(store, barrier);
  const clusterSalt = random.bytes(32);
  await store.write([
    { type: "put", sublevel: "meta", key: SALT_KEY, value: clusterSalt },
    { type: "put", sublevel: "meta", key: POWER_KEY, value: Uint8Array.of(partitionPower) },
  ]);
  return { clusterSalt, partitionPower };
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
 * "sealed" when the barrier is sealed). Callers that build KeyService themselves should call it.
 */
export async function checkMasterKeyCanary(store: PeerStore, barrier: Barrier): Promise<void> {
  barrier.requireUnsealed();
  const canary = await store.get("meta", CANARY_KEY);
  if (canary === undefined) {
    const value = barrier.wrap(new Uint8Array(0), CANARY_BINDING);
    await store.write([{ type: "put", sublevel: "meta", key: CANARY_KEY, value }]);
    return;
  }
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
}
