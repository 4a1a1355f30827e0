/**
 * A key record as replicas hold it, and the merge that makes replicas agree (DESIGN §4). The record
 * is conflict-free: what a create writes (id, names, algorithm, wrapped material, the create stamp)
 * never changes; everything that can change is a field with its own join:
 *
 *   state      last writer wins by HLC stamp (ties: "deactivated" over "active")
 *   tombstone  destroyed wins over everything: once either side has it, the merge has it (the later
 *              stamp of the two), and the wrapped material is gone for good
 *   grants     a set by grant id; a grant's terms are immutable, its revocation wins once present
 *              (the earlier revocation stamp of the two)
 *   consumers  a last-writer-wins element set: per consumer, the entry with the later stamp
 *              (ties: removal wins)
 *
 * Each join is a semilattice join, so `mergeKeys` is commutative, associative and idempotent, and
 * replicas that have seen the same writes in any order, any number of times, hold equal records.
 * Two versions that disagree on an immutable part are not merged (CONFLICT): one of them is damaged
 * or forged, and picking either could serve the wrong material.
 *
 * Rival versions. A key made by a create with a client request id carries that request's
 * fingerprint (`fields.request`) and an id derived from the request (src/keys/client-requests.ts),
 * so a retry through another peer makes a version of the SAME id, with other material. Such
 * versions are rivals, not damage, and settle by one rule: a version marked `settled` (by the
 * coordinator's settle step, src/replication/coordinator.ts, only ever for the version a write
 * quorum holds) wins over an unsettled rival, whole; two unsettled rivals are not merged (RIVAL:
 * a replica keeps the one it holds first, which is what lets at most one rival reach a write
 * quorum); two settled rivals are CONFLICT (at most one version is ever settled). Versions of one
 * body join field by field as above, `settled` by or.
 *
 * Records are canonical (grants sorted by id, consumers by key, no duplicates), so equal records are
 * equal field by field and encode to equal bytes.
 */
import { compareStamps, maxStamp, minStamp, stampProblem, stampsEqual, type HlcStamp } from "./hlc.js";
import { ReplicationError } from "./replication-error.js";

export type KeyState = "active" | "deactivated";

/** What a create writes and nothing ever changes. */
export interface ImmutableKeyFields {
  id: string;
  project: string;
  scope: string;
  name: string;
  algorithm: string;
  bitLength: number;
  createdAtMs: number;
  /** The key this one was cloned or rekeyed from; "" for an original key. */
  parentId: string;
  /**
   * What the material is beyond a symmetric key ("opaque", "passphrase"); absent for a symmetric key,
   * so records of symmetric keys without expiration keep the first codec format byte for byte.
   */
  secretType?: string;
  /** After this instant the key is not served; absent: never expires. */
  expiresAtMs?: number;
  /**
   * The fingerprint of the client request that created the key (base64), when a create-like call
   * carried a client request id: its id is derived from that request, so rival versions may exist.
   */
  request?: string;
}

export interface GrantEntry {
  id: string;
  grantee: string;
  grantedBy: string;
  createdAtMs: number;
  expiresAtMs: number;
  /** When it was revoked (the earliest revocation any replica saw), or null. */
  revoked: HlcStamp | null;
}

export interface ConsumerEntry {
  /** The consumer's identity, e.g. "service/resource-type/resource-id"; unique within a key. */
  key: string;
  /** True after a register, false after a remove: whichever write has the later stamp. */
  present: boolean;
  stamp: HlcStamp;
}

export interface ReplicatedKey {
  fields: ImmutableKeyFields;
  /** The create's stamp: immutable, one per key. */
  created: HlcStamp;
  /** Key material wrapped under the project KEK; null exactly when the key is destroyed. */
  wrappedMaterial: Uint8Array | null;
  state: { value: KeyState; stamp: HlcStamp };
  /** When the key was destroyed, or null. */
  tombstone: HlcStamp | null;
  /** Sorted by id, ids unique. */
  grants: GrantEntry[];
  /** Sorted by key, keys unique. */
  consumers: ConsumerEntry[];
  /**
   * Only on keys with `fields.request` (absent otherwise): true once this version was settled as
   * the one its id keeps (it then wins over every rival version).
   */
  settled?: boolean;
}

/** Secret types other than a symmetric key's (which is the absence of one). */
export const SECRET_TYPES: ReadonlySet<string> = new Set(["opaque", "passphrase"]);

