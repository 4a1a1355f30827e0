/**
 * The key service's logic, free of any transport: the gRPC edge (src/server) authenticates the
 * caller, calls these methods, maps LockboxError codes to statuses and writes the audit log.
 *
 * Access rules:
 * - A service caller may use only its projects; an admin may use any project.
 * - By id (get, meta, delete, clone, rekey, grant): a key of a project the caller may not see is
 *   NOT_FOUND, exactly like a missing key. The one exception is GetKey by the grantee of an
 *   unexpired, unrevoked grant; an expired or revoked grant is refused exactly like no grant.
 * - By project (create, import, list): a project the caller may not use is PERMISSION_DENIED (the
 *   caller named the project, so this reveals nothing about keys).
 * - GetKey, CloneKey, RekeyClone, CreateGrant and Add/RemoveConsumer on a destroyed key are
 *   FAILED_PRECONDITION "key destroyed" for callers who may see the key. DeleteKey of a destroyed
 *   key returns the tombstone unchanged (idempotent); GetKeyMetadata and ListKeys show tombstones.
 * - A key past its expiration is not served: every call by id but DeleteKey is NOT_FOUND "key <id>
 *   expired at <time>" (Barbican answers 404 for an expired secret, and a missing key is NOT_FOUND
 *   here too), and ListKeys leaves it out. DeleteKey still destroys it, so its owner can clean up.
 * - DeleteKey of a key with consumers is FAILED_PRECONDITION unless `force`, which removes the
 *   consumers with the key. A key holds at most consumersPerKeyMax consumers (RESOURCE_EXHAUSTED).
 * - Key ids are RFC 9562 version-8 UUIDs carrying the top 32 bits of H(cluster salt, project,
 *   scope) (cluster/ring/key-id.ts), so a key's partition follows from its id; clones and rekeyed
 *   clones keep their parent's project and scope, hence its partition.
 * - Create-like calls with a client request id are deduplicated per identity (client-requests.ts).
 * - Every request is validated completely before any read or write (see validation.ts).
 * - Every stored record and grant is authenticated (record-codec.ts) before any of it is
 *   returned, and the material's envelope is bound to the key's immutable fields: a record whose
 *   material or metadata was moved, swapped or edited on disk is DATA_LOSS "integrity check
 *   failed for key <id>"; another key's material, or a changed field, is never returned.
 * - A caller without access does the same work for an existing key, with or without grants, as
 *   for a missing id: one record read and one read of its own grants, no MAC checked.
 */
import { GRANTS_PER_KEY_MAX as REPLICATED_GRANTS_MAX } from "../../cluster/replication/replicated-key.js";
import { CONSUMERS_PER_KEY_MAX as REPLICATED_CONSUMERS_MAX } from "../../cluster/replication/replicated-key.js";
import type { ReplicatedKey } from "../../cluster/replication/replicated-key.js";
import {
  placedKeyId,
  KEY_ID_RANDOM_BYTES,
  keyIdPlacement,
  partitionOfKeyId,
} from "../../cluster/ring/key-id.js";
import { partitionCount } from "../../cluster/ring/partition.js";
import { scopeHash32, scopePartition } from "../../cluster/ring/placement.js";
import type { BindingValue } from "../crypto/binding.js";
import type { Barrier } from "../crypto/barrier.js";
import { openEnvelope, sealEnvelope } from "../crypto/envelope.js";
import { nodeRandomSource, randomUuid, zeroize, type RandomSource } from "../crypto/random-source.js";
import { invalidArgument, LockboxError, notFound } from "../errors.js";
import type { Caller } from "../identity/caller.js";
import type { PeerStore } from "../store/peer-store.js";
import type { PurgeStatus } from "../store/purger.js";
import { systemClock, type Clock } from "../time/clock.js";
import {
  clientRequestLock,
  ClientRequestStore,
  requestFingerprint,
  requestKeyId,
  type ClientRequestOptions,
  type RequestBody,
} from "./client-requests.js";
import { compareConsumers, CONSUMERS_PER_KEY_MAX, ConsumerStore, sameConsumer } from "./consumer-store.js";
import { GRANTS_PER_KEY_MAX, GrantStore } from "./grant-store.js";
import {
  callerMaySee,
  toKeyMeta,
  type CloneKeyRequest,
  type Consumer,
  type ConsumerRef,
  type ConsumerRequest,
  type ConsumersResponse,
  type CreateGrantRequest,
  type CreateKeyRequest,
  type CreateListener,
  type DeleteKeyRequest,
  type GetKeyResponse,
  type Grant,
  type ImportKeyRequest,
  type KeyConsumersRequest,
  type KeyIdRequest,
  type KeyMeta,
  type KeyRecord,
  type ListKeysRequest,
  type ListKeysResponse,
  type RevokeGrantRequest,
} from "./key-model.js";
import { KeyRecordStore, listingPrefix } from "./key-record-store.js";
import {
  checkConsumerFits,
  documentOf,
  newReplicatedKey,
  tombstoneOf,
  withConsumer,
  withGrant,
  withRevokedGrant,
  type KeyDocument,
  type KeyReplication,
} from "./key-replication.js";
import { KeyedMutex } from "./keyed-mutex.js";
import { signPageToken, verifyPageToken } from "./page-token.js";
import { KEK_GENERATION, ProjectKeks, type KekStore, type ProjectKeys } from "./project-keks.js";
import {
  authenticateClientRequest,
  authenticateConsumer,
  authenticateGrant,
  materialBinding,
  type ClientRequestEntry,
  type Unauthenticated,
} from "./record-codec.js";
import {
  validateAlgorithm,
  validateAlgorithmFor,
  validateBitLength,
  validateClientRequestId,
  validateConsumerField,
  validateExpiresAt,
  validateForce,
  validateGrantee,
  validateImportBitLength,
  validateKeyExpiresAt,
  validateMaterial,
  validateName,
  validateOptionalName,
  validatePageSize,
  validatePageTokenShape,
  validateProjectLike,
  validateRequestObject,
  validateSecretType,
  validateUuid,
} from "./validation.js";

export { GRANTS_PER_KEY_MAX } from "./grant-store.js";
export { CONSUMERS_PER_KEY_MAX } from "./consumer-store.js";
export { CLIENT_REQUEST_TTL_MS, CLIENT_REQUESTS_MAX } from "./client-requests.js";

