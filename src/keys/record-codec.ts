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
 *
 * The key model's later fields (secret type, expiration, update time, 192- and 512-bit lengths)
 * did not need a new version: each new attribute is stored, and bound, only when it differs from
 * what a record written before it means (secretType only when not "symmetric", expiresAtMs only
 * when set, updatedAtMs only when it is not the destroy or create time), so every record written
 * before has the same binding and MAC as then, and a record that carries one binds it by name:
 * removing, adding or editing one fails the MAC. The parser accepts only this canonical form.
 *
 * Consumers and client request ids are records of their own (same version, same MAC key).
 */
import type { Binding } from "../crypto/binding.js";
import { RECORD_MAC_BYTES, recordMac, recordMacMatches } from "../crypto/record-mac.js";
import { LockboxError } from "../errors.js";
import { AES_BIT_LENGTHS, type Consumer, type Grant, type KeyRecord } from "./key-model.js";
import { DECLARED_BIT_LENGTH_MAX } from "./validation.js";

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
  "secretType",
  "expiresAtMs",
  "updatedAtMs",
  "mac",
]);
const CONSUMER_FIELDS = new Set([
  "v",
  "keyId",
  "service",
  "resourceType",
  "resourceId",
  "createdAtMs",
  "mac",
]);
const CLIENT_REQUEST_FIELDS = new Set([
  "v",
  "identity",
  "requestId",
  "method",
  "project",
  "keyId",
  "fingerprint",
  "createdAtMs",
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
export function materialBinding(r: KeyRecord): Binding {
  const attributes: Record<string, string | number> = {
    project: r.project,
    scope: r.scope,
    name: r.name,
    algorithm: r.algorithm,
    bitLength: r.bitLength,
    parentId: r.parentId,
    createdAtMs: r.createdAt.getTime(),
  };
  // A passphrase's bytes must never open as a symmetric key's (or the other way round).
  if (r.secretType !== "symmetric") attributes.secretType = r.secretType;
  if (r.expiresAt !== undefined) attributes.expiresAtMs = r.expiresAt.getTime();
  return { kind: "key-material", id: r.id, attributes };
}

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
  if (r.secretType !== "symmetric") attributes.secretType = r.secretType;
  if (r.expiresAt !== undefined) attributes.expiresAtMs = r.expiresAt.getTime();
  if (r.updatedAt.getTime() !== impliedUpdatedAtMs(r)) attributes.updatedAtMs = r.updatedAt.getTime();
  return { kind: "key-record", id: r.id, attributes };
}

/** The update time a record means when it stores none: its destroy time, else its create time. */
function impliedUpdatedAtMs(r: Pick<KeyRecord, "createdAt" | "destroyedAt">): number {
  return (r.destroyedAt ?? r.createdAt).getTime();
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
  const binding = keyRecordBinding(r);
  const stored: Record<string, unknown> = { v: RECORD_FORMAT, id: r.id };
  for (const [name, value] of Object.entries(binding.attributes)) stored[name] = value;
  stored.mac = base64(recordMac(macKey, binding));
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
  // Absent means symmetric; "symmetric" itself is never stored (canonical form).
  if (o.secretType !== undefined && o.secretType !== "opaque" && o.secretType !== "passphrase")
    bad("secretType");
  const secretType = (o.secretType ?? "symmetric") as KeyRecord["secretType"];
  if (secretType === "symmetric") {
    if (o.algorithm !== "AES") bad("algorithm");
    if (!(AES_BIT_LENGTHS as readonly unknown[]).includes(o.bitLength)) bad("bitLength");
  } else {
    if (o.algorithm !== "AES" && o.algorithm !== "") bad("algorithm");
    const bits = o.bitLength;
    if (typeof bits !== "number" || !Number.isInteger(bits) || bits < 0 || bits > DECLARED_BIT_LENGTH_MAX)
      bad("bitLength");
  }
  if (o.state !== "active" && o.state !== "deactivated" && o.state !== "destroyed") bad("state");
  const createdAt = toDate(o.createdAtMs) ?? bad("createdAtMs");
  const record: KeyRecord = {
    id: o.id as string,
    project: o.project as string,
    scope: o.scope as string,
    name: o.name as string,
    secretType,
    algorithm: o.algorithm as KeyRecord["algorithm"],
    bitLength: o.bitLength as number,
    createdAt,
    updatedAt: createdAt,
    state: o.state as KeyRecord["state"],
    parentId: o.parentId as string,
  };
  if (o.destroyedAtMs !== undefined) record.destroyedAt = toDate(o.destroyedAtMs) ?? bad("destroyedAtMs");
  if (o.expiresAtMs !== undefined) record.expiresAt = toDate(o.expiresAtMs) ?? bad("expiresAtMs");
  const implied = impliedUpdatedAtMs(record);
  if (o.updatedAtMs === undefined) record.updatedAt = new Date(implied);
  else if (o.updatedAtMs === implied) bad("updatedAtMs");
  else record.updatedAt = toDate(o.updatedAtMs) ?? bad("updatedAtMs");
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
  const binding = grantBinding(g);
  const stored: Record<string, unknown> = { v: RECORD_FORMAT, id: g.id };
  for (const [name, value] of Object.entries(binding.attributes)) stored[name] = value;
  stored.mac = base64(recordMac(macKey, binding));
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

/** Every field of a consumer entry, as the MAC covers it: the key it belongs to is its id. */
export function consumerBinding(keyId: string, c: Consumer): Binding {
  return {
    kind: "consumer",
    id: keyId,
    attributes: {
      service: c.service,
      resourceType: c.resourceType,
      resourceId: c.resourceId,
      createdAtMs: c.createdAt.getTime(),
    },
  };
}

export interface StoredConsumer {
  keyId: string;
  consumer: Consumer;
}

export function encodeConsumer(keyId: string, c: Consumer, macKey: Uint8Array): Uint8Array {
  const binding = consumerBinding(keyId, c);
  return json({ v: RECORD_FORMAT, keyId, ...binding.attributes, mac: base64(recordMac(macKey, binding)) });
}

/** Checks the shape of a stored consumer entry; not trusted until authenticated. */
export function parseConsumer(bytes: Uint8Array, where: string): Unauthenticated<StoredConsumer> {
  const o = parseObject(bytes, where, CONSUMER_FIELDS);
  const bad = (field: string): never => {
    throw new LockboxError("DATA_LOSS", `stored consumer ${where} is corrupt (${field})`);
  };
  if (o.v !== RECORD_FORMAT) bad("v");
  for (const f of ["keyId", "service", "resourceType", "resourceId"]) if (typeof o[f] !== "string") bad(f);
  const consumer: Consumer = {
    service: o.service as string,
    resourceType: o.resourceType as string,
    resourceId: o.resourceId as string,
    createdAt: toDate(o.createdAtMs) ?? bad("createdAtMs"),
  };
  return { unverified: { keyId: o.keyId as string, consumer }, tag: macOf(o) ?? bad("mac") };
}

/** The consumer, once its MAC verifies under `macKey` (its key's project record key); else DATA_LOSS. */
export function authenticateConsumer(
  parsed: Unauthenticated<StoredConsumer>,
  macKey: Uint8Array,
  where: string,
): StoredConsumer {
  const { keyId, consumer } = parsed.unverified;
  if (!recordMacMatches(macKey, consumerBinding(keyId, consumer), parsed.tag)) {
    throw new LockboxError("DATA_LOSS", `integrity check failed for consumer ${where}`);
  }
  return parsed.unverified;
}

/**
 * A client request id as stored: which identity used it, for which call (method, project), the
 * key that call made, and a keyed fingerprint of the request (client-requests.ts) so the same id
 * with another request is recognised without keeping the request (or any material) itself.
 */
export interface ClientRequestEntry {
  identity: string;
  requestId: string;
  method: string;
  project: string;
  keyId: string;
  /** base64 of an HMAC-SHA256 under the project's record key. */
  fingerprint: string;
  createdAt: Date;
}

export function clientRequestBinding(e: ClientRequestEntry): Binding {
  return {
    kind: "client-request",
    id: `${e.identity}/${e.requestId}`,
    attributes: {
      method: e.method,
      project: e.project,
      keyId: e.keyId,
      fingerprint: e.fingerprint,
      createdAtMs: e.createdAt.getTime(),
    },
  };
}

export function encodeClientRequest(e: ClientRequestEntry, macKey: Uint8Array): Uint8Array {
  const binding = clientRequestBinding(e);
  return json({
    v: RECORD_FORMAT,
    identity: e.identity,
    requestId: e.requestId,
    ...binding.attributes,
    mac: base64(recordMac(macKey, binding)),
  });
}

/** Checks the shape of a stored client request entry; not trusted until authenticated. */
export function parseClientRequest(bytes: Uint8Array, where: string): Unauthenticated<ClientRequestEntry> {
  const o = parseObject(bytes, where, CLIENT_REQUEST_FIELDS);
  const bad = (field: string): never => {
    throw new LockboxError("DATA_LOSS", `stored client request ${where} is corrupt (${field})`);
  };
  if (o.v !== RECORD_FORMAT) bad("v");
  for (const f of ["identity", "requestId", "method", "project", "keyId", "fingerprint"])
    if (typeof o[f] !== "string") bad(f);
  const entry: ClientRequestEntry = {
    identity: o.identity as string,
    requestId: o.requestId as string,
    method: o.method as string,
    project: o.project as string,
    keyId: o.keyId as string,
    fingerprint: o.fingerprint as string,
    createdAt: toDate(o.createdAtMs) ?? bad("createdAtMs"),
  };
  return { unverified: entry, tag: macOf(o) ?? bad("mac") };
}

export function authenticateClientRequest(
  parsed: Unauthenticated<ClientRequestEntry>,
  macKey: Uint8Array,
  where: string,
): ClientRequestEntry {
  if (!recordMacMatches(macKey, clientRequestBinding(parsed.unverified), parsed.tag)) {
    throw new LockboxError("DATA_LOSS", `integrity check failed for client request ${where}`);
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

/**
 * A view of the UTF-8 bytes, not a copy: they may sit in node's shared Buffer pool, which is fine
 * for a stored record (never secret: the material in it is wrapped) that the store copies when it
 * writes it and that nothing keeps.
 */
function json(o: Record<string, unknown>): Uint8Array {
  const bytes = Buffer.from(JSON.stringify(o), "utf8");
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

function toDate(ms: unknown): Date | undefined {
  return typeof ms === "number" && Number.isSafeInteger(ms) ? new Date(ms) : undefined;
}
