/**
 * Bytes of a replicated key record, as replicas store and stream them: versioned, checksummed and
 * canonical (one record has exactly one encoding, so the checksum doubles as the record's version
 * hash for partition digests). Decoding treats the bytes as hostile: the checksum first, every length
 * bounded before it is read, trailing bytes refused, and the record must pass validateKey. Errors
 * never carry the wrapped material.
 *
 * Layout (big-endian), format 1:
 *   "LBRK" u8 format
 *   | str id | str project | str scope | str name | str algorithm | u16 bitLength | u53 createdAtMs | str parentId
 *   | stamp created | u16 materialLength, material | u8 state (0 active, 1 deactivated), stamp
 *   | u8 hasTombstone, [stamp] | u16 grantCount, per grant: str id, str grantee, str grantedBy,
 *     u53 createdAtMs, u53 expiresAtMs, u8 revoked, [stamp]
 *   | u16 consumerCount, per consumer: str key, u8 present, stamp
 *   | 32-byte SHA-256 of everything before it
 * where str = u16 length + UTF-8 (at most STRING_BYTES_MAX), stamp = u53 wallMs, u32 logical, str peer,
 * and u53 = u64 below 2^53.
 *
 * Format 2 is format 1 with, right after parentId: `str secretType | u8 hasExpiry, [u53 expiresAtMs]`.
 * A record with neither (a symmetric key that never expires) is always written in format 1, and a
 * format-2 record that carries neither is refused, so every record still has exactly one encoding.
 *
 * Format 3 is format 2 with, right after the expiration: `str request | u8 settled`, for exactly the
 * records made by a create with a client request id (replicated-key.ts, rival versions); a format-3
 * record with an empty request is refused, and such records are never written in format 1 or 2.
 */
import { hash } from "node:crypto";
import type { HlcStamp } from "./hlc.js";
import {
  CONSUMERS_PER_KEY_MAX,
  GRANTS_PER_KEY_MAX,
  validateKey,
  WRAPPED_MATERIAL_BYTES_MAX,
  type ReplicatedKey,
} from "./replicated-key.js";
import { ReplicationError } from "./replication-error.js";

export const KEY_RECORD_FORMAT = 1;
/** Format 1 plus secret type and expiration (only for records that carry one of them). */
export const KEY_RECORD_FORMAT_EXTENDED = 2;
/** Format 2 plus the client request's fingerprint and the settled flag (records made by a request id). */
export const KEY_RECORD_FORMAT_REQUEST = 3;
const MAGIC = [0x4c, 0x42, 0x52, 0x4b]; // "LBRK"
const CHECKSUM_BYTES = 32;
export const STRING_BYTES_MAX = 1024;

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function encodeReplicatedKey(k: ReplicatedKey): Uint8Array {
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

/** The record's version hash: its checksum, which names its exact content (for partition digests). */
export function replicatedKeyVersion(encoded: Uint8Array): Uint8Array {
  if (encoded.length < CHECKSUM_BYTES) throw bad("too short to carry a version");
  return encoded.slice(encoded.length - CHECKSUM_BYTES);
}

export function decodeReplicatedKey(bytes: Uint8Array): ReplicatedKey {
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
