/**
 * The managed-key model shared by the key service, its store codec and the gRPC edge.
 * Material never appears in these types except as `wrappedMaterial` (an envelope under the
 * project KEK) on the stored record, and as the explicit result of getKey.
 */
import type { Caller } from "../identity/caller.js";

export type KeyAlgorithm = "AES";
export type AesBitLength = 128 | 256;
export type KeyState = "active" | "deactivated" | "destroyed";

/** A key's metadata, as returned to callers. */
export interface KeyMeta {
  id: string;
  project: string;
  scope: string;
  name: string;
  algorithm: KeyAlgorithm;
  bitLength: AesBitLength;
  createdAt: Date;
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

export function toKeyMeta(record: KeyRecord): KeyMeta {
  const meta: KeyMeta = {
    id: record.id,
    project: record.project,
    scope: record.scope,
    name: record.name,
    algorithm: record.algorithm,
    bitLength: record.bitLength,
    createdAt: new Date(record.createdAt.getTime()),
    state: record.state,
    parentId: record.parentId,
  };
  if (record.destroyedAt !== undefined) meta.destroyedAt = new Date(record.destroyedAt.getTime());
  return meta;
}

/** May `caller` use keys of `project`? Admins may use every project. */
export function callerMaySee(caller: Caller, project: string): boolean {
  return caller.role === "admin" || (caller.role === "service" && caller.projects.includes(project));
}

// Request shapes of the KeyService methods.
export interface CreateKeyRequest {
  project: string;
  scope: string;
  name: string;
  algorithm: KeyAlgorithm;
  bitLength: number;
}
export interface ImportKeyRequest {
  project: string;
  scope: string;
  name: string;
  algorithm: KeyAlgorithm;
  material: Uint8Array;
}
export interface KeyIdRequest {
  id: string;
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
  keys: KeyMeta[];
  /** "" when there are no more keys. */
  nextPageToken: string;
}
export interface CloneKeyRequest {
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
