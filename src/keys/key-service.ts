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
 * - GetKey, CloneKey, RekeyClone and CreateGrant on a destroyed key are FAILED_PRECONDITION
 *   "key destroyed" for callers who may see the key. DeleteKey of a destroyed key returns the
 *   tombstone unchanged (idempotent); GetKeyMetadata and ListKeys show tombstones.
 * - Every request is validated completely before any read or write (see validation.ts).
 * - Every stored record and grant is authenticated (record-codec.ts) before any of it is
 *   returned, and the material's envelope is bound to the key's immutable fields: a record whose
 *   material or metadata was moved, swapped or edited on disk is DATA_LOSS "integrity check
 *   failed for key <id>"; another key's material, or a changed field, is never returned.
 * - A caller without access does the same work for an existing key, with or without grants, as
 *   for a missing id: one record read and one read of its own grants, no MAC checked.
 */
import type { Barrier } from "../crypto/barrier.js";
import { openEnvelope, sealEnvelope } from "../crypto/envelope.js";
import { nodeRandomSource, randomUuid, zeroize, type RandomSource } from "../crypto/random-source.js";
import { invalidArgument, LockboxError, notFound } from "../errors.js";
import type { Caller } from "../identity/caller.js";
import type { PeerStore } from "../store/peer-store.js";
import type { PurgeStatus } from "../store/purger.js";
import { systemClock, type Clock } from "../time/clock.js";
import { GRANTS_PER_KEY_MAX, GrantStore } from "./grant-store.js";
import {
  callerMaySee,
  toKeyMeta,
  type CloneKeyRequest,
  type CreateGrantRequest,
  type CreateKeyRequest,
  type GetKeyResponse,
  type Grant,
  type ImportKeyRequest,
  type KeyIdRequest,
  type KeyMeta,
  type KeyRecord,
  type ListKeysRequest,
  type ListKeysResponse,
  type RevokeGrantRequest,
} from "./key-model.js";
import { KeyRecordStore, listingPrefix } from "./key-record-store.js";
import { KeyedMutex } from "./keyed-mutex.js";
import { signPageToken, verifyPageToken } from "./page-token.js";
import { KEK_GENERATION, ProjectKeks, type KekStore, type ProjectKeys } from "./project-keks.js";
import { authenticateGrant, materialBinding, type Unauthenticated } from "./record-codec.js";
import {
  validateAlgorithm,
  validateBitLength,
  validateExpiresAt,
  validateGrantee,
  validateMaterial,
  validateName,
  validateOptionalName,
  validatePageSize,
  validatePageTokenShape,
  validateProjectLike,
  validateRequestObject,
  validateUuid,
} from "./validation.js";

export { GRANTS_PER_KEY_MAX } from "./grant-store.js";

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
}

type NewKeyFields = Pick<KeyRecord, "project" | "scope" | "name" | "algorithm" | "bitLength" | "parentId">;

export class KeyService {
  private readonly store: PeerStore;
  private readonly barrier: Barrier;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly records: KeyRecordStore;
  private readonly grants: GrantStore;
  private readonly keks: ProjectKeks;
  /** Serialises read-modify-write work per key id (delete, clone, grant). */
  private readonly locks = new KeyedMutex();
  private liveKeyCount = 0;
  private damagedRecordsAtOpen = 0;
  private readonly grantsPerKeyMax: number;

  private constructor(options: KeyServiceOptions) {
    this.store = options.store;
    this.barrier = options.barrier;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? nodeRandomSource;
    this.keks = new ProjectKeks(this.store, this.barrier, this.random, options.kekStore);
    this.records = new KeyRecordStore(this.store, this.keks, options.clusterSalt, options.partitionPower);
    this.grantsPerKeyMax = options.grantsPerKeyMax ?? GRANTS_PER_KEY_MAX;
    this.grants = new GrantStore(this.store, this.grantsPerKeyMax);
    // Cached KEKs were unwrapped with the CMK: sealing the barrier must make them unusable too.
    this.barrier.onSeal(() => void this.keks.zeroize());
  }

  /** Opens the service over an open store; counts the live keys once. */
  static async open(options: KeyServiceOptions): Promise<KeyService> {
    const service = new KeyService(options);
    const counted = await service.records.countLive();
    service.liveKeyCount = counted.live;
    service.damagedRecordsAtOpen = counted.damaged;
    return service;
  }

  async createKey(caller: Caller, req: CreateKeyRequest): Promise<KeyMeta> {
    const r = validateRequestObject(req);
    const project = validateProjectLike("project", r.project);
    const scope = validateProjectLike("scope", r.scope);
    const name = validateName("name", r.name);
    const algorithm = validateAlgorithm(r.algorithm);
    const bitLength = validateBitLength(r.bitLength);
    this.authorizeProject(caller, project);
    const material = this.random.bytes(bitLength / 8);
    try {
      return await this.insert({ project, scope, name, algorithm, bitLength, parentId: "" }, material);
    } finally {
      zeroize(material);
    }
  }

