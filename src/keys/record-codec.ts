/**
 * Stored forms of key records and grants: versioned UTF-8 JSON (`"v": 2`) carrying a MAC
 * (`"mac"`, base64 HMAC-SHA256 under the project's record key, crypto/record-mac.ts) over the
 * record's canonical binding, which holds every field. Reading is two steps: `parse*` checks the
 * shape strictly (unknown or missing fields are DATA_LOSS, never skipped) and names the project
 * whose key authenticates the record; `authenticate*` checks the MAC. Only an authenticated
 * record is ever returned to a caller, so a flipped byte is DATA_LOSS, never a changed field.
 * The material is stored only wrapped (base64 of the envelope), never in plaintext.
 *
 * Version 1 had no MAC. lockbox has no deployed stores yet, so version 2 replaced it outright
 * and a version-1 record is refused as corrupt.
 */
import type { Binding } from "../crypto/binding.js";
import { RECORD_MAC_BYTES, recordMac, recordMacMatches } from "../crypto/record-mac.js";
import { LockboxError } from "../errors.js";
import type { Grant, KeyRecord } from "./key-model.js";

export const RECORD_FORMAT = 2;

/** A record whose shape was checked but whose MAC was not: never hand one to a caller. */
export interface Unauthenticated<T> {
  readonly unverified: T;
  readonly tag: Uint8Array;
}

const KEY_RECORD_FIELDS = new Set([
  "v",
  "id",
  "project",
  "scope",
  "name",
  "algorithm",
  "bitLength",
  "createdAtMs",
  "state",
  "parentId",
  "destroyedAtMs",
  "wrappedMaterial",
  "mac",
]);
const GRANT_FIELDS = new Set([
  "v",
  "id",
  "keyId",
  "grantee",
  "grantedBy",
  "createdAtMs",
  "expiresAtMs",
  "revokedAtMs",
  "mac",
]);
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * What a key's wrapped material is bound to (the AAD): the key's id and every field that never
 * changes after create, so material moved to another record, or a record edited around it, fails.
 */
export const materialBinding = (r: KeyRecord): Binding => ({
  kind: "key-material",
  id: r.id,
  attributes: {
    project: r.project,
    scope: r.scope,
    name: r.name,
    algorithm: r.algorithm,
    bitLength: r.bitLength,
    parentId: r.parentId,
    createdAtMs: r.createdAt.getTime(),
  },
});

/** Every field of a key record, as the MAC covers it. */
export function keyRecordBinding(r: KeyRecord): Binding {
  const attributes: Record<string, string | number> = {
    project: r.project,
    scope: r.scope,
    name: r.name,
    algorithm: r.algorithm,
    bitLength: r.bitLength,
    createdAtMs: r.createdAt.getTime(),
    state: r.state,
    parentId: r.parentId,
  };
  if (r.destroyedAt !== undefined) attributes.destroyedAtMs = r.destroyedAt.getTime();
  if (r.wrappedMaterial !== undefined) attributes.wrappedMaterial = base64(r.wrappedMaterial);
  return { kind: "key-record", id: r.id, attributes };
}

/** Every field of a grant, as the MAC covers it. */
export function grantBinding(g: Grant): Binding {
  const attributes: Record<string, string | number> = {
    keyId: g.keyId,
    grantee: g.grantee,
    grantedBy: g.grantedBy,
    createdAtMs: g.createdAt.getTime(),
    expiresAtMs: g.expiresAt.getTime(),
  };
  if (g.revokedAt !== undefined) attributes.revokedAtMs = g.revokedAt.getTime();
  return { kind: "grant", id: g.id, attributes };
}

export function encodeKeyRecord(r: KeyRecord, macKey: Uint8Array): Uint8Array {
  const stored: Record<string, unknown> = { v: RECORD_FORMAT, id: r.id };
  for (const [name, value] of Object.entries(keyRecordBinding(r).attributes)) stored[name] = value;
  stored.mac = base64(recordMac(macKey, keyRecordBinding(r)));
  return json(stored);
}

