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
  type ConsumerEntry,
  type GrantEntry,
  type ImmutableKeyFields,
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

/**
 * Every record is written into one scratch buffer and copied out once (encoding is synchronous, so
 * one buffer serves every call): a record costs two allocations and one hash instead of an array per
 * field and a concatenation. A buffer grown for an unusually large record is let go afterwards.
 */
const SCRATCH_BYTES = 4096;
let scratch: Buffer = Buffer.allocUnsafeSlow(SCRATCH_BYTES);

export function encodeReplicatedKey(k: ReplicatedKey): Uint8Array {
  validateKey(k);
  const w = new Writer(scratch);
  try {
    encodeBody(w, k);
  } finally {
    if (w.buf.length > SCRATCH_BYTES * 16) scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
    else scratch = w.buf;
  }
  const n = w.o;
  const out = new Uint8Array(n + CHECKSUM_BYTES);
  const body = w.buf.subarray(0, n);
  out.set(body);
  const sum = checksum(body);
  for (let i = 0; i < CHECKSUM_BYTES; i++) out[n + i] = sum.charCodeAt(i);
  return out;
}

/**
 * SHA-256 of `body`, one character per byte ("binary" is latin1). One-shot, as a string: a Hash
 * object per record cost as much as hashing it, and a digest Buffer (an array buffer of its own)
 * more than twice a short string.
 */
const checksum = (body: Uint8Array): string => hash("sha256", body, "binary");

function encodeBody(w: Writer, k: ReplicatedKey): void {
  w.raw(MAGIC);
  const f = k.fields;
  const requested = f.request !== undefined;
  const extended = requested || f.secretType !== undefined || f.expiresAtMs !== undefined;
  w.u8(requested ? KEY_RECORD_FORMAT_REQUEST : extended ? KEY_RECORD_FORMAT_EXTENDED : KEY_RECORD_FORMAT);
  w.str(f.id);
  w.str(f.project);
  w.str(f.scope);
  w.str(f.name);
  w.str(f.algorithm);
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
  const material = k.wrappedMaterial;
  if (material === null) w.u16(0);
  else {
    w.u16(material.length);
    w.raw(material);
  }
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
}

/** The record's version hash: its checksum, which names its exact content (for partition digests). */
export function replicatedKeyVersion(encoded: Uint8Array): Uint8Array {
  if (encoded.length < CHECKSUM_BYTES) throw bad("too short to carry a version");
  return encoded.slice(encoded.length - CHECKSUM_BYTES);
}

/**
 * Decodes and checks a record. With `materialView`, the wrapped material is a view of `bytes`
 * instead of a copy (one allocation less): only for a caller that owns `bytes`, never changes them,
 * and drops the record before it could matter (the replica's merge of an incoming version).
 */
