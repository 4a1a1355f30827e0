/**
 * What the key service needs from replication (DESIGN §4) when keys live on the ring rather than in
 * this peer's store alone, and how its model (key-model.ts) maps onto the replicated record
 * (cluster/replication/replicated-key.ts). The peer wires the implementation (src/replication's
 * Coordinator behind a RingPlacement); the key service only reads and writes whole records:
 *
 * - a key's record, grants and consumers are one ReplicatedKey, so one quorum read serves an access
 *   check and one quorum write makes a change (every change is a new version merged on the replicas);
 * - the material stays wrapped under the project KEK, bound (envelope AAD) to the key's immutable
 *   fields, so a replica can neither read it nor move it to another record;
 * - grants are a set with revocations: a revoked grant is never removed, so it counts against the
 *   per-key bound (GRANTS_PER_KEY_MAX of the replicated record);
 * - a consumer's key in the record is the JSON array [service, resourceType, resourceId].
 */
import {
  latestStamp,
  type ConsumerEntry,
  type GrantEntry,
  type HlcStamp,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import { LockboxError } from "../errors.js";
import type { Consumer, ConsumerRef, Grant, KeyRecord } from "./key-model.js";

export interface KeyReplication {
  /** The merged record of `id` from a read quorum, or null when no replica holds it. UNAVAILABLE without quorum. */
  read(id: string): Promise<ReplicatedKey | null>;
  /** Resolves once a write quorum synced `record` (merged into what they hold). UNAVAILABLE without quorum. */
  write(record: ReplicatedKey): Promise<void>;
  /** Every record of `partition`, merged from a read quorum of its primaries. */
  readPartition(partition: number): Promise<ReplicatedKey[]>;
  /** A stamp for a change this peer makes now (hybrid logical clock, later than every stamp seen). */
  stamp(): HlcStamp;
  /**
   * The version `id` keeps among rival versions of its client request (src/replication/coordinator.ts
   * settle), written settled to a write quorum; null when no replica holds any. `write` fails
   * ALREADY_EXISTS when rivals kept it from a write quorum: the caller settles then.
   */
  settle(id: string): Promise<ReplicatedKey | null>;
}

/** The key service's view of a replicated record: the record, its grants and its consumers. */
export interface KeyDocument {
  record: KeyRecord;
  grants: Grant[];
  /** Present consumers only, sorted as compareConsumers does. */
  consumers: Consumer[];
}

/** The largest consumer entry key a replicated record can carry (its codec's string bound). */
export const CONSUMER_KEY_BYTES_MAX = 1024;

export function consumerKey(ref: ConsumerRef): string {
  return JSON.stringify([ref.service, ref.resourceType, ref.resourceId]);
}

/** INVALID_ARGUMENT when a consumer's fields together are too long for a replicated record. */
export function checkConsumerFits(ref: ConsumerRef): void {
  if (Buffer.byteLength(consumerKey(ref), "utf8") > CONSUMER_KEY_BYTES_MAX) {
    throw new LockboxError(
      "INVALID_ARGUMENT",
      `consumer fields together must be at most ${CONSUMER_KEY_BYTES_MAX - 10} bytes of UTF-8`,
      "resource_id",
    );
  }
}

function parseConsumerKey(key: string, keyId: string): ConsumerRef {
  let v: unknown;
  try {
    v = JSON.parse(key);
  } catch {
    v = undefined;
  }
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === "string")) {
    throw new LockboxError("DATA_LOSS", `a consumer of key ${keyId} is damaged`);
  }
  return { service: v[0] as string, resourceType: v[1] as string, resourceId: v[2] as string };
}

