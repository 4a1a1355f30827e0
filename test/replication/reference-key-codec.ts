/**
 * The replicated key codec as it was before the single-buffer rewrite (cluster/replication/
 * replicated-key-codec.ts at 7a9f938, with validateKey and checkStamp of that commit), kept verbatim as the reference the new codec must match byte
 * for byte (replicated-key-codec-reference.test.ts) and as the "before" of the codec micro benchmark
 * (test/bench/micro/replication-codec.ts). Formats 1 to 3 are on disk and on the wire: this file
 * never changes.
 */
import { hash } from "node:crypto";
import type { HlcStamp } from "../../cluster/replication/hlc.js";
import { LOGICAL_MAX, PEER_ID_BYTES_MAX } from "../../cluster/replication/hlc.js";
import {
  CONSUMERS_PER_KEY_MAX,
  GRANTS_PER_KEY_MAX,
  REQUEST_FINGERPRINT_BYTES_MAX,
  SECRET_TYPES,
  WRAPPED_MATERIAL_BYTES_MAX,
  type ReplicatedKey,
} from "../../cluster/replication/replicated-key.js";
import { ReplicationError } from "../../cluster/replication/replication-error.js";

const KEY_RECORD_FORMAT = 1;
/** Format 1 plus secret type and expiration (only for records that carry one of them). */
const KEY_RECORD_FORMAT_EXTENDED = 2;
/** Format 2 plus the client request's fingerprint and the settled flag (records made by a request id). */
const KEY_RECORD_FORMAT_REQUEST = 3;
const MAGIC = [0x4c, 0x42, 0x52, 0x4b]; // "LBRK"
const CHECKSUM_BYTES = 32;
const STRING_BYTES_MAX = 1024;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function referenceEncode(k: ReplicatedKey): Uint8Array {
  validateKey(k);
  const w = new Writer();
  w.raw(MAGIC);
  const f = k.fields;
  const requested = f.request !== undefined;
  const extended = requested || f.secretType !== undefined || f.expiresAtMs !== undefined;
  w.u8(requested ? KEY_RECORD_FORMAT_REQUEST : extended ? KEY_RECORD_FORMAT_EXTENDED : KEY_RECORD_FORMAT);
  for (const s of [f.id, f.project, f.scope, f.name, f.algorithm]) w.str(s);
  w.u16(f.bitLength);
  w.u53(f.createdAtMs);
  w.str(f.parentId);
  if (extended) {
    w.str(f.secretType ?? "");
    w.u8(f.expiresAtMs === undefined ? 0 : 1);
    if (f.expiresAtMs !== undefined) w.u53(f.expiresAtMs);
  }
  if (requested) {
    w.str(f.request!);
    w.u8(k.settled === true ? 1 : 0);
  }
  w.stamp(k.created);
  const material = k.wrappedMaterial ?? new Uint8Array(0);
  w.u16(material.length);
  w.raw(material);
  w.u8(k.state.value === "active" ? 0 : 1);
  w.stamp(k.state.stamp);
  w.u8(k.tombstone === null ? 0 : 1);
  if (k.tombstone !== null) w.stamp(k.tombstone);
  w.u16(k.grants.length);
  for (const g of k.grants) {
    w.str(g.id);
    w.str(g.grantee);
    w.str(g.grantedBy);
    w.u53(g.createdAtMs);
    w.u53(g.expiresAtMs);
    w.u8(g.revoked === null ? 0 : 1);
    if (g.revoked !== null) w.stamp(g.revoked);
  }
  w.u16(k.consumers.length);
  for (const c of k.consumers) {
    w.str(c.key);
    w.u8(c.present ? 1 : 0);
    w.stamp(c.stamp);
  }
  const body = w.finish();
  const out = new Uint8Array(body.length + CHECKSUM_BYTES);
  out.set(body);
  out.set(hash("sha256", body, "buffer"), body.length);
  return out;
}