export function decodeReplicatedKey(bytes: Uint8Array, options?: { materialView?: boolean }): ReplicatedKey {
  if (!(bytes instanceof Uint8Array) || bytes.length < MAGIC.length + 1 + CHECKSUM_BYTES)
    throw bad("too short");
  const n = bytes.length - CHECKSUM_BYTES;
  const body = bytes.subarray(0, n);
  const sum = checksum(body);
  for (let i = 0; i < CHECKSUM_BYTES; i++)
    if (sum.charCodeAt(i) !== bytes[n + i]) throw bad("checksum mismatch: the record is damaged");
  const r = new Reader(body);
  for (const m of MAGIC) if (r.u8("magic") !== m) throw bad("not a key record (bad magic)");
  const format = r.u8("format");
  if (
    format !== KEY_RECORD_FORMAT &&
    format !== KEY_RECORD_FORMAT_EXTENDED &&
    format !== KEY_RECORD_FORMAT_REQUEST
  )
    throw bad(`unknown record format ${format}`);
  const fields: ImmutableKeyFields = {
    id: r.str("id"),
    project: r.str("project"),
    scope: r.str("scope"),
    name: r.str("name"),
    algorithm: r.str("algorithm"),
    bitLength: r.u16("bitLength"),
    createdAtMs: r.u53("createdAtMs"),
    parentId: r.str("parentId"),
  };
  let settled: boolean | undefined;
  if (format !== KEY_RECORD_FORMAT) {
    const secretType = r.str("secretType");
    if (secretType !== "") fields.secretType = secretType;
    if (r.flag("hasExpiry")) fields.expiresAtMs = r.u53("expiresAtMs");
    if (format === KEY_RECORD_FORMAT_EXTENDED && secretType === "" && fields.expiresAtMs === undefined)
      throw bad("format 2 without secretType or expiration (format 1 is its one encoding)");
  }
  if (format === KEY_RECORD_FORMAT_REQUEST) {
    const request = r.str("request");
    if (request === "") throw bad("format 3 without a request (formats 1 and 2 are its encodings)");
    fields.request = request;
    settled = r.flag("settled");
  }
  const created = r.stamp("created");
  const materialLength = r.u16("material length");
  if (materialLength > WRAPPED_MATERIAL_BYTES_MAX)
    throw bad(`material of ${materialLength} bytes is too long`);
  const material = r.bytes(materialLength, "material", options?.materialView === true);
  const stateByte = r.u8("state");
  if (stateByte > 1) throw bad(`unknown state ${stateByte}`);
  const state = {
    value: stateByte === 0 ? ("active" as const) : ("deactivated" as const),
    stamp: r.stamp("state"),
  };
  const tombstone = r.flag("tombstone") ? r.stamp("tombstone") : null;
  const grantCount = r.u16("grant count");
  if (grantCount > GRANTS_PER_KEY_MAX) throw bad(`${grantCount} grants exceed ${GRANTS_PER_KEY_MAX}`);
  const grants: GrantEntry[] = [];
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
  const consumers: ConsumerEntry[] = [];
  for (let i = 0; i < consumerCount; i++) {
    consumers.push({ key: r.str("consumer key"), present: r.flag("present"), stamp: r.stamp("consumer") });
  }
  if (r.remaining !== 0) throw bad(`${r.remaining} trailing bytes`);
  const k: ReplicatedKey = {
    fields,
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

/** Writes at an offset into one buffer, growing it (by copying) when a record outgrows it. */
class Writer {
  o = 0;
  constructor(public buf: Buffer) {}

  private room(n: number): void {
    if (this.o + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.o + n));
    this.buf.copy(grown, 0, 0, this.o);
    this.buf = grown;
  }
  raw(bytes: ArrayLike<number>): void {
    this.room(bytes.length);
    this.buf.set(bytes, this.o);
    this.o += bytes.length;
  }
  u8(n: number): void {
    this.room(1);
    this.buf[this.o++] = n;
  }
  u16(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw bad(`${n} does not fit 16 bits`);
    this.room(2);
    this.buf[this.o] = n >> 8;
    this.buf[this.o + 1] = n & 0xff;
    this.o += 2;
  }
  u32(n: number): void {
    this.room(4);
    const b = this.buf;
    b[this.o] = n >>> 24;
    b[this.o + 1] = (n >>> 16) & 0xff;
    b[this.o + 2] = (n >>> 8) & 0xff;
    b[this.o + 3] = n & 0xff;
    this.o += 4;
  }
  u53(n: number): void {
    this.u32(Math.floor(n / 2 ** 32));
    this.u32(n >>> 0);
  }
  str(s: string): void {
    // ASCII (ids, peer ids, names as clients send them) is its own UTF-8: one native write, no array.
    // Anything else takes the general path, which also refuses lone surrogates.
    const n = Buffer.byteLength(s, "utf8");
    if (n !== s.length) return this.strUnicode(s);
    if (n > STRING_BYTES_MAX) throw bad(`a string of ${n} bytes exceeds ${STRING_BYTES_MAX}`);
    this.room(2 + n);
    this.buf[this.o] = n >> 8;
    this.buf[this.o + 1] = n & 0xff;
    this.o += 2 + this.buf.write(s, this.o + 2, n, "latin1");
  }
  private strUnicode(s: string): void {
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
}

/**
 * Reads at an offset, every length checked before it is read. Field names (`what`, and `part` of a
 * stamp) are joined into a message only when a read fails: a record decodes without building them.
 */
class Reader {
  private o = 0;
  /** The same bytes as a Buffer, for ASCII strings (latin1 of ASCII is ASCII): no view per string. */
  private readonly text: Buffer;
  constructor(private readonly buf: Uint8Array) {
    this.text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get remaining(): number {
    return this.buf.length - this.o;
  }
  private need(n: number, what: string, part?: string, suffix?: string): void {
    if (n > this.remaining)
      throw bad(`${label(what, part, suffix)}: needs ${n} bytes, ${this.remaining} left`);
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
  u16(what: string, part?: string, suffix?: string): number {
    this.need(2, what, part, suffix);
    const v = (this.buf[this.o]! << 8) | this.buf[this.o + 1]!;
    this.o += 2;
    return v;
  }
  u32(what: string, part?: string): number {
    this.need(4, what, part);
    const b = this.buf;
    const v = b[this.o]! * 2 ** 24 + ((b[this.o + 1]! << 16) | (b[this.o + 2]! << 8) | b[this.o + 3]!);
    this.o += 4;
    return v;
  }
  u53(what: string, part?: string): number {
    const v = this.u32(what, part) * 2 ** 32 + this.u32(what, part);
    if (v > Number.MAX_SAFE_INTEGER) throw bad(`${label(what, part)} exceeds 2^53 - 1`);
    return v;
  }
  /**
   * A copy, so the record does not alias the bytes it came in (a network or store buffer); or with
   * `view`, a plain Uint8Array view of them.
   */
  bytes(n: number, what: string, view = false): Uint8Array {
    this.need(n, what);
    const b = this.buf;
    const out = view ? new Uint8Array(b.buffer, b.byteOffset + this.o, n) : new Uint8Array(n);
    if (!view && n > 0) out.set(b.subarray(this.o, this.o + n));
    this.o += n;
    return out;
  }
  str(what: string, part?: string): string {
    const n = this.u16(what, part, "length");
    if (n > STRING_BYTES_MAX) throw bad(`${label(what, part)} of ${n} bytes exceeds ${STRING_BYTES_MAX}`);
    this.need(n, what, part);
    const start = this.o;
    this.o += n;
    if (n === 0) return "";
    const b = this.buf;
    let ascii = true;
    for (let i = start; i < start + n; i++) {
      if (b[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return this.text.toString("latin1", start, start + n);
    try {
      return utf8Strict.decode(this.buf.subarray(start, start + n));
    } catch {
      throw bad(`${label(what, part)} is not valid UTF-8`);
    }
  }
  stamp(what: string): HlcStamp {
    return {
      wallMs: this.u53(what, "wallMs"),
      logical: this.u32(what, "logical"),
      peer: this.str(what, "peer"),
    };
  }
}

/** "created peer length": a field's name in a message, joined only when one is thrown. */
const label = (what: string, part?: string, suffix?: string): string =>
  [what, part, suffix].filter((x) => x !== undefined).join(" ");