export interface KeyServiceOptions {
  store: PeerStore;
  /** Must be unsealed before keys can be used; calls fail FAILED_PRECONDITION "sealed" otherwise. */
  barrier: Barrier;
  /** Cluster-wide salt of the partition hash (cluster/ring/partition.ts). */
  clusterSalt: Uint8Array;
  partitionPower: number;
  clock?: Clock;
  random?: RandomSource;
  /** Most live grants one key may have (GRANTS_PER_KEY_MAX by default). */
  grantsPerKeyMax?: number;
  /** Where wrapped project KEKs live (the control state in a peer); this store's "meta" sublevel by default. */
  kekStore?: KekStore;
  /** Most consumers one key may have (CONSUMERS_PER_KEY_MAX by default). */
  consumersPerKeyMax?: number;
  /** How long, and how many, client request ids are kept (24 h and 100,000 by default). */
  clientRequests?: ClientRequestOptions;
  /**
   * Keys live on the ring (key-replication.ts): every record, grant and consumer is read and written
   * through quorum replication instead of this store. Absent: keys live in this store alone (a
   * single peer). Client request ids stay in this store in both modes.
   */
  replication?: KeyReplication;
}

/** Creates with a request id whose write failed, kept for a retry through this peer (oldest dropped beyond). */
const PENDING_CREATES_MAX = 10_000;

/** Partitions a project-wide listing reads at once (each from a read quorum of its primaries). */
const LIST_PARTITIONS_AT_ONCE = 16;

type NewKeyFields = Pick<
  KeyRecord,
  "project" | "scope" | "name" | "secretType" | "algorithm" | "bitLength" | "parentId" | "expiresAt"
>;

/** A create-like call's request id, with what its fingerprint covers. */
interface Dedup {
  requestId: string;
  body: RequestBody;
}

export class KeyService {
  private readonly store: PeerStore;
  private readonly barrier: Barrier;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly records: KeyRecordStore;
  private readonly grants: GrantStore;
  private readonly consumers: ConsumerStore;
  private readonly clientRequests: ClientRequestStore;
  private readonly keks: ProjectKeks;
  private readonly clusterSalt: Uint8Array;
  private readonly partitionPower: number;
  private readonly replication: KeyReplication | undefined;
  /** On the ring: request id -> the record a failed create with it sent (insertReplicated). */
  private readonly pendingCreates = new Map<
    string,
    { fingerprint: string; record: ReplicatedKey; atMs: number }
  >();
  /** Serialises read-modify-write work per key id (delete, clone, grant). */
  private readonly locks = new KeyedMutex();
  private liveKeyCount = 0;
  private damagedRecordsAtOpen = 0;
  private readonly grantsPerKeyMax: number;
  private readonly consumersPerKeyMax: number;

  private constructor(options: KeyServiceOptions) {
    this.store = options.store;
    this.barrier = options.barrier;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? nodeRandomSource;
    this.keks = new ProjectKeks(this.store, this.barrier, this.random, options.kekStore);
    this.records = new KeyRecordStore(this.store, this.keks, options.clusterSalt, options.partitionPower);
    this.clusterSalt = new Uint8Array(options.clusterSalt);
    this.partitionPower = options.partitionPower;
    this.replication = options.replication;
    this.grantsPerKeyMax = options.grantsPerKeyMax ?? GRANTS_PER_KEY_MAX;
    this.grants = new GrantStore(this.store, this.grantsPerKeyMax);
    this.consumersPerKeyMax = options.consumersPerKeyMax ?? CONSUMERS_PER_KEY_MAX;
    if (!Number.isSafeInteger(this.consumersPerKeyMax) || this.consumersPerKeyMax < 1)
      throw new RangeError("consumersPerKeyMax must be a positive integer");
    this.consumers = new ConsumerStore(this.store, this.consumersPerKeyMax);
    this.clientRequests = new ClientRequestStore(this.store, this.locks, options.clientRequests);
    // Cached KEKs were unwrapped with the CMK: sealing the barrier must make them unusable too.
    this.barrier.onSeal(() => void this.keks.zeroize());
  }

  /**
   * Opens the service over an open store; counts the live keys once. With replication, a store that
   * holds keys made without it is refused (FAILED_PRECONDITION, naming one and what to do): they
   * share the "records" sublevel with the replica, whose format they are not, so the replica would
   * take them for damage and quarantine them, and the ring would never serve them.
   */
  static async open(options: KeyServiceOptions): Promise<KeyService> {
    const service = new KeyService(options);
    if (options.replication !== undefined) {
      const local = await service.records.singlePeerKeys(1);
      if (local.length > 0) {
        const [project, scope, id] = local[0]!.split("/");
        throw new LockboxError(
          "FAILED_PRECONDITION",
          `replication.enabled, but this peer's store holds keys made without replication (e.g. key ${id} ` +
            `of project ${project}, scope ${scope}); the ring would not serve them and its replica would ` +
            `take their records for damage. Start this data directory with replication.enabled false ` +
            `(its keys stay served by this peer alone), or give the replicated peer a new, empty data ` +
            `directory; moving keys into a replicated cluster with their ids is not supported yet`,
        );
      }
    }
    // On the ring this store holds replicas of other peers' partitions, in another format: no count.
    const counted =
      options.replication === undefined ? await service.records.countLive() : { live: 0, damaged: 0 };
    service.liveKeyCount = counted.live;
    service.damagedRecordsAtOpen = counted.damaged;
    await service.clientRequests.open();
    service.clientRequests.reclaimSoon(service.clock.now().getTime());
    return service;
  }

  /** An AES key of fresh random material. */
  async createKey(caller: Caller, req: CreateKeyRequest, onCreate?: CreateListener): Promise<KeyMeta> {
    const r = validateRequestObject(req);
    const project = validateProjectLike("project", r.project);
    const scope = validateProjectLike("scope", r.scope);
    const name = validateName("name", r.name);
    const algorithm = validateAlgorithm(r.algorithm);
    const bitLength = validateBitLength(r.bitLength);
    const expiresAt = validateKeyExpiresAt(r.expiresAt, this.clock.now());
    const requestId = validateClientRequestId(r.clientRequestId);
    this.authorizeProject(caller, project);
    const fields: NewKeyFields = {
      project,
      scope,
      name,
      secretType: "symmetric",
      algorithm,
      bitLength,
      parentId: "",
      expiresAt,
    };
    return this.deduplicated(
      caller,
      requestId,
      project,
      { method: "CreateKey", attributes: fieldsBody(fields) },
      (dedup) => this.insertFresh(caller, fields, dedup, onCreate),
    );
  }

