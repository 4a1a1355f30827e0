/**
 * Just enough of the protobuf wire format to build requests by hand,
 * including ones no well-behaved encoder would produce: wrong wire types,
 * unknown field numbers, out-of-range varints, truncated lengths.
 */

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

export type WireField =
  | { no: number; wire: typeof WIRE_VARINT; value: bigint }
  | { no: number; wire: typeof WIRE_FIXED64 | typeof WIRE_FIXED32 | typeof WIRE_LEN; value: Uint8Array }
  /** Any other wire type number (3, 4, 6, 7): the tag alone, then raw bytes. */
  | { no: number; wire: number; value: Uint8Array; raw: true };

/** Base-128 varint; negative numbers as 64-bit two's complement (10 bytes), as protobuf does. */
export function varint(v: bigint): Buffer {
  let n = v < 0n ? (1n << 64n) + v : v;
  if (n < 0n || n >= 1n << 64n) n &= (1n << 64n) - 1n;
  const out: number[] = [];
  do {
    let byte = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) byte |= 0x80;
    out.push(byte);
  } while (n > 0n);
  return Buffer.from(out);
}

export function encodeFields(fields: readonly WireField[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    parts.push(varint((BigInt(f.no) << 3n) | BigInt(f.wire & 7)));
    if ("raw" in f) parts.push(Buffer.from(f.value));
    else if (f.wire === WIRE_VARINT) parts.push(varint(f.value));
    else if (f.wire === WIRE_LEN) parts.push(varint(BigInt(f.value.length)), Buffer.from(f.value));
    else parts.push(Buffer.from(f.value)); // fixed32/64: the caller sizes it (or deliberately does not)
  }
  return Buffer.concat(parts);
}

export const str = (no: number, s: string): WireField => ({
  no,
  wire: WIRE_LEN,
  value: Buffer.from(s, "utf8"),
});
export const uint = (no: number, v: number | bigint): WireField => ({
  no,
  wire: WIRE_VARINT,
  value: BigInt(v),
});
export const bytes = (no: number, b: Uint8Array): WireField => ({ no, wire: WIRE_LEN, value: b });
export const message = (no: number, fields: readonly WireField[]): WireField => ({
  no,
  wire: WIRE_LEN,
  value: encodeFields(fields),
});
