/**
 * Reader of LevelDB's log format (doc/log_format.md), used for the write-ahead logs and the
 * MANIFEST: 32 KiB blocks of physical records `[masked crc32c u32 LE][length u16 LE][type u8]
 * [data]`, where the CRC covers type and data and a logical record is one FULL record or a
 * FIRST, MIDDLE..., LAST chain. LevelDB itself, without paranoid checks, logs "ignoring error"
 * and drops what follows a damaged record; this reader reports the damage instead (where, and
 * what), so the store refuses to open.
 *
 * The one thing it accepts at the end of a file, as LevelDB does, is an incomplete tail: a record
 * cut short by a crash while it was being appended, i.e. one that was never synced, so never
 * acknowledged. A length field damaged to point past the end looks the same, so a short tail is
 * accepted only when no shorter length would make its checksum match.
 */
import { crc32cExtend, unmaskCrc } from "./crc32c.js";

export const LOG_BLOCK_BYTES = 32768;
const HEADER_BYTES = 7;
const FULL = 1;
const FIRST = 2;
const MIDDLE = 3;
const LAST = 4;

export interface LogDamage {
  /** Byte offset of the damaged physical record. */
  offset: number;
  problem: string;
}

export interface LogContents {
  /** The logical records before any damage. */
  records: Uint8Array[];
  damage?: LogDamage;
}

export function readLogRecords(file: Uint8Array): LogContents {
  const records: Uint8Array[] = [];
  let fragments: Uint8Array[] | undefined;
  let offset = 0;
  const damaged = (problem: string): LogContents => ({ records, damage: { offset, problem } });
  while (offset < file.length) {
    const blockLeft = LOG_BLOCK_BYTES - (offset % LOG_BLOCK_BYTES);
    if (blockLeft < HEADER_BYTES) {
      offset += blockLeft; // a block's tail too short for a header is padding
      continue;
    }
    if (file.length - offset < HEADER_BYTES) break; // a header cut short by a crash
    const storedCrc = readU32(file, offset);
    const length = file[offset + 4]! | (file[offset + 5]! << 8);
    const type = file[offset + 6]!;
    const dataStart = offset + HEADER_BYTES;
    if (type === 0 && length === 0 && storedCrc === 0) {
      // Zeros: preallocated space or a block never written. Fine only if nothing follows.
      if (allZero(file, offset)) break;
      return damaged("zeroed record header followed by data");
    }
    if (dataStart + length > file.length) {
      if (checksumMatchesShorter(file, offset, storedCrc)) return damaged("record length damaged");
      break; // an append cut short by a crash: never acknowledged
    }
    if (HEADER_BYTES + length > blockLeft) return damaged("record length crosses its block");
    const crc = crc32cExtend(
      crc32cExtend(0, file, offset + 6, offset + 7),
      file,
      dataStart,
      dataStart + length,
    );
    if (crc !== unmaskCrc(storedCrc)) return damaged("checksum mismatch");
    const data = file.subarray(dataStart, dataStart + length);
    if (type === FULL || type === FIRST) {
      if (fragments !== undefined) return damaged("fragmented record without its last part");
      if (type === FULL) records.push(data);
      else fragments = [data];
    } else if (type === MIDDLE || type === LAST) {
      if (fragments === undefined) return damaged("fragment without the start of its record");
      fragments.push(data);
      if (type === LAST) {
        records.push(Buffer.concat(fragments));
        fragments = undefined;
      }
    } else {
      return damaged(`unknown record type ${type}`);
    }
    offset = dataStart + length;
  }
  // A record whose last fragments were cut off by a crash was never acknowledged: dropped, as LevelDB does.
  return { records };
}

/** Would the record at `offset` have a matching checksum with some length shorter than the file's rest? */
function checksumMatchesShorter(file: Uint8Array, offset: number, storedCrc: number): boolean {
  const want = unmaskCrc(storedCrc);
  const blockEnd = offset - (offset % LOG_BLOCK_BYTES) + LOG_BLOCK_BYTES;
  const end = Math.min(file.length, blockEnd);
  let crc = crc32cExtend(0, file, offset + 6, offset + 7);
  for (let i = offset + HEADER_BYTES; ; i++) {
    if (crc === want) return true;
    if (i >= end) return false;
    crc = crc32cExtend(crc, file, i, i + 1);
  }
}

function allZero(file: Uint8Array, from: number): boolean {
  for (let i = from; i < file.length; i++) if (file[i] !== 0) return false;
  return true;
}

function readU32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
