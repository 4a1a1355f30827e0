/**
 * Per-partition digests in buckets (Swift's suffix hashes, DESIGN §4): each record of a partition
 * falls in one of 2^bucketBits buckets by a hash of its id, and a bucket's digest is the XOR of
 * H(id, version) over its records. Two replicas compare the digests, then exchange only the records
 * of the buckets that differ. XOR makes the digest order-independent and lets a write update it in
 * O(1): XOR out the old version's hash, XOR in the new one.
 *
 * The digest detects divergence between honest replicas; it is not an integrity proof (XOR of
 * hashes is linear, so a forger could build collisions). Records carry their own checksums.
 */
import { createHash } from "node:crypto";
import { ReplicationError } from "./replication-error.js";

export const DIGEST_BYTES = 32;
export const BUCKET_BITS_MAX = 12;
export const DEFAULT_BUCKET_BITS = 8;
const FORMAT = 1;
const MAGIC = [0x4c, 0x42, 0x50, 0x44]; // "LBPD"
const BUCKET_DOMAIN = Buffer.from("lockbox digest bucket v1\0", "ascii");
const ENTRY_DOMAIN = Buffer.from("lockbox digest entry v1\0", "ascii");

/** Which bucket a record id falls in. */
export function bucketOf(id: string, bucketBits: number): number {
  checkBits(bucketBits);
  if (bucketBits === 0) return 0;
  return (
    createHash("sha256").update(BUCKET_DOMAIN).update(id, "utf8").digest().readUInt16BE(0) >>>
    (16 - bucketBits)
  );
}

/** H(id, version): `version` is whatever names the record's exact content (e.g. a hash of its encoding). */
export function entryHash(id: string, version: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(Buffer.byteLength(id, "utf8"));
  return createHash("sha256").update(ENTRY_DOMAIN).update(len).update(id, "utf8").update(version).digest();
}

export class PartitionDigest {
  readonly partition: number;
  readonly bucketBits: number;
  private readonly sums: Uint8Array;
  private readonly counts: Uint32Array;

  constructor(partition: number, bucketBits = DEFAULT_BUCKET_BITS) {
    checkBits(bucketBits);
    if (!Number.isInteger(partition) || partition < 0 || partition > 0xffffff) {
      throw new ReplicationError("INVALID_ARGUMENT", `partition ${partition} out of range`);
    }
    this.partition = partition;
    this.bucketBits = bucketBits;
    this.sums = new Uint8Array((1 << bucketBits) * DIGEST_BYTES);
    this.counts = new Uint32Array(1 << bucketBits);
  }

  get buckets(): number {
    return 1 << this.bucketBits;
  }

  /** Adds a record version. Adding one the digest already holds would cancel it: callers replace instead. */
  add(id: string, version: Uint8Array): void {
    const b = bucketOf(id, this.bucketBits);
    this.xor(b, entryHash(id, version));
    this.counts[b] = this.counts[b]! + 1;
  }

  /** Removes a record version previously added. */
  remove(id: string, version: Uint8Array): void {
    const b = bucketOf(id, this.bucketBits);
    if (this.counts[b] === 0)
      throw new ReplicationError("INVALID_ARGUMENT", `bucket ${b} holds no records to remove`);
    this.xor(b, entryHash(id, version));
    this.counts[b] = this.counts[b]! - 1;
  }

  /** A record changed version. */
  replace(id: string, oldVersion: Uint8Array, newVersion: Uint8Array): void {
    this.remove(id, oldVersion);
    this.add(id, newVersion);
  }

  /** The digest of one bucket (a copy). */
  bucket(b: number): Uint8Array {
    if (!Number.isInteger(b) || b < 0 || b >= this.buckets)
      throw new ReplicationError("INVALID_ARGUMENT", `bucket ${b} out of range`);
    return this.sums.slice(b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES);
  }

  /** Records per bucket (part of what is compared, so an empty bucket never matches a non-empty one by chance). */
  count(b: number): number {
    return this.counts[b]!;
  }

