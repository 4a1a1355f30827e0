/**
 * CRC-32C (Castagnoli), the checksum LevelDB puts on every log record and table block, and its
 * "mask" (LevelDB's crc32c.h: a checksum stored next to the data it covers is rotated and offset,
 * so that the checksum of a string that itself holds checksums stays well distributed).
 * Slice-by-4 tables: about 4 bytes per step, plenty for checking a store at open.
 */
const POLY = 0x82f63b78;
const TABLES: Uint32Array[] = (() => {
  const t0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[i] = c >>> 0;
  }
  const tables = [t0];
  for (let n = 1; n < 4; n++) {
    const prev = tables[n - 1]!;
    const t = new Uint32Array(256);
    for (let i = 0; i < 256; i++) t[i] = (prev[i]! >>> 8) ^ t0[prev[i]! & 0xff]!;
    tables.push(t);
  }
  return tables;
})();

/** Continues a CRC-32C over `data[start, end)`; start from crc32c's initial value 0. */
export function crc32cExtend(crc: number, data: Uint8Array, start = 0, end = data.length): number {
  const [t0, t1, t2, t3] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = ~crc >>> 0;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    c ^= data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    c = t3[c & 0xff]! ^ t2[(c >>> 8) & 0xff]! ^ t1[(c >>> 16) & 0xff]! ^ t0[c >>> 24]!;
  }
  for (; i < end; i++) c = t0[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

export function crc32c(data: Uint8Array, start = 0, end = data.length): number {
  return crc32cExtend(0, data, start, end);
}

const MASK_DELTA = 0xa282ead8;

/** LevelDB's crc32c::Unmask: the CRC a stored (masked) checksum stands for. */
export function unmaskCrc(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}

/** LevelDB's crc32c::Mask. */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}