  /**
   * Stores caller-provided material: an AES key (symmetric), or an opaque or passphrase secret.
   * The caller keeps ownership of `material` (it is not zeroed here).
   */
  async importKey(caller: Caller, req: ImportKeyRequest, onCreate?: CreateListener): Promise<KeyMeta> {
    const r = validateRequestObject(req);
    const project = validateProjectLike("project", r.project);
    const scope = validateProjectLike("scope", r.scope);
    const name = validateName("name", r.name);
    const secretType = validateSecretType(r.secretType);
    const algorithm = validateAlgorithmFor(secretType, r.algorithm);
    const material = validateMaterial(r.material, secretType);
    const bitLength = validateImportBitLength(secretType, material, r.bitLength);
    const expiresAt = validateKeyExpiresAt(r.expiresAt, this.clock.now());
    const requestId = validateClientRequestId(r.clientRequestId);
    this.authorizeProject(caller, project);
    const fields: NewKeyFields = {
      project,
      scope,
      name,
      secretType,
      algorithm,
      bitLength,
      parentId: "",
      expiresAt,
    };
    const body: RequestBody = { method: "ImportKey", attributes: fieldsBody(fields), material };
    return this.deduplicated(caller, requestId, project, body, (dedup) =>
      this.insert(caller, fields, material, dedup, onCreate),
    );
  }

  async getKey(caller: Caller, req: KeyIdRequest): Promise<GetKeyResponse> {
    const id = validateUuid("id", validateRequestObject(req).id);
    const record = await this.loadVisible(caller, id, true);
    return { key: toKeyMeta(record), material: await this.unwrapMaterial(record) };
  }

  async getKeyMetadata(caller: Caller, req: KeyIdRequest): Promise<KeyMeta> {
    const id = validateUuid("id", validateRequestObject(req).id);
    return toKeyMeta(await this.loadVisible(caller, id, false));
  }

  async listKeys(caller: Caller, req: ListKeysRequest): Promise<ListKeysResponse> {
    const r = validateRequestObject(req);
    const project = validateProjectLike("project", r.project);
    const scope = r.scope === undefined || r.scope === "" ? "" : validateProjectLike("scope", r.scope);
    const pageSize = validatePageSize(r.pageSize);
    const token = validatePageTokenShape(r.pageToken);
    if (this.replication !== undefined) {
      this.authorizeProject(caller, project);
      return this.listReplicated(this.replication, project, scope, pageSize, token);
    }
    const prefix = listingPrefix(project, scope);
    let after: string | undefined;
    if (token !== "") {
      const payload = verifyPageToken(this.barrier, "list-keys", token);
      if (payload.p !== project || payload.s !== scope || !payload.a?.startsWith(prefix)) {
        throw invalidArgument("page_token", "was issued for another listing");
      }
      after = payload.a;
    }
    this.authorizeProject(caller, project);
    this.barrier.requireUnsealed();
    const page = await this.records.listPage(prefix, after, pageSize);
    const nextPageToken =
      page.more && page.lastIndexKey !== undefined
        ? signPageToken(this.barrier, "list-keys", { p: project, s: scope, a: page.lastIndexKey })
        : "";
    const nowMs = this.clock.now().getTime();
    // Expired keys are not served; the page is shorter rather than read further (bounded work).
    const keys = page.records.filter((r) => !isExpired(r, nowMs)).map(toKeyMeta);
    return { keys, nextPageToken };
  }

  /**
   * Tombstones the key; the overwritten record (with its wrapped material) leaves the disk within
   * the store's purge delay (PeerStore.write's purge targets). Deleting a destroyed key returns
   * its tombstone unchanged (and schedules the purge again).
   */
  async deleteKey(caller: Caller, req: DeleteKeyRequest): Promise<KeyMeta> {
    const r = validateRequestObject(req);
    const id = validateUuid("id", r.id);
    const force = validateForce(r.force);
    const replication = this.replication;
    if (replication !== undefined) {
      return this.locks.run(id, async () => {
        const { k, doc } = await this.visibleDocument(replication, caller, id, false, { allowExpired: true });
        if (doc.record.state === "destroyed") return toKeyMeta(doc.record);
        if (doc.consumers.length > 0 && !force) {
          throw new LockboxError(
            "FAILED_PRECONDITION",
            `key ${id} has consumers; remove them, or delete with force`,
          );
        }
        const tombstone = tombstoneOf(k, replication.stamp());
        await replication.write(tombstone);
        this.liveKeyCount -= 1;
        return toKeyMeta(documentOf(tombstone).record);
      });
    }
    return this.locks.run(id, async () => {
      // An expired key can still be deleted: that is how its owner gets rid of it.
      const record = await this.loadVisible(caller, id, false, { allowExpired: true });
      const wasLive = record.state !== "destroyed";
      const consumerOps = await this.consumers.deleteAllOps(id);
      if (wasLive && consumerOps.length > 0 && !force) {
        throw new LockboxError(
          "FAILED_PRECONDITION",
          `key ${id} has consumers; remove them, or delete with force`,
        );
      }
      const now = this.clock.now();
      // toKeyMeta drops wrappedMaterial: the tombstone holds no material at all.
      const tombstone: KeyRecord = wasLive
        ? { ...toKeyMeta(record), state: "destroyed", destroyedAt: now, updatedAt: now }
        : record;
      // LevelDB keeps the overwritten version in its log and tables until a compaction merges it
      // with the tombstone; the store's purger runs those compactions in batches.
      const keys = await this.keks.getExisting(record.project);
      const purge = [{ sublevel: "records" as const, key: this.records.recordKeyOf(id) }];
      await this.store.write([...this.records.putOps(tombstone, keys, false), ...consumerOps], purge);
      if (wasLive) this.liveKeyCount -= 1;
      return toKeyMeta(tombstone);
    });
  }

  /** Same material under a new id (snapshots). */
  cloneKey(caller: Caller, req: CloneKeyRequest, onCreate?: CreateListener): Promise<KeyMeta> {
    return this.deriveKey(caller, req, "same-material", onCreate);
  }

  /** Fresh material under a new id (a LUKS key change on clone). */
  rekeyClone(caller: Caller, req: CloneKeyRequest, onCreate?: CreateListener): Promise<KeyMeta> {
    return this.deriveKey(caller, req, "fresh-material", onCreate);
  }

