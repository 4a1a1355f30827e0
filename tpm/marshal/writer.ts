/** A growable big-endian byte writer for TPM structures. */
export class TpmWriter {
  private buffer = new Uint8Array(256);
  private length = 0;

  private ensure(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buffer.subarray(0, this.length));
    this.buffer = next;
  }

  u8(value: number): this {
    assertRange(value, 0xff, "u8");
    this.ensure(1);
    this.buffer[this.length++] = value;
    return this;
  }

  u16(value: number): this {
    assertRange(value, 0xffff, "u16");
    this.ensure(2);
    this.buffer[this.length++] = value >>> 8;
    this.buffer[this.length++] = value & 0xff;
    return this;
  }

  u32(value: number): this {
    assertRange(value, 0xffffffff, "u32");
    this.ensure(4);
    this.buffer[this.length++] = value >>> 24;
    this.buffer[this.length++] = (value >>> 16) & 0xff;
    this.buffer[this.length++] = (value >>> 8) & 0xff;
    this.buffer[this.length++] = value & 0xff;
    return this;
  }

  i32(value: number): this {
    return this.u32(value >>> 0);
  }

  u64(value: bigint): this {
    if (value < 0n || value > 0xffffffffffffffffn) throw new RangeError(`u64 out of range`);
    this.u32(Number(value >> 32n));
    return this.u32(Number(value & 0xffffffffn));
  }

  bool(value: boolean): this {
    return this.u8(value ? 1 : 0);
  }

  bytes(value: Uint8Array): this {
    this.ensure(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
    return this;
  }

  tpm2b(value: Uint8Array): this {
    this.u16(value.length);
    return this.bytes(value);
  }

  /** A TPM2B around a structure; undefined writes the empty TPM2B (size 0). */
  sized(encode: ((inner: TpmWriter) => void) | undefined): this {
    if (encode === undefined) return this.u16(0);
    const inner = new TpmWriter();
    encode(inner);
    return this.tpm2b(inner.finish());
  }

  get size(): number {
    return this.length;
  }

  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

function assertRange(value: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${what} out of range: ${value}`);
  }
}

/** Encodes one structure to bytes. */
export function encode(marshal: (writer: TpmWriter) => void): Uint8Array {
  const writer = new TpmWriter();
  marshal(writer);
  return writer.finish();
}