  /** Buckets whose records differ from `other`'s (same partition and bucket count required). */
  diff(other: PartitionDigest): number[] {
    if (other.partition !== this.partition || other.bucketBits !== this.bucketBits) {
      throw new ReplicationError(
        "INVALID_ARGUMENT",
        "digests of different partitions or bucket counts do not compare",
      );
    }
    const out: number[] = [];
    for (let b = 0; b < this.buckets; b++) {
      if (this.counts[b] !== other.counts[b]) {
        out.push(b);
        continue;
      }
      for (let i = b * DIGEST_BYTES; i < (b + 1) * DIGEST_BYTES; i++) {
        if (this.sums[i] !== other.sums[i]) {
          out.push(b);
          break;
        }
      }
    }
    return out;
  }

  /** One hash over every bucket: equal top hashes mean nothing to exchange. */
  top(): Buffer {
    const counts = Buffer.from(this.counts.buffer, this.counts.byteOffset, this.counts.byteLength);
    return createHash("sha256").update(this.sums).update(counts).digest();
  }

  /** "LBPD" u8 format | u32 partition | u8 bucketBits | per bucket: u32 count, 32-byte digest | 32-byte SHA-256. */
  encode(): Uint8Array {
    const out = Buffer.alloc(4 + 1 + 4 + 1 + this.buckets * (4 + DIGEST_BYTES) + 32);
    let o = 0;
    out.set(MAGIC, 0);
    o = 4;
    out[o++] = FORMAT;
    out.writeUInt32BE(this.partition, o);
    o += 4;
    out[o++] = this.bucketBits;
    for (let b = 0; b < this.buckets; b++) {
      out.writeUInt32BE(this.counts[b]!, o);
      o += 4;
      out.set(this.sums.subarray(b * DIGEST_BYTES, (b + 1) * DIGEST_BYTES), o);
      o += DIGEST_BYTES;
    }
    createHash("sha256").update(out.subarray(0, o)).digest().copy(out, o);
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }

  /** Strict decoding of a peer's digest: damaged, truncated, oversized or trailing bytes are refused. */
  static decode(bytes: Uint8Array): PartitionDigest {
    const bad = (m: string): never => {
      throw new ReplicationError("INVALID_RECORD", `partition digest: ${m}`);
    };
    if (!(bytes instanceof Uint8Array) || bytes.length < 10 + 32) bad("too short");
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    const body = buf.subarray(0, buf.length - 32);
    if (
      !createHash("sha256")
        .update(body)
        .digest()
        .equals(buf.subarray(buf.length - 32))
    )
      bad("checksum mismatch");
    for (let i = 0; i < 4; i++) if (body[i] !== MAGIC[i]) bad("bad magic");
    if (body[4] !== FORMAT) bad(`unknown format ${body[4]}`);
    const partition = body.readUInt32BE(5);
    const bits = body[9]!;
    if (bits > BUCKET_BITS_MAX) bad(`bucketBits ${bits} exceeds ${BUCKET_BITS_MAX}`);
    if (partition > 0xffffff) bad(`partition ${partition} out of range`);
    const expected = 10 + (1 << bits) * (4 + DIGEST_BYTES);
    if (body.length !== expected) bad(`${body.length} bytes, expected ${expected}`);
    const d = new PartitionDigest(partition, bits);
    let o = 10;
    for (let b = 0; b < d.buckets; b++) {
      d.counts[b] = body.readUInt32BE(o);
      o += 4;
      d.sums.set(body.subarray(o, o + DIGEST_BYTES), b * DIGEST_BYTES);
      o += DIGEST_BYTES;
    }
    return d;
  }

  private xor(b: number, h: Uint8Array): void {
    const base = b * DIGEST_BYTES;
    for (let i = 0; i < DIGEST_BYTES; i++) this.sums[base + i]! ^= h[i]!;
  }
}

function checkBits(bits: number): void {
  if (!Number.isInteger(bits) || bits < 0 || bits > BUCKET_BITS_MAX) {
    throw new ReplicationError("INVALID_ARGUMENT", `bucketBits must be an integer in 0..${BUCKET_BITS_MAX}`);
  }
}
