/**
 * Stored forms of key records and grants: versioned UTF-8 JSON (`"v": 1`), strictly checked on
 * decode. A record that does not decode is reported as DATA_LOSS, never silently skipped. The
 * material is stored only wrapped (base64 of the envelope), never in plaintext.
 */
import { LockboxError } from "../errors.js";
import type { Grant, KeyRecord } from "./key-model.js";

const RECORD_VERSION = 1;

interface StoredKeyRecordV1 {
  v: 1;
  id: string;
  project: string;
  scope: string;
  name: string;
  algorithm: "AES";
  bitLength: 128 | 256;
  createdAtMs: number;
  state: "active" | "deactivated" | "destroyed";
  parentId: string;
  destroyedAtMs?: number;
  wrappedMaterial?: string;
}

interface StoredGrantV1 {
  v: 1;
  id: string;
  keyId: string;
  grantee: string;
  grantedBy: string;
  createdAtMs: number;
  expiresAtMs: number;
  revokedAtMs?: number;
}

export function encodeKeyRecord(r: KeyRecord): Uint8Array {
  const stored: StoredKeyRecordV1 = {
    v: RECORD_VERSION,
    id: r.id,
    project: r.project,
    scope: r.scope,
    name: r.name,
    algorithm: r.algorithm,
    bitLength: r.bitLength,
    createdAtMs: r.createdAt.getTime(),
    state: r.state,
    parentId: r.parentId,
  };
  if (r.destroyedAt !== undefined) stored.destroyedAtMs = r.destroyedAt.getTime();
  if (r.wrappedMaterial !== undefined)
    stored.wrappedMaterial = Buffer.from(r.wrappedMaterial).toString("base64");
  return new Uint8Array(Buffer.from(JSON.stringify(stored), "utf8"));
}

export function decodeKeyRecord(bytes: Uint8Array, where: string): KeyRecord {
  const o = parseObject(bytes, where);
  const bad = (field: string): never => {
    throw new LockboxError("DATA_LOSS", `stored key record ${where} is corrupt (${field})`);
  };
  if (o.v !== RECORD_VERSION) bad("v");
  for (const f of ["id", "project", "scope", "name", "parentId"]) if (typeof o[f] !== "string") bad(f);
  if (o.algorithm !== "AES") bad("algorithm");
  if (o.bitLength !== 128 && o.bitLength !== 256) bad("bitLength");
  if (o.state !== "active" && o.state !== "deactivated" && o.state !== "destroyed") bad("state");
  const createdAt = toDate(o.createdAtMs) ?? bad("createdAtMs");
  const record: KeyRecord = {
    id: o.id as string,
    project: o.project as string,
    scope: o.scope as string,
    name: o.name as string,
    algorithm: "AES",
    bitLength: o.bitLength as 128 | 256,
    createdAt,
    state: o.state as KeyRecord["state"],
    parentId: o.parentId as string,
  };
  if (o.destroyedAtMs !== undefined) record.destroyedAt = toDate(o.destroyedAtMs) ?? bad("destroyedAtMs");
  if (o.wrappedMaterial !== undefined) {
    if (typeof o.wrappedMaterial !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(o.wrappedMaterial)) {
      bad("wrappedMaterial");
    }
    record.wrappedMaterial = new Uint8Array(Buffer.from(o.wrappedMaterial as string, "base64"));
  }
  if (
    record.state === "destroyed" ? record.wrappedMaterial !== undefined : record.wrappedMaterial === undefined
  ) {
    bad("wrappedMaterial");
  }
  return record;
}

export function encodeGrant(g: Grant): Uint8Array {
  const stored: StoredGrantV1 = {
    v: RECORD_VERSION,
    id: g.id,
    keyId: g.keyId,
    grantee: g.grantee,
    grantedBy: g.grantedBy,
    createdAtMs: g.createdAt.getTime(),
    expiresAtMs: g.expiresAt.getTime(),
  };
  if (g.revokedAt !== undefined) stored.revokedAtMs = g.revokedAt.getTime();
  return new Uint8Array(Buffer.from(JSON.stringify(stored), "utf8"));
}

export function decodeGrant(bytes: Uint8Array, where: string): Grant {
  const o = parseObject(bytes, where);
  const bad = (field: string): never => {
    throw new LockboxError("DATA_LOSS", `stored grant ${where} is corrupt (${field})`);
  };
  if (o.v !== RECORD_VERSION) bad("v");
  for (const f of ["id", "keyId", "grantee", "grantedBy"]) if (typeof o[f] !== "string") bad(f);
  const grant: Grant = {
    id: o.id as string,
    keyId: o.keyId as string,
    grantee: o.grantee as string,
    grantedBy: o.grantedBy as string,
    createdAt: toDate(o.createdAtMs) ?? bad("createdAtMs"),
    expiresAt: toDate(o.expiresAtMs) ?? bad("expiresAtMs"),
  };
  if (o.revokedAtMs !== undefined) grant.revokedAt = toDate(o.revokedAtMs) ?? bad("revokedAtMs");
  return grant;
}

function parseObject(bytes: Uint8Array, where: string): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("utf8"));
  } catch (cause) {
    throw new LockboxError("DATA_LOSS", `stored record ${where} is not valid JSON`, undefined, { cause });
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    throw new LockboxError("DATA_LOSS", `stored record ${where} is not an object`);
  }
  return o as Record<string, unknown>;
}

function toDate(ms: unknown): Date | undefined {
  return typeof ms === "number" && Number.isSafeInteger(ms) ? new Date(ms) : undefined;
}