/** Bounds on what one record may carry: a hostile record cannot make a merge grow without bound. */
export const GRANTS_PER_KEY_MAX = 1024;
export const CONSUMERS_PER_KEY_MAX = 1024;
export const WRAPPED_MATERIAL_BYTES_MAX = 4096;
export const REQUEST_FINGERPRINT_BYTES_MAX = 128;

/** Do two versions of a key share their body (immutable fields, creation stamp and material)? */
export function sameBody(a: ReplicatedKey, b: ReplicatedKey): boolean {
  return (
    sameFields(a.fields, b.fields) &&
    stampsEqual(a.created, b.created) &&
    (a.wrappedMaterial === null ||
      b.wrappedMaterial === null ||
      bytesEqual(a.wrappedMaterial, b.wrappedMaterial))
  );
}

/** Versions of one id from rival attempts of one client request (see the top of this file). */
export function areRivals(a: ReplicatedKey, b: ReplicatedKey): boolean {
  return (
    a.fields.request !== undefined &&
    b.fields.request !== undefined &&
    a.fields.id === b.fields.id &&
    a.fields.project === b.fields.project &&
    a.fields.scope === b.fields.scope &&
    !sameBody(a, b)
  );
}

/** The join of two versions of one key. Throws CONFLICT when their immutable parts differ. */
export function mergeKeys(a: ReplicatedKey, b: ReplicatedKey): ReplicatedKey {
  validateKey(a);
  validateKey(b);
  if (areRivals(a, b)) {
    if (a.settled === true && b.settled === true) throw conflict(a.fields.id, "two rival versions settled");
    if (a.settled === true) return copyKey(a);
    if (b.settled === true) return copyKey(b);
    throw new ReplicationError(
      "RIVAL",
      `key ${a.fields.id}: rival versions of one client request, neither settled yet`,
    );
  }
  if (!sameFields(a.fields, b.fields)) throw conflict(a.fields.id, "immutable fields differ");
  if (!stampsEqual(a.created, b.created)) throw conflict(a.fields.id, "creation stamps differ");
  if (
    a.wrappedMaterial !== null &&
    b.wrappedMaterial !== null &&
    !bytesEqual(a.wrappedMaterial, b.wrappedMaterial)
  ) {
    throw conflict(a.fields.id, "wrapped material differs");
  }
  const tombstone =
    a.tombstone === null
      ? b.tombstone
      : b.tombstone === null
        ? a.tombstone
        : maxStamp(a.tombstone, b.tombstone);
  const merged: ReplicatedKey = {
    fields: { ...a.fields },
    created: { ...a.created },
    // Tombstone wins: once destroyed on any replica, the material is gone from the merge.
    wrappedMaterial: tombstone === null ? new Uint8Array(a.wrappedMaterial!) : null,
    state: mergeState(a.state, b.state),
    tombstone: tombstone === null ? null : { ...tombstone },
    grants: mergeGrants(a.fields.id, a.grants, b.grants),
    consumers: mergeConsumers(a.consumers, b.consumers),
  };
  if (a.fields.request !== undefined) merged.settled = a.settled === true || b.settled === true;
  return merged;
}

function copyKey(k: ReplicatedKey): ReplicatedKey {
  const out: ReplicatedKey = {
    fields: { ...k.fields },
    created: { ...k.created },
    wrappedMaterial: k.wrappedMaterial === null ? null : new Uint8Array(k.wrappedMaterial),
    state: { value: k.state.value, stamp: { ...k.state.stamp } },
    tombstone: k.tombstone === null ? null : { ...k.tombstone },
    grants: k.grants.map(copyGrant),
    consumers: k.consumers.map(copyConsumer),
  };
  if (k.settled !== undefined) out.settled = k.settled;
  return out;
}

/** Merges many versions (in any order: the result is the same). */
export function mergeAll(versions: readonly ReplicatedKey[]): ReplicatedKey {
  if (versions.length === 0) throw new ReplicationError("INVALID_ARGUMENT", "nothing to merge");
  return versions.slice(1).reduce(mergeKeys, versions[0]!);
}

/** The newest stamp anywhere in the record: a replica holding an older one has missed a write. */
export function latestStamp(k: ReplicatedKey): HlcStamp {
  let latest = maxStamp(k.created, k.state.stamp);
  if (k.tombstone !== null) latest = maxStamp(latest, k.tombstone);
  for (const g of k.grants) if (g.revoked !== null) latest = maxStamp(latest, g.revoked);
  for (const c of k.consumers) latest = maxStamp(latest, c.stamp);
  return latest;
}