export function referenceDecode(bytes: Uint8Array): ReplicatedKey {
  if (!(bytes instanceof Uint8Array) || bytes.length < MAGIC.length + 1 + CHECKSUM_BYTES)
    throw bad("too short");
  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  if (
    // One-shot: a Hash object per record cost as much as hashing it.
    !hash("sha256", body, "buffer").equals(bytes.subarray(bytes.length - CHECKSUM_BYTES))
  ) {
    throw bad("checksum mismatch: the record is damaged");
  }
  const r = new Reader(body);
  for (const m of MAGIC) if (r.u8("magic") !== m) throw bad("not a key record (bad magic)");
  const format = r.u8("format");
  if (
    format !== KEY_RECORD_FORMAT &&
    format !== KEY_RECORD_FORMAT_EXTENDED &&
    format !== KEY_RECORD_FORMAT_REQUEST
  )
    throw bad(`unknown record format ${format}`);
  const id = r.str("id");
  const project = r.str("project");
  const scope = r.str("scope");
  const name = r.str("name");
  const algorithm = r.str("algorithm");
  const bitLength = r.u16("bitLength");
  const createdAtMs = r.u53("createdAtMs");
  const parentId = r.str("parentId");
  const extension: { secretType?: string; expiresAtMs?: number; request?: string } = {};
  let settled: boolean | undefined;
  if (format !== KEY_RECORD_FORMAT) {
    const secretType = r.str("secretType");
    if (secretType !== "") extension.secretType = secretType;
    if (r.flag("hasExpiry")) extension.expiresAtMs = r.u53("expiresAtMs");
    if (format === KEY_RECORD_FORMAT_EXTENDED && secretType === "" && extension.expiresAtMs === undefined)
      throw bad("format 2 without secretType or expiration (format 1 is its one encoding)");
  }
  if (format === KEY_RECORD_FORMAT_REQUEST) {
    const request = r.str("request");
    if (request === "") throw bad("format 3 without a request (formats 1 and 2 are its encodings)");
    extension.request = request;
    settled = r.flag("settled");
  }
  const created = r.stamp("created");
  const materialLength = r.u16("material length");
  if (materialLength > WRAPPED_MATERIAL_BYTES_MAX)
    throw bad(`material of ${materialLength} bytes is too long`);
  const material = r.bytes(materialLength, "material");
  const stateByte = r.u8("state");
  if (stateByte > 1) throw bad(`unknown state ${stateByte}`);
  const state = {
    value: stateByte === 0 ? ("active" as const) : ("deactivated" as const),
    stamp: r.stamp("state"),
  };
  const tombstone = r.flag("tombstone") ? r.stamp("tombstone") : null;
  const grantCount = r.u16("grant count");
  if (grantCount > GRANTS_PER_KEY_MAX) throw bad(`${grantCount} grants exceed ${GRANTS_PER_KEY_MAX}`);
  const grants = [];
  for (let i = 0; i < grantCount; i++) {
    grants.push({
      id: r.str("grant id"),
      grantee: r.str("grantee"),
      grantedBy: r.str("grantedBy"),
      createdAtMs: r.u53("grant createdAtMs"),
      expiresAtMs: r.u53("grant expiresAtMs"),
      revoked: r.flag("revoked") ? r.stamp("revoked") : null,
    });
  }
  const consumerCount = r.u16("consumer count");
  if (consumerCount > CONSUMERS_PER_KEY_MAX)
    throw bad(`${consumerCount} consumers exceed ${CONSUMERS_PER_KEY_MAX}`);
  const consumers = [];
  for (let i = 0; i < consumerCount; i++) {
    consumers.push({ key: r.str("consumer key"), present: r.flag("present"), stamp: r.stamp("consumer") });
  }
  if (r.remaining !== 0) throw bad(`${r.remaining} trailing bytes`);
  const k: ReplicatedKey = {
    fields: { id, project, scope, name, algorithm, bitLength, createdAtMs, parentId, ...extension },
    created,
    wrappedMaterial: materialLength === 0 ? null : material,
    state,
    tombstone,
    grants,
    consumers,
  };
  if (settled !== undefined) k.settled = settled;
  validateKey(k); // INVALID_RECORD for a well-formed but impossible record
  return k;
}

function bad(message: string): ReplicationError {
  return new ReplicationError("INVALID_RECORD", `key record: ${message}`);
}

class Writer {
  private readonly parts: Uint8Array[] = [];
  private length = 0;

