/**
 * What a LevelDB MANIFEST says is live (db/version_edit.cc): replaying its version edits gives
 * the table files of the current version (with their sizes) and the log number from which
 * write-ahead logs are still to be recovered. Only these files are checked at open: obsolete ones
 * a crash left behind are never read, and LevelDB deletes them.
 */
export interface LiveFiles {
  /** Table file number -> size in bytes, as recorded when the table was written. */
  tables: Map<number, number>;
  /** Logs numbered at least this (or equal to prevLogNumber) hold writes not yet in a table. */
  logNumber: number;
  prevLogNumber: number;
}

export class ManifestError extends Error {
  override readonly name = "ManifestError";
}

const COMPARATOR = 1;
const LOG_NUMBER = 2;
const NEXT_FILE_NUMBER = 3;
const LAST_SEQUENCE = 4;
const COMPACT_POINTER = 5;
const DELETED_FILE = 6;
const NEW_FILE = 7;
const PREV_LOG_NUMBER = 9;

/** Replays the edits (the MANIFEST's logical records) in order. */
export function liveFiles(edits: readonly Uint8Array[]): LiveFiles {
  const tables = new Map<string, { number: number; size: number }>();
  let logNumber = 0;
  let prevLogNumber = 0;
  for (const edit of edits) {
    const c = { at: 0 };
    while (c.at < edit.length) {
      const tag = varint(edit, c);
      switch (tag) {
        case COMPARATOR:
          skipSlice(edit, c);
          break;
        case LOG_NUMBER:
          logNumber = varint(edit, c);
          break;
        case PREV_LOG_NUMBER:
          prevLogNumber = varint(edit, c);
          break;
        case NEXT_FILE_NUMBER:
        case LAST_SEQUENCE:
          varint(edit, c);
          break;
        case COMPACT_POINTER:
          varint(edit, c);
          skipSlice(edit, c);
          break;
        case DELETED_FILE: {
          const level = varint(edit, c);
          tables.delete(`${level}/${varint(edit, c)}`);
          break;
        }
        case NEW_FILE: {
          const level = varint(edit, c);
          const number = varint(edit, c);
          const size = varint(edit, c);
          skipSlice(edit, c);
          skipSlice(edit, c);
          tables.set(`${level}/${number}`, { number, size });
          break;
        }
        default:
          throw new ManifestError(`unknown version edit tag ${tag}`);
      }
    }
  }
  return { tables: new Map([...tables.values()].map((t) => [t.number, t.size])), logNumber, prevLogNumber };
}

function skipSlice(b: Uint8Array, c: { at: number }): void {
  const length = varint(b, c);
  if (c.at + length > b.length) throw new ManifestError("slice cut short");
  c.at += length;
}

function varint(b: Uint8Array, c: { at: number }): number {
  let value = 0;
  for (let shift = 0; shift < 64; shift += 7) {
    if (c.at >= b.length) throw new ManifestError("varint cut short");
    const byte = b[c.at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return value;
  }
  throw new ManifestError("varint too long");
}
