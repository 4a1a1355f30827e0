/**
 * The managed-key model shared by the key service, its store codec and the edges (gRPC in
 * src/server, Barbican REST in src/rest). Every type here is plain TypeScript, free of any wire
 * format. Material never appears in these types except as `wrappedMaterial` (an envelope under
 * the project KEK) on the stored record, and as the explicit result of getKey.
 */
import type { Caller } from "../identity/caller.js";

export type KeyAlgorithm = "AES";
export type AesBitLength = 128 | 192 | 256 | 512;
export const AES_BIT_LENGTHS: readonly AesBitLength[] = [128, 192, 256, 512];
export type KeyState = "active" | "deactivated" | "destroyed";
/**
 * What the material is. `symmetric`: an AES key (generated or imported), its length one of
 * AES_BIT_LENGTHS. `opaque` and `passphrase`: bytes a caller stored (Barbican's secret types of
 * those names, e.g. Nova's vTPM passphrases), of bounded size; their algorithm and bit length are
 * declared metadata, not checked against the bytes.
 */
export type SecretType = "symmetric" | "opaque" | "passphrase";
export const SECRET_TYPES: readonly SecretType[] = ["symmetric", "opaque", "passphrase"];

/** A key's metadata, as returned to callers. */
export interface KeyMeta {
  /** An RFC 9562 version-8 UUID carrying its scope's placement (cluster/ring/key-id.ts). */
  id: string;
  project: string;
  scope: string;
  name: string;
  secretType: SecretType;
  /** "AES" for symmetric keys; "" for an opaque or passphrase secret stored without one. */
  algorithm: KeyAlgorithm | "";
  /** For symmetric keys the material's length in bits; declared (0 = none) for other types. */
  bitLength: number;
  createdAt: Date;
  /** When the record last changed (create, delete); equals createdAt until then. */
  updatedAt: Date;
  /** After this instant the key is not served (NOT_FOUND, like Barbican); absent = never. */
  expiresAt?: Date;
  state: KeyState;
  /** The key this one was cloned or rekeyed from; "" for an original key. */
  parentId: string;
  destroyedAt?: Date;
}

/** A stored key record: metadata plus the material wrapped under the project KEK (absent once destroyed). */
export interface KeyRecord extends KeyMeta {
  wrappedMaterial?: Uint8Array;
}

export interface Grant {
  id: string;
  keyId: string;
  /** Identity that may GetKey the key. */
  grantee: string;
  /** Identity that created the grant. */
  grantedBy: string;
  createdAt: Date;
  expiresAt: Date;
  revokedAt?: Date;
}

/** Who uses a key (Barbican's consumers): e.g. service "cinder", resource type "volume", a volume id. */
export interface ConsumerRef {
  service: string;
  resourceType: string;
  resourceId: string;
}

export interface Consumer extends ConsumerRef {
  createdAt: Date;
}

export function toKeyMeta(record: KeyRecord): KeyMeta {
  const meta: KeyMeta = {
    id: record.id,
    project: record.project,
    scope: record.scope,
    name: record.name,
    secretType: record.secretType,
    algorithm: record.algorithm,
    bitLength: record.bitLength,
    createdAt: new Date(record.createdAt.getTime()),
    updatedAt: new Date(record.updatedAt.getTime()),
    state: record.state,
    parentId: record.parentId,
  };
  if (record.expiresAt !== undefined) meta.expiresAt = new Date(record.expiresAt.getTime());
  if (record.destroyedAt !== undefined) meta.destroyedAt = new Date(record.destroyedAt.getTime());
  return meta;
}

/** May `caller` use keys of `project`? Admins may use every project. */
export function callerMaySee(caller: Caller, project: string): boolean {
  return caller.role === "admin" || (caller.role === "service" && caller.projects.includes(project));
}

// Request shapes of the KeyService methods.

/**
 * Told the new key's id and project just before a create's write begins (CreateKey, ImportKey,
 * CloneKey, RekeyClone): the call pipeline starts the call's audit record then, so its sync
 * overlaps the write's instead of following it (src/edge/call-pipeline.ts). Not called when a
 * retried request is answered from its stored entry without a write. Must not throw.
 */
export type CreateListener = (key: { id: string; project: string }) => void;

/**
 * A create-like call (CreateKey, ImportKey, CloneKey, RekeyClone) may carry a client request id:
 * a retry with the same id by the same identity returns the key the first attempt made, and the
 * same id with a different request is INVALID_ARGUMENT (field client_request_id). Ids are kept
 * for CLIENT_REQUEST_ID_TTL_MS and at most CLIENT_REQUEST_IDS_MAX of them (client-requests.ts).
 */
export interface Idempotent {
  /** "" or absent: no deduplication. 1..128 chars of [A-Za-z0-9._:-] (a UUID fits). */
  clientRequestId?: string;
}

export interface CreateKeyRequest extends Idempotent {
  project: string;
  scope: string;
  name: string;
  algorithm: KeyAlgorithm;
  /** 128, 192, 256 or 512 (512 for XTS). */
  bitLength: number;
  /** Absent: never expires. Must be in the future. */
  expiresAt?: Date;
}
export interface ImportKeyRequest extends Idempotent {
  project: string;
  scope: string;
  name: string;
  /** Absent means "symmetric". */
  secretType?: SecretType;
  /** "AES" for symmetric keys; "AES" or "" (none) for opaque and passphrase secrets. */
  algorithm: KeyAlgorithm | "";
  /**
   * Symmetric: absent, 0, or the material's length in bits (which it follows from). Opaque and
   * passphrase: declared metadata, 0..65536 (0 = none).
   */
  bitLength?: number;
  /** Symmetric: 16, 24, 32 or 64 bytes. Opaque and passphrase: 1..SECRET_PAYLOAD_BYTES_MAX bytes. */
  material: Uint8Array;
  expiresAt?: Date;
}
export interface KeyIdRequest {
  id: string;
}
export interface DeleteKeyRequest {
  id: string;
  /** Delete even if the key has consumers (they are removed with it). */
  force?: boolean;
}
export interface ListKeysRequest {
  project: string;
  /** "" or absent lists every scope. */
  scope?: string;
  /** 0 or absent means 100; at most 1000. */
  pageSize?: number;
  pageToken?: string;
}
export interface ListKeysResponse {
  /** Tombstones included; keys past their expiration left out. A page may hold fewer than pageSize. */
  keys: KeyMeta[];
  /** "" when there are no more keys. */
  nextPageToken: string;
}
export interface CloneKeyRequest extends Idempotent {
  id: string;
  /** "" or absent keeps the parent's name. */
  name?: string;
}
export interface CreateGrantRequest {
  keyId: string;
  grantee: string;
  expiresAt: Date;
}
export interface RevokeGrantRequest {
  grantId: string;
}
export interface GetKeyResponse {
  key: KeyMeta;
  /** The plaintext key; the receiver owns it and should zero it after use. */
  material: Uint8Array;
}
export interface ConsumerRequest extends ConsumerRef {
  keyId: string;
}
export interface KeyConsumersRequest {
  keyId: string;
}
export interface ConsumersResponse {
  key: KeyMeta;
  /** Every consumer of the key, sorted by (service, resourceType, resourceId). */
  consumers: Consumer[];
  /** AddConsumer: false when the consumer was there already. RemoveConsumer: false when it was not. */
  changed: boolean;
}