  raw(bytes: ArrayLike<number>): void {
    const b = Uint8Array.from(bytes);
    this.parts.push(b);
    this.length += b.length;
  }
  u8(n: number): void {
    this.raw([n]);
  }
  u16(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw bad(`${n} does not fit 16 bits`);
    this.raw([n >> 8, n & 0xff]);
  }
  u32(n: number): void {
    this.raw([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
  }
  u53(n: number): void {
    this.u32(Math.floor(n / 2 ** 32));
    this.u32(n >>> 0);
  }
  str(s: string): void {
    const b = utf8.encode(s);
    if (b.length > STRING_BYTES_MAX) throw bad(`a string of ${b.length} bytes exceeds ${STRING_BYTES_MAX}`);
    if (utf8Strict.decode(b) !== s) throw bad("a string is not well-formed Unicode");
    this.u16(b.length);
    this.raw(b);
  }
  stamp(s: HlcStamp): void {
    this.u53(s.wallMs);
    this.u32(s.logical);
    this.str(s.peer);
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

class Reader {
  private o = 0;
  constructor(private readonly buf: Uint8Array) {}

  get remaining(): number {
    return this.buf.length - this.o;
  }
  private need(n: number, what: string): void {
    if (n > this.remaining) throw bad(`${what}: needs ${n} bytes, ${this.remaining} left`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.o++]!;
  }
  flag(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) throw bad(`${what} flag must be 0 or 1, got ${v}`);
    return v === 1;
  }
  u16(what: string): number {
    this.need(2, what);
    const v = (this.buf[this.o]! << 8) | this.buf[this.o + 1]!;
    this.o += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const b = this.buf;
    const v = b[this.o]! * 2 ** 24 + ((b[this.o + 1]! << 16) | (b[this.o + 2]! << 8) | b[this.o + 3]!);
    this.o += 4;
    return v;
  }
  u53(what: string): number {
    const v = this.u32(what) * 2 ** 32 + this.u32(what);
    if (v > Number.MAX_SAFE_INTEGER) throw bad(`${what} exceeds 2^53 - 1`);
    return v;
  }
  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.buf.slice(this.o, this.o + n);
    this.o += n;
    return out;
  }
  str(what: string): string {
    const n = this.u16(`${what} length`);
    if (n > STRING_BYTES_MAX) throw bad(`${what} of ${n} bytes exceeds ${STRING_BYTES_MAX}`);
    try {
      return utf8Strict.decode(this.bytes(n, what));
    } catch (e) {
      if (e instanceof ReplicationError) throw e;
      throw bad(`${what} is not valid UTF-8`);
    }
  }
  stamp(what: string): HlcStamp {
    return {
      wallMs: this.u53(`${what} wallMs`),
      logical: this.u32(`${what} logical`),
      peer: this.str(`${what} peer`),
    };
  }
}

// validateKey (replicated-key.ts) and checkStamp (hlc.ts) as they were, for the same reason.

/** Every invariant of a record; INVALID_RECORD names the first broken one. */
function validateKey(k: ReplicatedKey): void {
  const id = typeof k?.fields?.id === "string" ? k.fields.id : "?";
  const bad = (m: string): never => {
    throw new ReplicationError("INVALID_RECORD", `key ${id}: ${m}`);
  };
  if (typeof k !== "object" || k === null || typeof k.fields !== "object" || k.fields === null)
    bad("not a record");
  const f = k.fields;
  for (const name of ["id", "project", "scope", "name", "algorithm", "parentId"] as const) {
    if (typeof f[name] !== "string") bad(`${name} is not a string`);
  }
  if (f.id.length === 0) bad("id is empty");
  // An opaque or passphrase secret may declare no bit length (0); a symmetric key always has one.
  const bitsMin = f.secretType === undefined ? 1 : 0;
  if (!Number.isSafeInteger(f.bitLength) || f.bitLength < bitsMin)
    bad(`bitLength is not an integer of at least ${bitsMin}`);
  if (!Number.isSafeInteger(f.createdAtMs) || f.createdAtMs < 0)
    bad("createdAtMs is not a non-negative integer");
  // Canonical: a symmetric key carries no secretType at all, so equal records encode equally.
  if (f.secretType !== undefined && (typeof f.secretType !== "string" || !SECRET_TYPES.has(f.secretType)))
    bad(`secretType ${String(f.secretType)} is unknown`);
  if (f.expiresAtMs !== undefined && (!Number.isSafeInteger(f.expiresAtMs) || f.expiresAtMs < 0))
    bad("expiresAtMs is not a non-negative integer");
  if (f.request === undefined) {
    if (k.settled !== undefined) bad("only a key made by a client request is settled or not");
  } else {
    if (
      typeof f.request !== "string" ||
      f.request.length === 0 ||
      f.request.length > REQUEST_FINGERPRINT_BYTES_MAX
    )
      bad(`request is not a fingerprint of 1 to ${REQUEST_FINGERPRINT_BYTES_MAX} characters`);
    if (typeof k.settled !== "boolean") bad("a key made by a client request is settled or not");
  }
  checkStamp(k.created, `key ${id} created`);
  checkStamp(k.state?.stamp, `key ${id} state`);
  if (k.state.value !== "active" && k.state.value !== "deactivated")
    bad(`state ${String(k.state.value)} is unknown`);
  if (k.tombstone !== null) checkStamp(k.tombstone, `key ${id} tombstone`);
  if (k.tombstone === null) {
    if (!(k.wrappedMaterial instanceof Uint8Array) || k.wrappedMaterial.length === 0)
      bad("a live key has no material");
    if (k.wrappedMaterial!.length > WRAPPED_MATERIAL_BYTES_MAX) bad("wrapped material is too long");
  } else if (k.wrappedMaterial !== null) {
    bad("a destroyed key still holds material");
  }
  if (!Array.isArray(k.grants) || k.grants.length > GRANTS_PER_KEY_MAX)
    bad(`more than ${GRANTS_PER_KEY_MAX} grants`);
  k.grants.forEach((g, i) => {
    if (typeof g.id !== "string" || g.id.length === 0) bad(`grant ${i} has no id`);
    if (i > 0 && !(k.grants[i - 1]!.id < g.id)) bad("grants are not sorted by unique id");
    if (typeof g.grantee !== "string" || typeof g.grantedBy !== "string")
      bad(`grant ${g.id} names no grantee`);
    if (!Number.isSafeInteger(g.createdAtMs) || !Number.isSafeInteger(g.expiresAtMs))
      bad(`grant ${g.id} has bad times`);
    if (g.revoked !== null) checkStamp(g.revoked, `key ${id} grant ${g.id} revoked`);
  });
  if (!Array.isArray(k.consumers) || k.consumers.length > CONSUMERS_PER_KEY_MAX) {
    bad(`more than ${CONSUMERS_PER_KEY_MAX} consumers`);
  }
  k.consumers.forEach((c, i) => {
    if (typeof c.key !== "string" || c.key.length === 0) bad(`consumer ${i} has no key`);
    if (i > 0 && !(k.consumers[i - 1]!.key < c.key)) bad("consumers are not sorted by unique key");
    if (typeof c.present !== "boolean") bad(`consumer ${c.key} has no presence flag`);
    checkStamp(c.stamp, `key ${id} consumer ${c.key}`);
  });
}

/** Refuses a stamp that could not have been issued (for stamps decoded from the network or disk). */
function checkStamp(s: HlcStamp, what = "stamp"): void {
  const bad = (m: string): never => {
    throw new ReplicationError("INVALID_RECORD", `${what}: ${m}`);
  };
  if (typeof s !== "object" || s === null) bad("not an object");
  if (!Number.isSafeInteger(s.wallMs) || s.wallMs < 0)
    bad(`wallMs ${String(s.wallMs)} is not a non-negative integer`);
  if (!Number.isInteger(s.logical) || s.logical < 0 || s.logical > LOGICAL_MAX)
    bad(`logical ${String(s.logical)} out of range`);
  if (typeof s.peer !== "string" || s.peer.length === 0) bad("peer must be a non-empty string");
  if (utf8.encode(s.peer).length > PEER_ID_BYTES_MAX) bad(`peer is longer than ${PEER_ID_BYTES_MAX} bytes`);
}