/** Every invariant of a record; INVALID_RECORD names the first broken one. */
export function validateKey(k: ReplicatedKey): void {
  const problem = keyProblem(k, typeof k?.fields?.id === "string" ? k.fields.id : "?");
  if (problem !== undefined) throw new ReplicationError("INVALID_RECORD", problem);
}

const STRING_FIELDS = ["id", "project", "scope", "name", "algorithm", "parentId"] as const;

/**
 * The first broken invariant of `k` as a message, or undefined. Allocates nothing for a sound record:
 * it runs on every record encoded and decoded, several times per replicated write.
 */
function keyProblem(k: ReplicatedKey, id: string): string | undefined {
  if (typeof k !== "object" || k === null || typeof k.fields !== "object" || k.fields === null)
    return `key ${id}: not a record`;
  const f = k.fields;
  for (const name of STRING_FIELDS)
    if (typeof f[name] !== "string") return `key ${id}: ${name} is not a string`;
  if (f.id.length === 0) return `key ${id}: id is empty`;
  // An opaque or passphrase secret may declare no bit length (0); a symmetric key always has one.
  const bitsMin = f.secretType === undefined ? 1 : 0;
  if (!Number.isSafeInteger(f.bitLength) || f.bitLength < bitsMin)
    return `key ${id}: bitLength is not an integer of at least ${bitsMin}`;
  if (!Number.isSafeInteger(f.createdAtMs) || f.createdAtMs < 0)
    return `key ${id}: createdAtMs is not a non-negative integer`;
  // Canonical: a symmetric key carries no secretType at all, so equal records encode equally.
  if (f.secretType !== undefined && (typeof f.secretType !== "string" || !SECRET_TYPES.has(f.secretType)))
    return `key ${id}: secretType ${String(f.secretType)} is unknown`;
  if (f.expiresAtMs !== undefined && (!Number.isSafeInteger(f.expiresAtMs) || f.expiresAtMs < 0))
    return `key ${id}: expiresAtMs is not a non-negative integer`;
  if (f.request === undefined) {
    if (k.settled !== undefined) return `key ${id}: only a key made by a client request is settled or not`;
  } else {
    if (
      typeof f.request !== "string" ||
      f.request.length === 0 ||
      f.request.length > REQUEST_FINGERPRINT_BYTES_MAX
    )
      return `key ${id}: request is not a fingerprint of 1 to ${REQUEST_FINGERPRINT_BYTES_MAX} characters`;
    if (typeof k.settled !== "boolean") return `key ${id}: a key made by a client request is settled or not`;
  }
  let p = stampProblem(k.created);
  if (p !== undefined) return `key ${id} created: ${p}`;
  p = stampProblem(k.state?.stamp);
  if (p !== undefined) return `key ${id} state: ${p}`;
  if (k.state.value !== "active" && k.state.value !== "deactivated")
    return `key ${id}: state ${String(k.state.value)} is unknown`;
  if (k.tombstone !== null) {
    p = stampProblem(k.tombstone);
    if (p !== undefined) return `key ${id} tombstone: ${p}`;
  }
  if (k.tombstone === null) {
    if (!(k.wrappedMaterial instanceof Uint8Array) || k.wrappedMaterial.length === 0)
      return `key ${id}: a live key has no material`;
    if (k.wrappedMaterial.length > WRAPPED_MATERIAL_BYTES_MAX)
      return `key ${id}: wrapped material is too long`;
  } else if (k.wrappedMaterial !== null) {
    return `key ${id}: a destroyed key still holds material`;
  }
  if (!Array.isArray(k.grants) || k.grants.length > GRANTS_PER_KEY_MAX)
    return `key ${id}: more than ${GRANTS_PER_KEY_MAX} grants`;
  for (let i = 0; i < k.grants.length; i++) {
    const g = k.grants[i]!;
    if (typeof g.id !== "string" || g.id.length === 0) return `key ${id}: grant ${i} has no id`;
    if (i > 0 && !(k.grants[i - 1]!.id < g.id)) return `key ${id}: grants are not sorted by unique id`;
    if (typeof g.grantee !== "string" || typeof g.grantedBy !== "string")
      return `key ${id}: grant ${g.id} names no grantee`;
    if (!Number.isSafeInteger(g.createdAtMs) || !Number.isSafeInteger(g.expiresAtMs))
      return `key ${id}: grant ${g.id} has bad times`;
    if (g.revoked !== null) {
      p = stampProblem(g.revoked);
      if (p !== undefined) return `key ${id} grant ${g.id} revoked: ${p}`;
    }
  }
  if (!Array.isArray(k.consumers) || k.consumers.length > CONSUMERS_PER_KEY_MAX)
    return `key ${id}: more than ${CONSUMERS_PER_KEY_MAX} consumers`;
  for (let i = 0; i < k.consumers.length; i++) {
    const c = k.consumers[i]!;
    if (typeof c.key !== "string" || c.key.length === 0) return `key ${id}: consumer ${i} has no key`;
    if (i > 0 && !(k.consumers[i - 1]!.key < c.key))
      return `key ${id}: consumers are not sorted by unique key`;
    if (typeof c.present !== "boolean") return `key ${id}: consumer ${c.key} has no presence flag`;
    p = stampProblem(c.stamp);
    if (p !== undefined) return `key ${id} consumer ${c.key}: ${p}`;
  }
  return undefined;
}