  async createGrant(caller: Caller, req: CreateGrantRequest): Promise<Grant> {
    const r = validateRequestObject(req);
    const keyId = validateUuid("key_id", r.keyId);
    const grantee = validateGrantee(r.grantee);
    const now = this.clock.now();
    const expiresAt = validateExpiresAt(r.expiresAt, now);
    const replication = this.replication;
    if (replication !== undefined) {
      return this.locks.run(keyId, async () => {
        const { k, doc } = await this.visibleDocument(replication, caller, keyId, false);
        this.requireNotDestroyed(doc.record);
        const live = doc.grants.filter((g) => grantIsLive(g, now.getTime())).length;
        // A replicated grant is never removed (revocation wins in the merge): revoked ones count too.
        if (live >= this.grantsPerKeyMax || doc.grants.length >= REPLICATED_GRANTS_MAX) {
          throw new LockboxError(
            "RESOURCE_EXHAUSTED",
            live >= this.grantsPerKeyMax
              ? `key ${keyId} has ${this.grantsPerKeyMax} live grants already`
              : `key ${keyId} has held ${REPLICATED_GRANTS_MAX} grants (revoked ones included)`,
          );
        }
        // The grant id carries its key's placement, so RevokeGrant finds the key's partition from it.
        const id = placedKeyId(keyIdPlacement(keyId) ?? 0, this.random.bytes(KEY_ID_RANDOM_BYTES));
        const grant: Grant = { id, keyId, grantee, grantedBy: caller.identity, createdAt: now, expiresAt };
        await replication.write(withGrant(k, grant));
        return grant;
      });
    }
    return this.locks.run(keyId, async () => {
      const record = await this.loadVisible(caller, keyId, false);
      this.requireNotDestroyed(record);
      const keys = await this.keks.getExisting(record.project);
      // Only live grants count; revoked and expired ones are reclaimed in the same batch.
      const reclaim = [];
      let live = 0;
      // Counting needs no MAC (a damaged grant still counts); only what is deleted is authenticated.
      for (const parsed of await this.grants.ofKey(keyId)) {
        if (grantIsLive(parsed.unverified, now.getTime())) live += 1;
        else reclaim.push(...this.grants.deleteOps(this.authenticGrant(parsed, keys, keyId)));
      }
      if (live >= this.grantsPerKeyMax) {
        await this.store.write(reclaim);
        throw new LockboxError(
          "RESOURCE_EXHAUSTED",
          `key ${keyId} has ${this.grantsPerKeyMax} live grants already`,
        );
      }
      const id = randomUuid(this.random);
      const grant: Grant = { id, keyId, grantee, grantedBy: caller.identity, createdAt: now, expiresAt };
      await this.store.write([...reclaim, ...this.grants.putOps(grant, keys, true)]);
      return grant;
    });
  }

  /**
   * Revoking a revoked grant returns it unchanged until the next CreateGrant on its key reclaims
   * it (NOT_FOUND after that). Grants of keys the caller may not see are NOT_FOUND.
   */
  async revokeGrant(caller: Caller, req: RevokeGrantRequest): Promise<Grant> {
    const grantId = validateUuid("grant_id", validateRequestObject(req).grantId);
    this.barrier.requireUnsealed();
    if (this.replication !== undefined) return this.revokeReplicated(this.replication, caller, grantId);
    const location = await this.grants.locationOf(grantId);
    if (location === undefined) throw notFound(`grant ${grantId}`);
    return this.locks.run(location.keyId, async () => {
      let record: KeyRecord;
      try {
        record = await this.loadVisible(caller, location.keyId, false);
      } catch (e) {
        if (e instanceof LockboxError && e.code === "NOT_FOUND") throw notFound(`grant ${grantId}`);
        throw e;
      }
      const parsed = await this.grants.load(location, grantId);
      // Reclaimed by a CreateGrant while this call waited for the key's lock.
      if (parsed === undefined) throw notFound(`grant ${grantId}`);
      const keys = await this.keks.getExisting(record.project);
      const grant = this.authenticGrant(parsed, keys, location.keyId);
      if (grant.id !== grantId || grant.grantee !== location.grantee) {
        throw new LockboxError("DATA_LOSS", `integrity check failed for grant ${grantId}`);
      }
      if (grant.revokedAt !== undefined) return grant;
      const revoked: Grant = { ...grant, revokedAt: this.clock.now() };
      await this.store.write(this.grants.putOps(revoked, keys, false));
      return revoked;
    });
  }

  /**
   * Records that `ref` uses the key. Adding a consumer that is there already changes nothing
   * (`changed` false); a key holds at most consumersPerKeyMax (RESOURCE_EXHAUSTED beyond).
   */
  async addConsumer(caller: Caller, req: ConsumerRequest): Promise<ConsumersResponse> {
    const { keyId, ref } = validateConsumerRequest(req);
    const replication = this.replication;
    if (replication !== undefined) {
      checkConsumerFits(ref);
      return this.locks.run(keyId, async () => {
        const { k, doc } = await this.visibleDocument(replication, caller, keyId, false);
        this.requireNotDestroyed(doc.record);
        if (doc.consumers.some((c) => sameConsumer(c, ref)))
          return { key: toKeyMeta(doc.record), consumers: doc.consumers, changed: false };
        if (
          doc.consumers.length >= this.consumersPerKeyMax ||
          k.consumers.length >= REPLICATED_CONSUMERS_MAX
        ) {
          throw new LockboxError(
            "RESOURCE_EXHAUSTED",
            `key ${keyId} has ${this.consumersPerKeyMax} consumers already`,
          );
        }
        const next = withConsumer(k, ref, true, replication.stamp());
        await replication.write(next);
        return { key: toKeyMeta(doc.record), consumers: documentOf(next).consumers, changed: true };
      });
    }
    return this.locks.run(keyId, async () => {
      const record = await this.loadVisible(caller, keyId, false);
      this.requireNotDestroyed(record);
      const keys = await this.keks.getExisting(record.project);
      const consumers = await this.authenticConsumers(keyId, keys);
      if (consumers.some((c) => sameConsumer(c, ref))) {
        return { key: toKeyMeta(record), consumers, changed: false };
      }
      if (consumers.length >= this.consumersPerKeyMax) {
        throw new LockboxError(
          "RESOURCE_EXHAUSTED",
          `key ${keyId} has ${this.consumersPerKeyMax} consumers already`,
        );
      }
      const consumer: Consumer = { ...ref, createdAt: this.clock.now() };
      await this.store.write(this.consumers.putOps(keyId, consumer, keys));
      consumers.push(consumer);
      consumers.sort(compareConsumers);
      return { key: toKeyMeta(record), consumers, changed: true };
    });
  }

  /** Removes a consumer; removing one that is not there changes nothing (`changed` false). */
  async removeConsumer(caller: Caller, req: ConsumerRequest): Promise<ConsumersResponse> {
    const { keyId, ref } = validateConsumerRequest(req);
    const replication = this.replication;
    if (replication !== undefined) {
      return this.locks.run(keyId, async () => {
        const { k, doc } = await this.visibleDocument(replication, caller, keyId, false);
        this.requireNotDestroyed(doc.record);
        if (!doc.consumers.some((c) => sameConsumer(c, ref)))
          return { key: toKeyMeta(doc.record), consumers: doc.consumers, changed: false };
        const next = withConsumer(k, ref, false, replication.stamp());
        await replication.write(next);
        return { key: toKeyMeta(doc.record), consumers: documentOf(next).consumers, changed: true };
      });
    }
    return this.locks.run(keyId, async () => {
      const record = await this.loadVisible(caller, keyId, false);
      this.requireNotDestroyed(record);
      const keys = await this.keks.getExisting(record.project);
      const consumers = await this.authenticConsumers(keyId, keys);
      const at = consumers.findIndex((c) => sameConsumer(c, ref));
      if (at < 0) return { key: toKeyMeta(record), consumers, changed: false };
      await this.store.write(this.consumers.deleteOps(keyId, ref));
      consumers.splice(at, 1);
      return { key: toKeyMeta(record), consumers, changed: true };
    });
  }

