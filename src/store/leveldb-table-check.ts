/**
 * Checks a LevelDB table file (doc/table_format.md) end to end: the footer's magic, then every
 * block the footer reaches (index, metaindex, every data block the index names, the filter block
 * the metaindex names) against its CRC-32C, decompressing where the block says so. LevelDB only
 * checks these checksums when reads ask for it, which `classic-level` never does; a flipped byte
 * in a table was read back as a changed key name and date. Run on every table at open.
 */
import { crc32cExtend, unmaskCrc } from "./crc32c.js";
import { snappyDecompress } from "./snappy.js";

const FOOTER_BYTES = 48;
const TRAILER_BYTES = 5; // compression type u8, masked crc32c u32 LE
const MAGIC_LO = 0x8b80fb57;
const MAGIC_HI = 0xdb477524;
const NO_COMPRESSION = 0;
const SNAPPY = 1;
/** Largest block we decompress; LevelDB's blocks are about 4 KiB, index blocks a little more. */
const BLOCK_BYTES_MAX = 64 << 20;

export interface TableDamage {
  /** Byte offset of the damaged block (or footer). */
  offset: number;
  problem: string;
}

interface BlockHandle {
  offset: number;
  size: number;
}

class Damage extends Error {
  constructor(
    readonly offset: number,
    readonly problem: string,
  ) {
    super(problem);
  }
}

/** The first damage found in a table file, or undefined when every block checks out. */
export function checkTable(file: Uint8Array): TableDamage | undefined {
  try {
    if (file.length < FOOTER_BYTES) throw new Damage(0, "shorter than a table footer");
    const footerAt = file.length - FOOTER_BYTES;
    if (readU32(file, footerAt + 40) !== MAGIC_LO || readU32(file, footerAt + 44) !== MAGIC_HI) {
      throw new Damage(footerAt, "bad table magic number");
    }
    const cursor = { at: footerAt };
    const metaindex = readHandle(file, cursor, file.length, footerAt, footerAt);
    const index = readHandle(file, cursor, file.length, footerAt, footerAt);
    for (const handle of [...blockValues(readBlock(file, index, footerAt), index.offset)]) {
      readBlock(file, decodeHandle(handle, index.offset, footerAt), footerAt);
    }
    for (const handle of [...blockValues(readBlock(file, metaindex, footerAt), metaindex.offset)]) {
      readBlock(file, decodeHandle(handle, metaindex.offset, footerAt), footerAt);
    }
    return undefined;
  } catch (e) {
    if (e instanceof Damage) return { offset: e.offset, problem: e.problem };
    throw e;
  }
}

/** A block's contents, once its checksum matched (and it decompressed). */
function readBlock(file: Uint8Array, h: BlockHandle, limit: number): Uint8Array {
  if (h.offset + h.size + TRAILER_BYTES > limit)
    throw new Damage(h.offset, "block handle points past the data");
  const typeAt = h.offset + h.size;
  const crc = crc32cExtend(crc32cExtend(0, file, h.offset, typeAt), file, typeAt, typeAt + 1);
  if (crc !== unmaskCrc(readU32(file, typeAt + 1))) throw new Damage(h.offset, "block checksum mismatch");
  const raw = file.subarray(h.offset, typeAt);
  const type = file[typeAt]!;
  if (type === NO_COMPRESSION) return raw;
  if (type !== SNAPPY) throw new Damage(h.offset, `unknown block compression ${type}`);
  try {
    return snappyDecompress(raw, BLOCK_BYTES_MAX);
  } catch {
    throw new Damage(h.offset, "block does not decompress");
  }
}

/** The values of a block's entries (`[shared][non-shared][value length][key delta][value]`, then restarts). */
function* blockValues(block: Uint8Array, blockOffset: number): Generator<Uint8Array> {
  if (block.length < 4) throw new Damage(blockOffset, "block too short");
  const restarts = readU32(block, block.length - 4);
  if (restarts > (block.length - 4) / 4) throw new Damage(blockOffset, "bad restart count");
  const end = block.length - 4 - 4 * restarts;
  const cursor = { at: 0 };
  let keyLength = 0;
  while (cursor.at < end) {
    const shared = readVarint(block, cursor, end, blockOffset);
    const unshared = readVarint(block, cursor, end, blockOffset);
    const valueLength = readVarint(block, cursor, end, blockOffset);
    if (shared > keyLength || cursor.at + unshared + valueLength > end) {
      throw new Damage(blockOffset, "bad block entry");
    }
    keyLength = shared + unshared;
    cursor.at += unshared;
    yield block.subarray(cursor.at, cursor.at + valueLength);
    cursor.at += valueLength;
  }
}

function decodeHandle(value: Uint8Array, blockOffset: number, limit: number): BlockHandle {
  return readHandle(value, { at: 0 }, value.length, blockOffset, limit);
}

/** A BlockHandle (two varints) read from `b` up to `end`; it must lie below `limit` of the file. */
function readHandle(
  b: Uint8Array,
  cursor: { at: number },
  end: number,
  where: number,
  limit: number,
): BlockHandle {
  const offset = readVarint(b, cursor, end, where);
  const size = readVarint(b, cursor, end, where);
  if (offset + size > limit) throw new Damage(where, "block handle points past the data");
  return { offset, size };
}

/** A varint (up to 2^53, ample for file offsets). */
function readVarint(b: Uint8Array, cursor: { at: number }, end: number, where: number): number {
  let value = 0;
  for (let shift = 0; shift < 53; shift += 7) {
    if (cursor.at >= end) throw new Damage(where, "varint cut short");
    const byte = b[cursor.at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return value;
  }
  throw new Damage(where, "varint too long");
}

function readU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