function mergeState(a: ReplicatedKey["state"], b: ReplicatedKey["state"]): ReplicatedKey["state"] {
  const order = compareStamps(a.stamp, b.stamp);
  // Equal stamps mean one write event; should the values ever differ, both sides still pick the same.
  const winner = order > 0 ? a : order < 0 ? b : a.value === "deactivated" ? a : b;
  return { value: winner.value, stamp: { ...winner.stamp } };
}

function mergeGrants(keyId: string, a: readonly GrantEntry[], b: readonly GrantEntry[]): GrantEntry[] {
  const out: GrantEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x.id < y.id)) {
      out.push(copyGrant(x!));
      i += 1;
    } else if (x === undefined || y.id < x.id) {
      out.push(copyGrant(y));
      j += 1;
    } else {
      if (
        x.grantee !== y.grantee ||
        x.grantedBy !== y.grantedBy ||
        x.createdAtMs !== y.createdAtMs ||
        x.expiresAtMs !== y.expiresAtMs
      ) {
        throw conflict(keyId, `grant ${x.id} terms differ`);
      }
      const revoked =
        x.revoked === null ? y.revoked : y.revoked === null ? x.revoked : minStamp(x.revoked, y.revoked);
      out.push({ ...copyGrant(x), revoked: revoked === null ? null : { ...revoked } });
      i += 1;
      j += 1;
    }
  }
  if (out.length > GRANTS_PER_KEY_MAX)
    throw new ReplicationError("INVALID_RECORD", `key ${keyId}: merge exceeds ${GRANTS_PER_KEY_MAX} grants`);
  return out;
}

function mergeConsumers(a: readonly ConsumerEntry[], b: readonly ConsumerEntry[]): ConsumerEntry[] {
  const out: ConsumerEntry[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x.key < y.key)) {
      out.push(copyConsumer(x!));
      i += 1;
    } else if (x === undefined || y.key < x.key) {
      out.push(copyConsumer(y));
      j += 1;
    } else {
      const order = compareStamps(x.stamp, y.stamp);
      const winner = order > 0 ? x : order < 0 ? y : !x.present ? x : y; // a tie goes to the removal
      out.push(copyConsumer(winner));
      i += 1;
      j += 1;
    }
  }
  if (out.length > CONSUMERS_PER_KEY_MAX) {
    throw new ReplicationError("INVALID_RECORD", `merge exceeds ${CONSUMERS_PER_KEY_MAX} consumers`);
  }
  return out;
}

const copyGrant = (g: GrantEntry): GrantEntry => ({
  ...g,
  revoked: g.revoked === null ? null : { ...g.revoked },
});
const copyConsumer = (c: ConsumerEntry): ConsumerEntry => ({ ...c, stamp: { ...c.stamp } });

function sameFields(a: ImmutableKeyFields, b: ImmutableKeyFields): boolean {
  return (
    a.id === b.id &&
    a.project === b.project &&
    a.scope === b.scope &&
    a.name === b.name &&
    a.algorithm === b.algorithm &&
    a.bitLength === b.bitLength &&
    a.createdAtMs === b.createdAtMs &&
    a.parentId === b.parentId &&
    a.secretType === b.secretType &&
    a.expiresAtMs === b.expiresAtMs &&
    a.request === b.request
  );
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function conflict(id: string, what: string): ReplicationError {
  // Never the material itself in a message: key bytes stay out of errors and logs.
  return new ReplicationError("CONFLICT", `key ${id}: ${what}; versions not merged`);
}