  /** Every consumer of a key (none once it is destroyed: a forced delete removes them). */
  async listConsumers(caller: Caller, req: KeyConsumersRequest): Promise<ConsumersResponse> {
    const keyId = validateUuid("key_id", validateRequestObject(req).keyId);
    if (this.replication !== undefined) {
      const { doc } = await this.visibleDocument(this.replication, caller, keyId, false);
      return { key: toKeyMeta(doc.record), consumers: doc.consumers, changed: false };
    }
    const record = await this.loadVisible(caller, keyId, false);
    const keys = await this.keks.getExisting(record.project);
    return { key: toKeyMeta(record), consumers: await this.authenticConsumers(keyId, keys), changed: false };
  }

  /**
   * Keys that are not destroyed, records found damaged (unparseable) by the count at open, and
   * the store's purges of destroyed material.
   */
  stats(): { keyCount: number; damagedRecordsAtOpen: number; purge: PurgeStatus } {
    return {
      keyCount: this.liveKeyCount,
      damagedRecordsAtOpen: this.damagedRecordsAtOpen,
      purge: this.store.purgeStatus(),
    };
  }

  /** Stored client request ids (for tests and status). */
  clientRequestCount(): number {
    return this.clientRequests.size;
  }

  /** Resolves once background work (reclaiming client request ids) has finished; for tests. */
  idle(): Promise<void> {
    return this.clientRequests.idle();
  }

  /** Stops background work and zeroes the cached project KEKs. Does not close the store or seal the barrier. */
  async close(): Promise<void> {
    await this.clientRequests.close();
    await this.keks.zeroize();
  }

  // ---- helpers ----

  /**
   * Clone and rekey: the new key keeps the parent's project, scope (hence its partition), secret
   * type, algorithm, bit length and expiration. Fresh material is only for symmetric keys: an
   * opaque or passphrase secret has no generator (FAILED_PRECONDITION).
   */
  private async deriveKey(
    caller: Caller,
    req: CloneKeyRequest,
    material: "same-material" | "fresh-material",
    onCreate: CreateListener | undefined,
  ): Promise<KeyMeta> {
    const r = validateRequestObject(req);
    const id = validateUuid("id", r.id);
    const name = validateOptionalName("name", r.name);
    const requestId = validateClientRequestId(r.clientRequestId);
    const method = material === "same-material" ? "CloneKey" : "RekeyClone";
    const body: RequestBody = { method, attributes: { id, name: name ?? "" } };
    const derive = (dedup: Dedup | undefined): Promise<KeyMeta> =>
      this.locks.run(id, async () => {
        const parent = await this.loadVisible(caller, id, false);
        const bytes =
          material === "same-material" ? await this.unwrapMaterial(parent) : this.freshMaterial(parent);
        try {
          const { project, scope, secretType, algorithm, bitLength, expiresAt } = parent;
          const fields: NewKeyFields = {
            project,
            scope,
            name: name ?? parent.name,
            secretType,
            algorithm,
            bitLength,
            parentId: parent.id,
            expiresAt,
          };
          return await this.insert(caller, fields, bytes, dedup, onCreate);
        } finally {
          zeroize(bytes);
        }
      });
    if (requestId === undefined) return derive(undefined);
    // The project whose record key fingerprints the request is the parent's; it is known once the
    // parent is read, and a retry finds it in the stored entry.
    return this.deduplicated(caller, requestId, undefined, body, derive);
  }

  private freshMaterial(parent: KeyRecord): Uint8Array {
    this.requireNotDestroyed(parent);
    if (parent.secretType !== "symmetric") {
      throw new LockboxError(
        "FAILED_PRECONDITION",
        `key ${parent.id} is a ${parent.secretType} secret: only symmetric keys can be rekeyed`,
      );
    }
    return this.random.bytes(parent.bitLength / 8);
  }

  /** CreateKey's material is drawn here and zeroed once wrapped. */
  private async insertFresh(
    caller: Caller,
    fields: NewKeyFields,
    dedup: Dedup | undefined,
    onCreate: CreateListener | undefined,
  ): Promise<KeyMeta> {
    const material = this.random.bytes(fields.bitLength / 8);
    try {
      return await this.insert(caller, fields, material, dedup, onCreate);
    } finally {
      zeroize(material);
    }
  }

  /**
   * Runs a create-like call once per (identity, client request id): without an id it just runs;
   * with one, under that id's lock, an unexpired entry answers instead (the key it names, or
   * INVALID_ARGUMENT if the request differs), and otherwise `run` writes the entry in the same
   * batch as the key. `project` is the request's project when known before `run` (create, import).
   */
  private async deduplicated(
    caller: Caller,
    requestId: string | undefined,
    project: string | undefined,
    body: RequestBody,
    run: (dedup: Dedup | undefined) => Promise<KeyMeta>,
  ): Promise<KeyMeta> {
    if (requestId === undefined) return run(undefined);
    return this.locks.run(clientRequestLock(caller.identity, requestId), async () => {
      this.barrier.requireUnsealed();
      const parsed = await this.clientRequests.find(caller.identity, requestId, this.clock.now().getTime());
      if (parsed === undefined) return run({ requestId, body });
      const entry = await this.authenticClientRequest(parsed);
      const keys = await this.keks.getExisting(entry.project);
      const same =
        entry.method === body.method &&
        (project === undefined || entry.project === project) &&
        entry.fingerprint === requestFingerprint(keys, body);
      if (!same) throw requestIdReused(caller, entry.method, this.clientRequests.ttlMs);
      // The key the first attempt made, as it is now (a retry after a delete sees the tombstone).
      return toKeyMeta(await this.loadVisible(caller, entry.keyId, false));
    });
  }

  private async authenticClientRequest(
    parsed: Unauthenticated<ClientRequestEntry>,
  ): Promise<ClientRequestEntry> {
    const { identity, requestId, project } = parsed.unverified;
    const where = `${identity}/${requestId}`;
    let keys: ProjectKeys;
    try {
      keys = await this.keks.getExisting(project);
    } catch (e) {
      if (e instanceof LockboxError && e.code === "DATA_LOSS") {
        throw new LockboxError("DATA_LOSS", `integrity check failed for client request ${where}`, undefined, {
          cause: e,
        });
      }
      throw e;
    }
    return authenticateClientRequest(parsed, keys.recordMacKey, where);
  }

