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
import { partitionOf } from "../../cluster/ring/partition.js";
import type { Barrier } from "../crypto/barrier.js";
import { openEnvelope, sealEnvelope, type EnvelopeBinding } from "../crypto/envelope.js";
import { nodeRandomSource, randomUuid, zeroize, type RandomSource } from "../crypto/random-source.js";
import { LockboxError, notFound } from "../errors.js";
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import { recordKey } from "../store/record-key.js";
import {
  callerMaySee,
  systemClock,
  toKeyMeta,
  type Caller,
  type CloneKeyRequest,
  type Clock,
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
import { KeyedMutex } from "./keyed-mutex.js";
import { signPageToken, verifyPageToken } from "./page-token.js";
import { KEK_GENERATION, ProjectKeks } from "./project-keks.js";
import { decodeGrant, decodeKeyRecord, encodeGrant, encodeKeyRecord } from "./record-codec.js";
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
import { invalidArgument } from "../errors.js";

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

/** Most grant records (live, expired or revoked) one key may accumulate. */
export const GRANTS_PER_KEY_MAX = 1000;

/** meta-sublevel key layout owned by the key service. */
const indexPrefix = (project: string): string => `idx/${project}/`;
const indexKey = (r: { project: string; scope: string; id: string }): string =>
  `${indexPrefix(r.project)}${r.scope}/${r.id}`;
const grantPrefix = (keyId: string): string => `grant/${keyId}/`;
const grantKey = (keyId: string, grantId: string): string => `${grantPrefix(keyId)}${grantId}`;
const grantIdKey = (grantId: string): string => `grant-id/${grantId}`;
/** The key after every key with this prefix ("/" + 1 = "0"). */
const prefixEnd = (prefix: string): string => `${prefix.slice(0, -1)}0`;

const materialBinding = (
  r: Pick<KeyRecord, "id" | "project" | "algorithm" | "bitLength">,
): EnvelopeBinding => ({
  kind: "key-material",
  keyId: r.id,
  project: r.project,
  algorithm: r.algorithm,
  bitLength: r.bitLength,
});

const EMPTY = new Uint8Array(0);

export class KeyService {
  private readonly store: PeerStore;
  private readonly barrier: Barrier;
  private readonly clusterSalt: Uint8Array;
  private readonly partitionPower: number;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly keks: ProjectKeks;
  private readonly locks = new KeyedMutex();
  private liveKeyCount = 0;

  private constructor(options: KeyServiceOptions) {
    this.store = options.store;
    this.barrier = options.barrier;
    this.clusterSalt = new Uint8Array(options.clusterSalt);
    this.partitionPower = options.partitionPower;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? nodeRandomSource;
    this.keks = new ProjectKeks(this.store, this.barrier, this.random);
    partitionOf(this.clusterSalt, "probe", this.partitionPower); // validates salt and power early
    // Cached KEKs were unwrapped with the CMK: sealing the barrier must make them unusable too.
    this.barrier.onSeal(() => void this.keks.zeroize());
  }

  /** Opens the service over an open store; counts the live keys once. */
  static async open(options: KeyServiceOptions): Promise<KeyService> {
    const service = new KeyService(options);
    for await (const value of service.store.sublevel("records").values()) {
      if (decodeKeyRecord(value, "(scan)").state !== "destroyed") service.liveKeyCount += 1;
    }
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
    if (record.state === "destroyed") throw new LockboxError("FAILED_PRECONDITION", `key ${id} destroyed`);
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
    const prefix = scope === "" ? indexPrefix(project) : `${indexPrefix(project)}${scope}/`;
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

    const range = after === undefined ? { gte: prefix } : { gt: after };
    const indexKeys = await this.store
      .sublevel("meta")
      .keys({ ...range, lt: prefixEnd(prefix), limit: pageSize + 1 })
      .all();
    const page = indexKeys.slice(0, pageSize);
    const ids = page.map((k) => k.slice(k.lastIndexOf("/") + 1));
    const values = await this.store.sublevel("records").getMany(ids.map((id) => this.recordKeyOf(id)));
    const keys = values.map((v, i) => {
      if (v === undefined)
        throw new LockboxError("DATA_LOSS", `key ${ids[i]} is listed but its record is missing`);
      return toKeyMeta(this.decodeRecord(v, ids[i]!));
    });
    const nextPageToken =
      indexKeys.length > pageSize
        ? signPageToken(this.barrier, "list-keys", { p: project, s: scope, a: page[page.length - 1]! })
        : "";
    return { keys, nextPageToken };
  }

  async deleteKey(caller: Caller, req: KeyIdRequest): Promise<KeyMeta> {
    const id = validateUuid("id", validateRequestObject(req).id);
    return this.locks.run(id, async () => {
      const record = await this.loadVisible(caller, id, false);
      if (record.state === "destroyed") return toKeyMeta(record);
      const tombstone: KeyRecord = {
        ...toKeyMeta(record),
        state: "destroyed",
        destroyedAt: this.clock.now(),
      };
      await this.store.write([this.putRecord(tombstone)]);
      this.liveKeyCount -= 1;
      return toKeyMeta(tombstone);
    });
  }

  cloneKey(caller: Caller, req: CloneKeyRequest): Promise<KeyMeta> {
    return this.deriveKey(caller, req, "same-material");
  }

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
      if (record.state === "destroyed")
        throw new LockboxError("FAILED_PRECONDITION", `key ${keyId} destroyed`);
      const existing = await this.store
        .sublevel("meta")
        .keys({ gte: grantPrefix(keyId), lt: prefixEnd(grantPrefix(keyId)), limit: GRANTS_PER_KEY_MAX })
        .all();
      if (existing.length >= GRANTS_PER_KEY_MAX) {
        throw new LockboxError("RESOURCE_EXHAUSTED", `key ${keyId} has ${GRANTS_PER_KEY_MAX} grants already`);
      }
      const grant: Grant = {
        id: randomUuid(this.random),
        keyId,
        grantee,
        grantedBy: caller.identity,
        createdAt: now,
        expiresAt,
      };
      await this.store.write([
        { type: "put", sublevel: "meta", key: grantKey(keyId, grant.id), value: encodeGrant(grant) },
        {
          type: "put",
          sublevel: "meta",
          key: grantIdKey(grant.id),
          value: new Uint8Array(Buffer.from(keyId)),
        },
      ]);
      return grant;
    });
  }

  async revokeGrant(caller: Caller, req: RevokeGrantRequest): Promise<Grant> {
    const grantId = validateUuid("grant_id", validateRequestObject(req).grantId);
    const keyIdBytes = await this.store.get("meta", grantIdKey(grantId));
    if (keyIdBytes === undefined) throw notFound(`grant ${grantId}`);
    const keyId = Buffer.from(keyIdBytes).toString("utf8");
    return this.locks.run(keyId, async () => {
      try {
        await this.loadVisible(caller, keyId, false);
      } catch (e) {
        if (e instanceof LockboxError && e.code === "NOT_FOUND") throw notFound(`grant ${grantId}`);
        throw e;
      }
      const stored = await this.store.get("meta", grantKey(keyId, grantId));
      if (stored === undefined)
        throw new LockboxError("DATA_LOSS", `grant ${grantId} is indexed but missing`);
      const grant = decodeGrant(stored, grantId);
      if (grant.revokedAt !== undefined) return grant;
      const revoked: Grant = { ...grant, revokedAt: this.clock.now() };
      await this.store.write([
        { type: "put", sublevel: "meta", key: grantKey(keyId, grantId), value: encodeGrant(revoked) },
      ]);
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
      if (parent.state === "destroyed") throw new LockboxError("FAILED_PRECONDITION", `key ${id} destroyed`);
      const bytes =
        material === "same-material"
          ? await this.unwrapMaterial(parent)
          : this.random.bytes(parent.bitLength / 8);
      try {
        return await this.insert(
          {
            project: parent.project,
            scope: parent.scope,
            name: name ?? parent.name,
            algorithm: parent.algorithm,
            bitLength: parent.bitLength,
            parentId: parent.id,
          },
          bytes,
        );
      } finally {
        zeroize(bytes);
      }
    });
  }

  /** Writes a new active key with `material` (wrapped here; the caller still owns `material`). */
  private async insert(
    fields: Pick<KeyRecord, "project" | "scope" | "name" | "algorithm" | "bitLength" | "parentId">,
    material: Uint8Array,
  ): Promise<KeyMeta> {
    if (material.length * 8 !== fields.bitLength)
      throw new Error("material length does not match bit length");
    const kek = await this.keks.getOrCreate(fields.project);
    const record: KeyRecord = {
      id: randomUuid(this.random),
      ...fields,
      createdAt: this.clock.now(),
      state: "active",
    };
    record.wrappedMaterial = sealEnvelope(
      kek,
      KEK_GENERATION,
      material,
      materialBinding(record),
      this.random,
    );
    await this.store.write([
      this.putRecord(record),
      { type: "put", sublevel: "meta", key: indexKey(record), value: EMPTY },
    ]);
    this.liveKeyCount += 1;
    return toKeyMeta(record);
  }

  /** Loads a key the caller may see (or holds a live grant on, when `viaGrant`); NOT_FOUND otherwise. */
  private async loadVisible(caller: Caller, id: string, viaGrant: boolean): Promise<KeyRecord> {
    this.barrier.requireUnsealed();
    const stored = await this.store.get("records", this.recordKeyOf(id));
    if (stored === undefined) throw notFound(`key ${id}`);
    const record = this.decodeRecord(stored, id);
    if (callerMaySee(caller, record.project)) return record;
    if (viaGrant && (await this.hasLiveGrant(caller.identity, id))) return record;
    throw notFound(`key ${id}`);
  }

  private async hasLiveGrant(identity: string, keyId: string): Promise<boolean> {
    const now = this.clock.now().getTime();
    const prefix = grantPrefix(keyId);
    for await (const [k, v] of this.store
      .sublevel("meta")
      .iterator({ gte: prefix, lt: prefixEnd(prefix), limit: GRANTS_PER_KEY_MAX })) {
      const g = decodeGrant(v, k);
      if (g.grantee === identity && g.revokedAt === undefined && now < g.expiresAt.getTime()) return true;
    }
    return false;
  }

  private async unwrapMaterial(record: KeyRecord): Promise<Uint8Array> {
    if (record.wrappedMaterial === undefined)
      throw new LockboxError("FAILED_PRECONDITION", `key ${record.id} destroyed`);
    const kek = await this.keks.getExisting(record.project);
    try {
      return openEnvelope(kek, record.wrappedMaterial, materialBinding(record));
    } catch (e) {
      if (e instanceof LockboxError && e.code === "DATA_LOSS") {
        throw new LockboxError("DATA_LOSS", `integrity check failed for key ${record.id}`, undefined, {
          cause: e,
        });
      }
      throw e;
    }
  }

  private decodeRecord(bytes: Uint8Array, id: string): KeyRecord {
    const record = decodeKeyRecord(bytes, id);
    if (record.id !== id)
      throw new LockboxError("DATA_LOSS", `integrity check failed for key ${id} (record names ${record.id})`);
    return record;
  }

  private authorizeProject(caller: Caller, project: string): void {
    if (!callerMaySee(caller, project)) {
      throw new LockboxError(
        "PERMISSION_DENIED",
        `identity ${caller.identity} may not use project ${project}`,
      );
    }
  }

  private recordKeyOf(id: string): string {
    return recordKey(partitionOf(this.clusterSalt, id, this.partitionPower), id, this.partitionPower);
  }

  private putRecord(record: KeyRecord): StoreOp {
    return {
      type: "put",
      sublevel: "records",
      key: this.recordKeyOf(record.id),
      value: encodeKeyRecord(record),
    };
  }
}
