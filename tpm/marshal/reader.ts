import { TpmDecodeError } from "./decode-error.js";

/**
 * A bounds-checked big-endian cursor over TPM bytes. Every read checks the
 * remaining length first, so a decoder built on it cannot read past its buffer.
 */
export class TpmReader {
  private offset = 0;

  constructor(private readonly bytes: Uint8Array) {}

  get position(): number {
    return this.offset;
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  private need(count: number, what: string): void {
    if (count > this.remaining) {
      throw new TpmDecodeError("TRUNCATED", what, `needs ${count} bytes, ${this.remaining} left`);
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.bytes[this.offset++]!;
  }

  u16(what: string): number {
    this.need(2, what);
    const value = (this.bytes[this.offset]! << 8) | this.bytes[this.offset + 1]!;
    this.offset += 2;
    return value;
  }

  u32(what: string): number {
    this.need(4, what);
    const b = this.bytes;
    const o = this.offset;
    const value = ((b[o]! << 24) >>> 0) + (b[o + 1]! << 16) + (b[o + 2]! << 8) + b[o + 3]!;
    this.offset += 4;
    return value;
  }

  i32(what: string): number {
    return this.u32(what) | 0;
  }

  u64(what: string): bigint {
    const high = this.u32(what);
    const low = this.u32(what);
    return (BigInt(high) << 32n) | BigInt(low);
  }

  /** A TPMI_YES_NO: only 0 and 1 are valid, so decoding then encoding is exact. */
  bool(what: string): boolean {
    const value = this.u8(what);
    if (value > 1) throw new TpmDecodeError("INCONSISTENT", what, `YES_NO byte must be 0 or 1, got ${value}`);
    return value === 1;
  }

  /** Copies `count` bytes out (a copy, so callers may keep it after the buffer is reused). */
  bytesN(count: number, what: string): Uint8Array {
    this.need(count, what);
    const out = this.bytes.slice(this.offset, this.offset + count);
    this.offset += count;
    return out;
  }

  /** A TPM2B: a 16-bit size then that many bytes, refused above `maxBytes`. */
  tpm2b(what: string, maxBytes: number): Uint8Array {
    const size = this.u16(`${what}.size`);
    if (size > maxBytes) throw new TpmDecodeError("OVERSIZE", what, `size ${size} exceeds ${maxBytes}`);
    return this.bytesN(size, what);
  }

  /**
   * A TPM2B that wraps a structure: the structure must fill the size exactly.
   * An empty TPM2B (size 0) yields undefined, as the spec allows for inputs.
   */
  sized<T>(what: string, maxBytes: number, decode: (inner: TpmReader) => T): T | undefined {
    const body = this.tpm2b(what, maxBytes);
    if (body.length === 0) return undefined;
    const inner = new TpmReader(body);
    const value = decode(inner);
    inner.end(what);
    return value;
  }

  /** Reads a list count and refuses counts above `maxCount` before allocating anything. */
  count(what: string, maxCount: number): number {
    const count = this.u32(`${what}.count`);
    if (count > maxCount) throw new TpmDecodeError("OVERSIZE", what, `count ${count} exceeds ${maxCount}`);
    return count;
  }

  rest(): Uint8Array {
    return this.bytesN(this.remaining, "rest");
  }

  /** Asserts that every byte was consumed. */
  end(what: string): void {
    if (this.remaining !== 0) {
      throw new TpmDecodeError("TRAILING_BYTES", what, `${this.remaining} bytes left after the structure`);
    }
  }
}

/** Decodes a whole buffer as one structure, refusing trailing bytes. */
export function decodeExact<T>(bytes: Uint8Array, what: string, decode: (reader: TpmReader) => T): T {
  const reader = new TpmReader(bytes);
  const value = decode(reader);
  reader.end(what);
  return value;
}