  /** The key's consumers, authenticated and sorted; DATA_LOSS if any fails or names another key. */
  private async authenticConsumers(keyId: string, keys: ProjectKeys): Promise<Consumer[]> {
    const out: Consumer[] = [];
    for (const parsed of await this.consumers.ofKey(keyId)) {
      const stored = authenticateConsumer(parsed, keys.recordMacKey, keyId);
      if (stored.keyId !== keyId) {
        throw new LockboxError(
          "DATA_LOSS",
          `integrity check failed for a consumer of key ${keyId} (another key's)`,
        );
      }
      out.push(stored.consumer);
    }
    return out.sort(compareConsumers);
  }

  /**
   * Writes a new active key with `material` (wrapped here; the caller still owns `material`), and
   * the client request entry `dedup` asks for, in one batch.
   */
  private async insert(
    caller: Caller,
    fields: NewKeyFields,
    material: Uint8Array,
    dedup: Dedup | undefined,
    onCreate: CreateListener | undefined,
  ): Promise<KeyMeta> {
    if (fields.secretType === "symmetric" && material.length * 8 !== fields.bitLength)
      throw new Error("material length does not match bit length");
    this.barrier.requireUnsealed();
    const keys = await this.keks.getOrCreate(fields.project);
    const now = this.clock.now();
    const record: KeyRecord = {
      // The id carries the placement of (project, scope): a scope's keys and clones share a partition.
      // On the ring, a request id's key has an id derived from the request (client-requests.ts), so a
      // retry through another peer makes a rival version of this key, not a second key.
      id:
        this.replication !== undefined && dedup !== undefined
          ? requestKeyId(this.clusterSalt, caller.identity, dedup.requestId, fields.project, fields.scope)
          : placedKeyId(
              scopeHash32(this.clusterSalt, fields.project, fields.scope),
              this.random.bytes(KEY_ID_RANDOM_BYTES),
            ),
      project: fields.project,
      scope: fields.scope,
      name: fields.name,
      secretType: fields.secretType,
      algorithm: fields.algorithm,
      bitLength: fields.bitLength,
      parentId: fields.parentId,
      createdAt: now,
      updatedAt: now,
      state: "active",
    };
    if (fields.expiresAt !== undefined) record.expiresAt = new Date(fields.expiresAt.getTime());
    // A repeated id would overwrite another key; with a sound RandomSource this never happens. (On
    // the ring a repeated id cannot overwrite: the replicas refuse a second material as a conflict.)
    if (this.replication === undefined && (await this.records.load(record.id)) !== undefined) {
      throw new LockboxError(
        "INTERNAL",
        `generated key id ${record.id} already exists (broken RandomSource?)`,
      );
    }
    // The barrier may have sealed (zeroing `kek`) during the awaits above: check again, with no
    // await between this check and the wrap. sealEnvelope also refuses a zeroed key.
    this.barrier.requireUnsealed();
    record.wrappedMaterial = sealEnvelope(
      keys.kek,
      KEK_GENERATION,
      material,
      materialBinding(record),
      this.random,
    );
    if (this.replication !== undefined)
      return this.insertReplicated(this.replication, caller, record, keys, dedup, now, onCreate);
    const ops = this.records.putOps(record, keys, true);
    let entry: ClientRequestEntry | undefined;
    if (dedup !== undefined) {
      entry = {
        identity: caller.identity,
        requestId: dedup.requestId,
        method: dedup.body.method,
        project: record.project,
        keyId: record.id,
        fingerprint: requestFingerprint(keys, dedup.body),
        createdAt: now,
      };
      ops.push(...this.clientRequests.putOps(entry, keys));
    }
    onCreate?.({ id: record.id, project: record.project });
    await this.store.write(ops);
    this.liveKeyCount += 1;
    if (entry !== undefined) this.clientRequests.written(entry, now.getTime());
    return toKeyMeta(record);
  }

  /**
   * insert, on the ring: the new record is acknowledged by a write quorum first, then the client
   * request entry is written to this peer's store. A create with a request id whose write failed
   * UNAVAILABLE (its copies may have landed on some replicas) is remembered, and a retry of the same
   * request through this peer sends that same record again (same id, material and stamps: a merge
   * changes nothing) instead of minting a second key.
   *
   * Through another peer (or after a restart), the retry's record has the same id (requestKeyId) and
   * carries the request's fingerprint: replicas holding the first attempt's version refuse it as a
   * rival (ALREADY_EXISTS), and the id is settled (coordinator.ts): the answer is the version the id
   * keeps, the first attempt's if it was acknowledged, or INVALID_ARGUMENT when that version was
   * made by a different request with the same request id.
   */
  private async insertReplicated(
    replication: KeyReplication,
    caller: Caller,
    record: KeyRecord,
    keys: ProjectKeys,
    dedup: Dedup | undefined,
    now: Date,
    onCreate: CreateListener | undefined,
  ): Promise<KeyMeta> {
    const nowMs = now.getTime();
    const pendingKey = dedup === undefined ? undefined : clientRequestLock(caller.identity, dedup.requestId);
    const fingerprint = dedup === undefined ? "" : requestFingerprint(keys, dedup.body);
    const pending = pendingKey === undefined ? undefined : this.pendingCreates.get(pendingKey);
    const retry =
      pending !== undefined &&
      pending.fingerprint === fingerprint &&
      pending.record.fields.project === record.project &&
      nowMs - pending.atMs < this.clientRequests.ttlMs;
    const k = retry
      ? pending.record
      : newReplicatedKey(record, replication.stamp(), dedup === undefined ? undefined : fingerprint);
    let stored: KeyRecord;
    try {
      // A retry's record has this record's id too (derived from the request, client-requests.ts).
      onCreate?.({ id: record.id, project: record.project });
      await replication.write(k);
      stored = documentOf(k).record;
    } catch (e) {
      if (dedup !== undefined && e instanceof LockboxError && e.code === "ALREADY_EXISTS") {
        if (pendingKey !== undefined) this.pendingCreates.delete(pendingKey);
        const kept = await replication.settle(record.id);
        // Settling found no version at all: every copy is gone (reclaimed); this attempt's may go on.
        if (kept === null) throw new LockboxError("UNAVAILABLE", `key ${record.id}: retry the request`);
        if (kept.fields.request !== fingerprint) throw requestIdReused(caller);
        return this.answerSettled(caller, kept, keys, dedup, now);
      }
      if (pendingKey !== undefined && e instanceof LockboxError && e.code === "UNAVAILABLE") {
        this.pendingCreates.delete(pendingKey);
        const oldest = this.pendingCreates.keys().next();
        if (this.pendingCreates.size >= PENDING_CREATES_MAX && oldest.done !== true)
          this.pendingCreates.delete(oldest.value);
        this.pendingCreates.set(pendingKey, { fingerprint, record: k, atMs: retry ? pending.atMs : nowMs });
      }
      throw e;
    }
    if (pendingKey !== undefined) this.pendingCreates.delete(pendingKey);
    if (dedup !== undefined) {
      const entry: ClientRequestEntry = {
        identity: caller.identity,
        requestId: dedup.requestId,
        method: dedup.body.method,
        project: stored.project,
        keyId: stored.id,
        fingerprint,
        createdAt: now,
      };
      // Not awaited: the entry is only the fast answer to a retry through this peer. The reply may
      // precede its sync (the call's audit record was queued when the write began); if a crash
      // loses it, a retry is still answered with this key, by the derived id and the settle above.
      void this.store.write(this.clientRequests.putOps(entry, keys)).then(
        () => this.clientRequests.written(entry, nowMs),
        () => {},
      );
    }
    this.liveKeyCount += 1;
    return toKeyMeta(stored);
  }

