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
 * - Stored material that fails authentication (moved, swapped or edited on disk) is DATA_LOSS
 *   "integrity check failed for key <id>"; another key's material is never returned.
 */
import type { Barrier } from "../crypto/barrier.js";
import { openEnvelope, sealEnvelope, type EnvelopeBinding } from "../crypto/envelope.js";
import { nodeRandomSource, randomUuid, zeroize, type RandomSource } from "../crypto/random-source.js";
import { invalidArgument, LockboxError, notFound } from "../errors.js";
import type { Caller } from "../identity/caller.js";
import type { PeerStore } from "../store/peer-store.js";
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
import { KEK_GENERATION, ProjectKeks } from "./project-keks.js";
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
}

/** What a key's wrapped material is bound to (the AAD): moving it to another record fails. */
const materialBinding = (
  r: Pick<KeyRecord, "id" | "project" | "algorithm" | "bitLength">,
): EnvelopeBinding => ({
  kind: "key-material",
  keyId: r.id,
  project: r.project,
  algorithm: r.algorithm,
  bitLength: r.bitLength,
});

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

  private constructor(options: KeyServiceOptions) {
    this.store = options.store;
    this.barrier = options.barrier;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? nodeRandomSource;
    this.records = new KeyRecordStore(this.store, options.clusterSalt, options.partitionPower);
    this.grants = new GrantStore(this.store);
    this.keks = new ProjectKeks(this.store, this.barrier, this.random);
    // Cached KEKs were unwrapped with the CMK: sealing the barrier must make them unusable too.
    this.barrier.onSeal(() => void this.keks.zeroize());
  }

  /** Opens the service over an open store; counts the live keys once. */
  static async open(options: KeyServiceOptions): Promise<KeyService> {
    const service = new KeyService(options);
    service.liveKeyCount = await service.records.countLive();
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
   * Tombstones the key and purges the overwritten record (with its wrapped material) from disk.
   * Deleting a destroyed key returns its tombstone unchanged (and purges again).
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
      // LevelDB keeps an overwritten version in its log and tables until a compaction merges it
      // with the newer one. Compacting first moves the old version out of the memtable into a
      // table, so the tombstone lands in a newer table above it and the second compaction merges
      // the two and drops the old one. (Were both flushed into one table, no compaction of the
      // range would ever drop it.) A retry re-writes the identical tombstone and purges again.
      await this.records.purgeOverwritten(id);
      await this.store.write(this.records.putOps(tombstone, false));
      if (wasLive) this.liveKeyCount -= 1;
      await this.records.purgeOverwritten(id);
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
      if ((await this.grants.countForKey(keyId)) >= GRANTS_PER_KEY_MAX) {
        throw new LockboxError("RESOURCE_EXHAUSTED", `key ${keyId} has ${GRANTS_PER_KEY_MAX} grants already`);
      }
      const id = randomUuid(this.random);
      const grant: Grant = { id, keyId, grantee, grantedBy: caller.identity, createdAt: now, expiresAt };
      await this.store.write(this.grants.putOps(grant, true));
      return grant;
    });
  }

  /** Revoking a revoked grant returns it unchanged. Grants of keys the caller may not see are NOT_FOUND. */
  async revokeGrant(caller: Caller, req: RevokeGrantRequest): Promise<Grant> {
    const grantId = validateUuid("grant_id", validateRequestObject(req).grantId);
    this.barrier.requireUnsealed();
    const keyId = await this.grants.keyIdOf(grantId);
    if (keyId === undefined) throw notFound(`grant ${grantId}`);
    return this.locks.run(keyId, async () => {
      try {
        await this.loadVisible(caller, keyId, false);
      } catch (e) {
        if (e instanceof LockboxError && e.code === "NOT_FOUND") throw notFound(`grant ${grantId}`);
        throw e;
      }
      const grant = await this.grants.load(keyId, grantId);
      if (grant === undefined) throw new LockboxError("DATA_LOSS", `grant ${grantId} is indexed but missing`);
      if (grant.revokedAt !== undefined) return grant;
      const revoked: Grant = { ...grant, revokedAt: this.clock.now() };
      await this.store.write(this.grants.putOps(revoked, false));
      return revoked;
    });
  }

  /** Keys that are not destroyed. */
  stats(): { keyCount: number } {
    return { keyCount: this.liveKeyCount };
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
    const kek = await this.keks.getOrCreate(fields.project);
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
      kek,
      KEK_GENERATION,
      material,
      materialBinding(record),
      this.random,
    );
    await this.store.write(this.records.putOps(record, true));
    this.liveKeyCount += 1;
    return toKeyMeta(record);
  }

  /** Loads a key the caller may see (or holds a live grant on, when `viaGrant`); NOT_FOUND otherwise. */
  private async loadVisible(caller: Caller, id: string, viaGrant: boolean): Promise<KeyRecord> {
    this.barrier.requireUnsealed();
    const record = await this.records.load(id);
    if (record === undefined) throw notFound(`key ${id}`);
    if (callerMaySee(caller, record.project)) return record;
    if (viaGrant && (await this.grants.hasLive(caller.identity, id, this.clock.now().getTime())))
      return record;
    throw notFound(`key ${id}`);
  }

  /** The key's plaintext material; FAILED_PRECONDITION if destroyed, DATA_LOSS if it fails authentication. */
  private async unwrapMaterial(record: KeyRecord): Promise<Uint8Array> {
    this.requireNotDestroyed(record);
    const kek = await this.keks.getExisting(record.project);
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