/** The key model of a replicated record. */
export function documentOf(k: ReplicatedKey): KeyDocument {
  const f = k.fields;
  const createdAt = new Date(f.createdAtMs);
  const record: KeyRecord = {
    id: f.id,
    project: f.project,
    scope: f.scope,
    name: f.name,
    secretType: (f.secretType ?? "symmetric") as KeyRecord["secretType"],
    algorithm: f.algorithm as KeyRecord["algorithm"],
    bitLength: f.bitLength,
    createdAt,
    updatedAt: k.tombstone === null ? createdAt : new Date(k.tombstone.wallMs),
    state: k.tombstone !== null ? "destroyed" : k.state.value,
    parentId: f.parentId,
  };
  if (f.expiresAtMs !== undefined) record.expiresAt = new Date(f.expiresAtMs);
  if (k.tombstone !== null) record.destroyedAt = new Date(k.tombstone.wallMs);
  if (k.wrappedMaterial !== null) record.wrappedMaterial = new Uint8Array(k.wrappedMaterial);
  const grants = k.grants.map((g): Grant => {
    const grant: Grant = {
      id: g.id,
      keyId: f.id,
      grantee: g.grantee,
      grantedBy: g.grantedBy,
      createdAt: new Date(g.createdAtMs),
      expiresAt: new Date(g.expiresAtMs),
    };
    if (g.revoked !== null) grant.revokedAt = new Date(g.revoked.wallMs);
    return grant;
  });
  const consumers = k.consumers
    .filter((c) => c.present)
    .map((c): Consumer => ({ ...parseConsumerKey(c.key, f.id), createdAt: new Date(c.stamp.wallMs) }));
  return { record, grants, consumers };
}

/**
 * The first version of a new key: `record` must hold its wrapped material. `request` is the
 * fingerprint of the client request that makes it, when it has an id derived from that request.
 */
export function newReplicatedKey(record: KeyRecord, stamp: HlcStamp, request?: string): ReplicatedKey {
  if (record.wrappedMaterial === undefined) throw new Error("a new key needs its wrapped material");
  const fields: ReplicatedKey["fields"] = {
    id: record.id,
    project: record.project,
    scope: record.scope,
    name: record.name,
    algorithm: record.algorithm,
    bitLength: record.bitLength,
    createdAtMs: record.createdAt.getTime(),
    parentId: record.parentId,
  };
  if (record.secretType !== "symmetric") fields.secretType = record.secretType;
  if (record.expiresAt !== undefined) fields.expiresAtMs = record.expiresAt.getTime();
  if (request !== undefined) fields.request = request;
  const k: ReplicatedKey = {
    fields,
    created: stamp,
    wrappedMaterial: new Uint8Array(record.wrappedMaterial),
    state: { value: "active", stamp },
    tombstone: null,
    grants: [],
    consumers: [],
  };
  if (request !== undefined) k.settled = false;
  return k;
}

/** The tombstone version: material gone, and (for a forced delete) every consumer removed. */
export function tombstoneOf(k: ReplicatedKey, stamp: HlcStamp): ReplicatedKey {
  return {
    ...k,
    wrappedMaterial: null,
    tombstone: stamp,
    consumers: k.consumers.map((c) => (c.present ? { key: c.key, present: false, stamp } : c)),
  };
}

/** `k` with one more grant (ids sorted, as the record requires). */
export function withGrant(k: ReplicatedKey, g: Grant): ReplicatedKey {
  const entry: GrantEntry = {
    id: g.id,
    grantee: g.grantee,
    grantedBy: g.grantedBy,
    createdAtMs: g.createdAt.getTime(),
    expiresAtMs: g.expiresAt.getTime(),
    revoked: null,
  };
  const grants = [...k.grants.filter((x) => x.id !== g.id), entry].sort((a, b) =>
    a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
  );
  return { ...k, grants };
}

/** `k` with grant `grantId` revoked at `stamp`. */
export function withRevokedGrant(k: ReplicatedKey, grantId: string, stamp: HlcStamp): ReplicatedKey {
  return {
    ...k,
    grants: k.grants.map((g) => (g.id === grantId && g.revoked === null ? { ...g, revoked: stamp } : g)),
  };
}

/** `k` with consumer `ref` present (add) or absent (remove) as of `stamp`. */
export function withConsumer(
  k: ReplicatedKey,
  ref: ConsumerRef,
  present: boolean,
  stamp: HlcStamp,
): ReplicatedKey {
  const key = consumerKey(ref);
  const entry: ConsumerEntry = { key, present, stamp };
  const consumers = [...k.consumers.filter((c) => c.key !== key), entry].sort((a, b) =>
    a.key < b.key ? -1 : a.key > b.key ? 1 : 0,
  );
  return { ...k, consumers };
}

/** The newest stamp a record carries (the HLC observes it before this peer changes the record). */
export const newestStamp = latestStamp;