  /** The answer to a create whose id another attempt of the same request settled: that key, as it is now. */
  private async answerSettled(
    caller: Caller,
    kept: ReplicatedKey,
    keys: ProjectKeys,
    dedup: Dedup,
    now: Date,
  ): Promise<KeyMeta> {
    const stored = documentOf(kept).record;
    const entry: ClientRequestEntry = {
      identity: caller.identity,
      requestId: dedup.requestId,
      method: dedup.body.method,
      project: stored.project,
      keyId: stored.id,
      fingerprint: kept.fields.request!,
      createdAt: now,
    };
    await this.store.write(this.clientRequests.putOps(entry, keys));
    this.clientRequests.written(entry, now.getTime());
    return toKeyMeta(stored);
  }

  /**
   * Loads and authenticates a key the caller may see (or holds a live grant on, when `viaGrant`);
   * NOT_FOUND otherwise. The record and the caller's own grants are read together, and nothing is
   * authenticated until access is established, so a caller without access costs one record read
   * and one short range read whether the key exists, has grants or not.
   */
  private async loadVisible(
    caller: Caller,
    id: string,
    viaGrant: boolean,
    options: { allowExpired?: boolean } = {},
  ): Promise<KeyRecord> {
    const record = await this.loadAccessible(caller, id, viaGrant);
    if (options.allowExpired !== true && isExpired(record, this.clock.now().getTime())) {
      throw new LockboxError("NOT_FOUND", `key ${id} expired at ${record.expiresAt!.toISOString()}`);
    }
    return record;
  }

  private async loadAccessible(caller: Caller, id: string, viaGrant: boolean): Promise<KeyRecord> {
    this.barrier.requireUnsealed();
    if (this.replication !== undefined)
      return (await this.accessibleDocument(this.replication, caller, id, viaGrant)).doc.record;
    const [parsed, ownGrants] = await Promise.all([
      this.records.loadUnauthenticated(id),
      // An admin sees every key: no grant could matter, and no existence is hidden from it.
      viaGrant && caller.role !== "admin" ? this.grants.ofGrantee(id, caller.identity) : Promise.resolve([]),
    ]);
    if (parsed === undefined) throw notFound(`key ${id}`);
    if (callerMaySee(caller, parsed.unverified.project)) return this.records.authenticate(parsed);
    if (ownGrants.length === 0) throw notFound(`key ${id}`);
    const record = await this.records.authenticate(parsed);
    const keys = await this.keks.getExisting(record.project);
    const nowMs = this.clock.now().getTime();
    for (const g of ownGrants) {
      const grant = this.authenticGrant(g, keys, id);
      if (grant.grantee === caller.identity && grantIsLive(grant, nowMs)) return record;
    }
    throw notFound(`key ${id}`);
  }

  // ---- keys on the ring (key-replication.ts) ----

  /** As loadVisible, on the ring: the document and the version it was read at. */
  private async visibleDocument(
    replication: KeyReplication,
    caller: Caller,
    id: string,
    viaGrant: boolean,
    options: { allowExpired?: boolean } = {},
  ): Promise<{ k: ReplicatedKey; doc: KeyDocument }> {
    this.barrier.requireUnsealed();
    const found = await this.accessibleDocument(replication, caller, id, viaGrant);
    const record = found.doc.record;
    if (options.allowExpired !== true && isExpired(record, this.clock.now().getTime())) {
      throw new LockboxError("NOT_FOUND", `key ${id} expired at ${record.expiresAt!.toISOString()}`);
    }
    return found;
  }

  /**
   * As loadAccessible, on the ring: one quorum read gives the record with its grants, so a caller
   * without access costs that one read whether the key exists or not. A record whose id, or whose
   * partition, is not the one asked for is never served (the replicas check it, and so does this).
   */
  private async accessibleDocument(
    replication: KeyReplication,
    caller: Caller,
    id: string,
    viaGrant: boolean,
  ): Promise<{ k: ReplicatedKey; doc: KeyDocument }> {
    const k = await replication.read(id);
    if (k === null) throw notFound(`key ${id}`);
    if (k.fields.id !== id) throw new LockboxError("DATA_LOSS", `integrity check failed for key ${id}`);
    const doc = documentOf(k);
    if (callerMaySee(caller, doc.record.project)) return { k, doc };
    if (viaGrant && caller.role !== "admin") {
      const nowMs = this.clock.now().getTime();
      if (doc.grants.some((g) => g.grantee === caller.identity && grantIsLive(g, nowMs))) return { k, doc };
    }
    throw notFound(`key ${id}`);
  }