/** Checks the shape of a stored key record; its fields are not trusted until authenticated. */
export function parseKeyRecord(bytes: Uint8Array, where: string): Unauthenticated<KeyRecord> {
  const o = parseObject(bytes, where, KEY_RECORD_FIELDS);
  const bad = (field: string): never => {
    throw new LockboxError("DATA_LOSS", `stored key record ${where} is corrupt (${field})`);
  };
  if (o.v !== RECORD_FORMAT) bad("v");
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
  if (o.wrappedMaterial !== undefined)
    record.wrappedMaterial = fromBase64(o.wrappedMaterial) ?? bad("wrappedMaterial");
  if (
    record.state === "destroyed" ? record.wrappedMaterial !== undefined : record.wrappedMaterial === undefined
  ) {
    bad("wrappedMaterial");
  }
  return { unverified: record, tag: macOf(o) ?? bad("mac") };
}

/** The record, once its MAC verifies under `macKey` (its project's record key); else DATA_LOSS. */
export function authenticateKeyRecord(
  parsed: Unauthenticated<KeyRecord>,
  macKey: Uint8Array,
  where: string,
): KeyRecord {
  if (!recordMacMatches(macKey, keyRecordBinding(parsed.unverified), parsed.tag)) {
    throw new LockboxError("DATA_LOSS", `integrity check failed for key ${where}`);
  }
  return parsed.unverified;
}

export function encodeGrant(g: Grant, macKey: Uint8Array): Uint8Array {
  const stored: Record<string, unknown> = { v: RECORD_FORMAT, id: g.id };
  for (const [name, value] of Object.entries(grantBinding(g).attributes)) stored[name] = value;
  stored.mac = base64(recordMac(macKey, grantBinding(g)));
  return json(stored);
}

/** Checks the shape of a stored grant; its fields are not trusted until authenticated. */
export function parseGrant(bytes: Uint8Array, where: string): Unauthenticated<Grant> {
  const o = parseObject(bytes, where, GRANT_FIELDS);
  const bad = (field: string): never => {
    throw new LockboxError("DATA_LOSS", `stored grant ${where} is corrupt (${field})`);
  };
  if (o.v !== RECORD_FORMAT) bad("v");
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
  return { unverified: grant, tag: macOf(o) ?? bad("mac") };
}

/** The grant, once its MAC verifies under `macKey` (its key's project record key); else DATA_LOSS. */
export function authenticateGrant(parsed: Unauthenticated<Grant>, macKey: Uint8Array, where: string): Grant {
  if (!recordMacMatches(macKey, grantBinding(parsed.unverified), parsed.tag)) {
    throw new LockboxError("DATA_LOSS", `integrity check failed for grant ${where}`);
  }
  return parsed.unverified;
}

function parseObject(bytes: Uint8Array, where: string, fields: ReadonlySet<string>): Record<string, unknown> {
  let o: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    o = JSON.parse(text);
  } catch (cause) {
    throw new LockboxError("DATA_LOSS", `stored record ${where} is not valid JSON`, undefined, { cause });
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    throw new LockboxError("DATA_LOSS", `stored record ${where} is not an object`);
  }
  for (const name of Object.keys(o)) {
    if (!fields.has(name)) throw new LockboxError("DATA_LOSS", `stored record ${where} has an unknown field`);
  }
  return o as Record<string, unknown>;
}

function macOf(o: Record<string, unknown>): Uint8Array | undefined {
  const tag = fromBase64(o.mac);
  return tag?.length === RECORD_MAC_BYTES ? tag : undefined;
}

function fromBase64(v: unknown): Uint8Array | undefined {
  if (typeof v !== "string" || v.length % 4 !== 0 || !BASE64.test(v)) return undefined;
  return new Uint8Array(Buffer.from(v, "base64"));
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64");
}

function json(o: Record<string, unknown>): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify(o), "utf8"));
}

function toDate(ms: unknown): Date | undefined {
  return typeof ms === "number" && Number.isSafeInteger(ms) ? new Date(ms) : undefined;
}