  /** The caller keeps ownership of `material` (it is not zeroed here). */
  async importKey(caller: Caller, req: ImportKeyRequest): Promise<KeyMeta> {
    const r = validateRequestObject(req);
    const project = validateProjectLike("project", r.project);
    const scope = validateProjectLike("scope", r.scope);
    const name = validateName("name", r.name);
    const algorithm = validateAlgorithm(r.algorithm);
    const material = validateMaterial(r.material);
    this.authorizeProject(caller, project);
    const bitLength = material.length === 16 ? 128 : 256;
    return this.insert({ project, scope, name, algorithm, bitLength, parentId: "" }, material);
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
    return { keys: page.records.map(toKeyMeta), nextPageToken };
  }

  /**
   * Tombstones the key; the overwritten record (with its wrapped material) leaves the disk within
   * the store's purge delay (PeerStore.write's purge targets). Deleting a destroyed key returns
   * its tombstone unchanged (and schedules the purge again).
   */
  async deleteKey(caller: Caller, req: KeyIdRequest): Promise<KeyMeta> {
    const id = validateUuid("id", validateRequestObject(req).id);
    return this.locks.run(id, async () => {
      const record = await this.loadVisible(caller, id, false);
      const wasLive = record.state !== "destroyed";
      // toKeyMeta drops wrappedMaterial: the tombstone holds no material at all.
      const tombstone: KeyRecord = wasLive
        ? { ...toKeyMeta(record), state: "destroyed", destroyedAt: this.clock.now() }
        : record;
      // LevelDB keeps the overwritten version in its log and tables until a compaction merges it
      // with the tombstone; the store's purger runs those compactions in batches.
      const keys = await this.keks.getExisting(record.project);
      const purge = [{ sublevel: "records" as const, key: this.records.recordKeyOf(id) }];
      await this.store.write(this.records.putOps(tombstone, keys, false), purge);
      if (wasLive) this.liveKeyCount -= 1;
      return toKeyMeta(tombstone);
    });
  }

  /** Same material under a new id (snapshots). */
  cloneKey(caller: Caller, req: CloneKeyRequest): Promise<KeyMeta> {
    return this.deriveKey(caller, req, "same-material");
  }

  /** Fresh material under a new id (a LUKS key change on clone). */
  rekeyClone(caller: Caller, req: CloneKeyRequest): Promise<KeyMeta> {
    return this.deriveKey(caller, req, "fresh-material");
  }

  async createGrant(caller: Caller, req: CreateGrantRequest): Promise<Grant> {
    const r = validateRequestObject(req);
    const keyId = validateUuid("key_id", r.keyId);
    const grantee = validateGrantee(r.grantee);
    const now = this.clock.now();
    const expiresAt = validateExpiresAt(r.expiresAt, now);
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

  /** Zeroes the cached project KEKs. Does not close the store or seal the barrier. */
  async close(): Promise<void> {
    await this.keks.zeroize();
  }

  // ---- helpers ----

  private async deriveKey(
    caller: Caller,
    req: CloneKeyRequest,
    material: "same-material" | "fresh-material",
  ): Promise<KeyMeta> {
    const r = validateRequestObject(req);
    const id = validateUuid("id", r.id);
    const name = validateOptionalName("name", r.name);
    return this.locks.run(id, async () => {
      const parent = await this.loadVisible(caller, id, false);
      const bytes =
        material === "same-material" ? await this.unwrapMaterial(parent) : this.freshMaterial(parent);
      try {
        const { project, scope, algorithm, bitLength } = parent;
        return await this.insert(
          { project, scope, name: name ?? parent.name, algorithm, bitLength, parentId: parent.id },
          bytes,
        );
      } finally {
        zeroize(bytes);
      }
    });
  }

  private freshMaterial(parent: KeyRecord): Uint8Array {
    this.requireNotDestroyed(parent);
    return this.random.bytes(parent.bitLength / 8);
  }

  /** Writes a new active key with `material` (wrapped here; the caller still owns `material`). */
  private async insert(fields: NewKeyFields, material: Uint8Array): Promise<KeyMeta> {
    if (material.length * 8 !== fields.bitLength)
      throw new Error("material length does not match bit length");
    this.barrier.requireUnsealed();
    const keys = await this.keks.getOrCreate(fields.project);
    const record: KeyRecord = {
      id: randomUuid(this.random),
      ...fields,
      createdAt: this.clock.now(),
      state: "active",
    };
    // A repeated id would overwrite another key; with a sound RandomSource this never happens.
    if ((await this.records.load(record.id)) !== undefined) {
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
    await this.store.write(this.records.putOps(record, keys, true));
    this.liveKeyCount += 1;
    return toKeyMeta(record);
  }

  /**
   * Loads and authenticates a key the caller may see (or holds a live grant on, when `viaGrant`);
   * NOT_FOUND otherwise. The record and the caller's own grants are read together, and nothing is
   * authenticated until access is established, so a caller without access costs one record read
   * and one short range read whether the key exists, has grants or not.
   */
  private async loadVisible(caller: Caller, id: string, viaGrant: boolean): Promise<KeyRecord> {
    this.barrier.requireUnsealed();
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

/** Unrevoked and not yet expired at `nowMs`. */
function grantIsLive(g: Grant, nowMs: number): boolean {
  return g.revokedAt === undefined && nowMs < g.expiresAt.getTime();
}
