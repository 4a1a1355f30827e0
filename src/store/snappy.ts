/**
 * Snappy decompression (format_description.txt of google/snappy), for reading LevelDB table
 * blocks when checking them. Hostile-input discipline: every length and offset is checked
 * before use, the output size is declared up front and capped, and anything malformed throws.
 */
export class SnappyError extends Error {
  override readonly name = "SnappyError";
}

/** Decompresses `input`; the declared size must be at most `outputBytesMax`. */
export function snappyDecompress(input: Uint8Array, outputBytesMax: number): Uint8Array {
  let ip = 0;
  const bad = (why: string): never => {
    throw new SnappyError(why);
  };
  // Preamble: the uncompressed length as a varint32.
  let size = 0;
  for (let shift = 0; ; shift += 7) {
    if (shift > 28 || ip >= input.length) bad("bad length preamble");
    const b = input[ip++]!;
    size += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
  }
  if (size > outputBytesMax) bad(`declared size ${size} exceeds ${outputBytesMax}`);
  const out = new Uint8Array(size);
  let op = 0;
  while (ip < input.length) {
    const tag = input[ip++]!;
    let length: number;
    let offset = 0;
    switch (tag & 3) {
      case 0: {
        length = (tag >>> 2) + 1;
        if (length > 60) {
          const extra = length - 60;
          if (ip + extra > input.length) bad("literal length cut short");
          length = 0;
          for (let k = 0; k < extra; k++) length += input[ip + k]! * 2 ** (8 * k);
          length += 1;
          ip += extra;
        }
        if (ip + length > input.length || op + length > size) bad("literal overruns");
        out.set(input.subarray(ip, ip + length), op);
        ip += length;
        op += length;
        continue;
      }
      case 1:
        if (ip + 1 > input.length) bad("copy cut short");
        length = ((tag >>> 2) & 7) + 4;
        offset = ((tag >>> 5) << 8) | input[ip++]!;
        break;
      case 2:
        if (ip + 2 > input.length) bad("copy cut short");
        length = (tag >>> 2) + 1;
        offset = input[ip]! | (input[ip + 1]! << 8);
        ip += 2;
        break;
      default:
        if (ip + 4 > input.length) bad("copy cut short");
        length = (tag >>> 2) + 1;
        offset = (input[ip]! | (input[ip + 1]! << 8) | (input[ip + 2]! << 16) | (input[ip + 3]! << 24)) >>> 0;
        ip += 4;
    }
    if (offset === 0 || offset > op || op + length > size) bad("copy out of range");
    for (let k = 0; k < length; k++, op++) out[op] = out[op - offset]!;
  }
  if (op !== size) bad(`decompressed ${op} of ${size} bytes`);
  return out;
}