  /**
   * ListKeys on the ring. With a scope: its one partition, read from a read quorum of its primaries.
   * Without: every partition in order, LIST_PARTITIONS_AT_ONCE at a time, until the page is full; the
   * page token names the partition and the last id returned. Each partition read merges a read quorum,
   * so every key acknowledged before the call is found.
   */
  private async listReplicated(
    replication: KeyReplication,
    project: string,
    scope: string,
    pageSize: number,
    token: string,
  ): Promise<ListKeysResponse> {
    const partitions = partitionCount(this.partitionPower);
    let startPartition =
      scope === "" ? 0 : scopePartition(this.clusterSalt, project, scope, this.partitionPower);
    let afterId = "";
    if (token !== "") {
      const payload = verifyPageToken(this.barrier, "list-keys-ring", token);
      const partition = Number(payload.q);
      if (
        payload.p !== project ||
        payload.s !== scope ||
        !Number.isInteger(partition) ||
        partition < 0 ||
        partition >= partitions ||
        (scope !== "" && partition !== startPartition) ||
        typeof payload.a !== "string"
      ) {
        throw invalidArgument("page_token", "was issued for another listing");
      }
      startPartition = partition;
      afterId = payload.a;
    }
    this.barrier.requireUnsealed();
    const endPartition = scope === "" ? partitions : startPartition + 1;
    const nowMs = this.clock.now().getTime();
    const found: { partition: number; record: KeyRecord }[] = [];
    let next = startPartition;
    while (next < endPartition && found.length <= pageSize) {
      const window: number[] = [];
      for (let p = next; p < Math.min(endPartition, next + LIST_PARTITIONS_AT_ONCE); p++) window.push(p);
      next += window.length;
      const read = await Promise.all(window.map((p) => replication.readPartition(p)));
      read.forEach((records, i) => {
        const partition = window[i]!;
        const rows = records
          .filter((k) => k.fields.project === project && (scope === "" || k.fields.scope === scope))
          .filter((k) => partition !== startPartition || k.fields.id > afterId)
          .sort((a, b) => (a.fields.id < b.fields.id ? -1 : 1));
        for (const k of rows) found.push({ partition, record: documentOf(k).record });
      });
    }
    const page = found.slice(0, pageSize);
    const last = page[page.length - 1];
    const more = found.length > pageSize || (next < endPartition && last !== undefined);
    const nextPageToken =
      more && last !== undefined
        ? signPageToken(this.barrier, "list-keys-ring", {
            p: project,
            s: scope,
            q: String(last.partition),
            a: last.record.id,
          })
        : "";
    // Expired keys are not served; the page is shorter rather than read further (bounded work).
    return {
      keys: page
        .map((f) => f.record)
        .filter((r) => !isExpired(r, nowMs))
        .map(toKeyMeta),
      nextPageToken,
    };
  }

  /** RevokeGrant on the ring: the grant id carries its key's partition; that partition is read to find it. */
  private async revokeReplicated(
    replication: KeyReplication,
    caller: Caller,
    grantId: string,
  ): Promise<Grant> {
    const partition = partitionOfKeyId(this.clusterSalt, grantId, this.partitionPower);
    const holder = (await replication.readPartition(partition)).find((k) =>
      k.grants.some((g) => g.id === grantId),
    );
    if (holder === undefined) throw notFound(`grant ${grantId}`);
    const keyId = holder.fields.id;
    return this.locks.run(keyId, async () => {
      let found: { k: ReplicatedKey; doc: KeyDocument };
      try {
        found = await this.visibleDocument(replication, caller, keyId, false);
      } catch (e) {
        if (e instanceof LockboxError && e.code === "NOT_FOUND") throw notFound(`grant ${grantId}`);
        throw e;
      }
      const grant = found.doc.grants.find((g) => g.id === grantId);
      if (grant === undefined) throw notFound(`grant ${grantId}`);
      if (grant.revokedAt !== undefined) return grant;
      const next = withRevokedGrant(found.k, grantId, replication.stamp());
      await replication.write(next);
      return documentOf(next).grants.find((g) => g.id === grantId)!;
    });
  }

  /** An authenticated grant of `keyId`; DATA_LOSS if its MAC fails or it names another key. */
  private authenticGrant(parsed: Unauthenticated<Grant>, keys: ProjectKeys, keyId: string): Grant {
    const grant = authenticateGrant(parsed, keys.recordMacKey, parsed.unverified.id);
    if (grant.keyId !== keyId) {
      throw new LockboxError(
        "DATA_LOSS",
        `integrity check failed for grant ${grant.id} (stored under another key)`,
      );
    }
    return grant;
  }

  /** The key's plaintext material; FAILED_PRECONDITION if destroyed, DATA_LOSS if it fails authentication. */
  private async unwrapMaterial(record: KeyRecord): Promise<Uint8Array> {
    this.requireNotDestroyed(record);
    const { kek } = await this.keks.getExisting(record.project);
    try {
      return openEnvelope(kek, record.wrappedMaterial!, materialBinding(record));
    } catch (e) {
      if (e instanceof LockboxError && e.code === "DATA_LOSS") {
        throw new LockboxError("DATA_LOSS", `integrity check failed for key ${record.id}`, undefined, {
          cause: e,
        });
      }
      throw e;
    }
  }

  private requireNotDestroyed(record: KeyRecord): void {
    if (record.state === "destroyed" || record.wrappedMaterial === undefined) {
      throw new LockboxError("FAILED_PRECONDITION", `key ${record.id} destroyed`);
    }
  }

  private authorizeProject(caller: Caller, project: string): void {
    if (!callerMaySee(caller, project)) {
      throw new LockboxError(
        "PERMISSION_DENIED",
        `identity ${caller.identity} may not use project ${project}`,
      );
    }
  }
}

/**
 * A client request id used again for a different request. On one peer the entry names its method
 * and lasts `ttlMs`; on the ring the key itself keeps the request's fingerprint for as long as it
 * exists.
 */
function requestIdReused(caller: Caller, method?: string, ttlMs?: number): LockboxError {
  const first = method === undefined ? "" : ` (${method})`;
  const when =
    ttlMs === undefined ? " whose key still exists" : ` within the last ${Math.round(ttlMs / 3600_000)} h`;
  return invalidArgument(
    "client_request_id",
    `was used by ${caller.identity} for a different request${first}${when}; use a new id for a new request`,
  );
}

/** Past its expiration at `nowMs` (a key without one never expires). */
function isExpired(r: KeyMeta, nowMs: number): boolean {
  return r.expiresAt !== undefined && nowMs >= r.expiresAt.getTime();
}

/** What a new key's fields contribute to a request fingerprint. */
function fieldsBody(f: NewKeyFields): Record<string, BindingValue> {
  const body: Record<string, BindingValue> = {
    project: f.project,
    scope: f.scope,
    name: f.name,
    secretType: f.secretType,
    algorithm: f.algorithm,
    bitLength: f.bitLength,
  };
  if (f.expiresAt !== undefined) body.expiresAtMs = f.expiresAt.getTime();
  return body;
}

function validateConsumerRequest(req: unknown): { keyId: string; ref: ConsumerRef } {
  const r = validateRequestObject(req);
  const keyId = validateUuid("key_id", r.keyId);
  return {
    keyId,
    ref: {
      service: validateConsumerField("service", r.service),
      resourceType: validateConsumerField("resource_type", r.resourceType),
      resourceId: validateConsumerField("resource_id", r.resourceId),
    },
  };
}

/** Unrevoked and not yet expired at `nowMs`. */
function grantIsLive(g: Grant, nowMs: number): boolean {
  return g.revokedAt === undefined && nowMs < g.expiresAt.getTime();
}
