/**
 * How raft state is laid out as key-value records, independent of the key-value engine: the production
 * storage (LevelDB, src/) and the simulator's disk (test/sim) both write exactly these records, so a
 * simulated bit flip hits the same checksums a real one would.
 *
 * Keys (UTF-8 strings):
 *   "hardstate"          { term, vote, commit }
 *   "snapshot"           snapshot metadata + state machine image
 *   "e" + 16-digit index one log entry; zero-padding makes key order equal index order
 * Every value is framed as [u32 CRC-32 of the rest][body], so a damaged record is detected on read and
 * refused (RaftStorageCorrupt), never served.
 */
import { crc32 } from "node:zlib";
import {
  emptyHardState,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type PersistedState,
  type Snapshot,
} from "../core/types.js";
import type { RaftStorageUpdate } from "./raft-storage.js";

export const HARD_STATE_KEY = "hardstate";
export const SNAPSHOT_KEY = "snapshot";
const ENTRY_PREFIX = "e";
const INDEX_DIGITS = 16; // Number.MAX_SAFE_INTEGER has 16 digits

export const entryKey = (index: number): string => ENTRY_PREFIX + String(index).padStart(INDEX_DIGITS, "0");
export const ENTRY_KEY_MIN = entryKey(0);
export const ENTRY_KEY_MAX = entryKey(Number.MAX_SAFE_INTEGER);

/** Stored raft state that cannot be decoded, fails its checksum or is inconsistent: never start on it. */
export class RaftStorageCorrupt extends Error {
  override readonly name = "RaftStorageCorrupt";
  readonly code = "RAFT_STORAGE_CORRUPT";
}

export type RecordOp = { type: "put"; key: string; value: Uint8Array } | { type: "del"; key: string };

/** Range of entry keys on disk: [first, last], with last < first when there are none. */
export interface EntryRange {
  first: number;
  last: number;
}

/** The one atomic batch that persists a Ready's update, and the entry range after it. */
export function saveOps(
  update: RaftStorageUpdate,
  range: EntryRange,
): { ops: RecordOp[]; range: EntryRange } {
  const ops: RecordOp[] = [];
  let { first, last } = range;
  if (update.snapshot !== null) {
    // The core discarded its whole log: so do we.
    for (let i = first; i <= last; i++) ops.push({ type: "del", key: entryKey(i) });
    ops.push({ type: "put", key: SNAPSHOT_KEY, value: encodeSnapshot(update.snapshot) });
    first = update.snapshot.metadata.index + 1;
    last = update.snapshot.metadata.index;
  }
  if (update.entries.length > 0) {
    const from = update.entries[0]!.index;
    const to = update.entries[update.entries.length - 1]!.index;
    if (to - from + 1 !== update.entries.length) throw new RangeError("entries to save are not contiguous");
    // Conflicting suffix beyond the new entries; the ones in [from, to] are overwritten by the puts.
    for (let i = Math.max(to + 1, first); i <= last; i++) ops.push({ type: "del", key: entryKey(i) });
    for (const e of update.entries) ops.push({ type: "put", key: entryKey(e.index), value: encodeEntry(e) });
    if (last < first) first = from;
    first = Math.min(first, from);
    last = to;
  }
  if (update.hardState !== null) {
    ops.push({ type: "put", key: HARD_STATE_KEY, value: encodeHardState(update.hardState) });
  }
  return { ops, range: { first, last } };
}

/** The atomic batch that stores an application snapshot and deletes the entries it covers. */
export function compactOps(snapshot: Snapshot, range: EntryRange): { ops: RecordOp[]; range: EntryRange } {
  const upTo = Math.min(snapshot.metadata.index, range.last);
  const ops: RecordOp[] = [{ type: "put", key: SNAPSHOT_KEY, value: encodeSnapshot(snapshot) }];
  for (let i = range.first; i <= upTo; i++) ops.push({ type: "del", key: entryKey(i) });
  return { ops, range: upTo >= range.first ? { first: upTo + 1, last: range.last } : range };
}

/**
 * Rebuilds the persisted state from the stored records (`entries` in key order), verifying every checksum
 * and the log's shape; also returns the entry range on disk.
 */
export function loadRecords(
  hardStateBytes: Uint8Array | undefined,
  snapshotBytes: Uint8Array | undefined,
  entries: Iterable<[string, Uint8Array]>,
): { state: PersistedState; range: EntryRange } {
  const hardState = hardStateBytes === undefined ? emptyHardState() : decodeHardState(hardStateBytes);
  const snapshot = snapshotBytes === undefined ? null : decodeSnapshot(snapshotBytes);
  const snapIndex = snapshot?.metadata.index ?? 0;
  const out: Entry[] = [];
  let first = Infinity;
  let last = 0;
  for (const [key, value] of entries) {
    const e = decodeEntry(value);
    if (key !== entryKey(e.index)) throw new RaftStorageCorrupt(`entry under ${key} claims index ${e.index}`);
    first = Math.min(first, e.index);
    last = Math.max(last, e.index);
    // Entries at or below the snapshot are leftovers of a compaction interrupted by a crash.
    if (e.index <= snapIndex) continue;
    const prev = out[out.length - 1];
    const expected = prev === undefined ? snapIndex + 1 : prev.index + 1;
    if (e.index !== expected)
      throw new RaftStorageCorrupt(`log gap: expected entry ${expected}, found ${e.index}`);
    out.push(e);
  }
  return {
    state: { hardState, snapshot, entries: out },
    range: { first: last === 0 ? 1 : first, last },
  };
}

// ---- record codecs ----------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** [u32 CRC-32 of body][body]. */
function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, crc32(body) >>> 0);
  out.set(body, 4);
  return out;
}

function unframe(bytes: Uint8Array, what: string): Uint8Array {
  if (bytes.length < 4) throw new RaftStorageCorrupt(`${what}: truncated record`);
  const want = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  const body = bytes.subarray(4);
  if (crc32(body) >>> 0 !== want) throw new RaftStorageCorrupt(`${what}: checksum mismatch`);
  return body;
}

function encodeJson(v: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(v));
}

function decodeJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch {
    throw new RaftStorageCorrupt(`${what}: not JSON`);
  }
}

/** [u32 header length][header JSON][data]: the header has every field but `data`, bytes as base64. */
function withData(header: unknown, data: Uint8Array): Uint8Array {
  const h = encodeJson(header);
  const out = new Uint8Array(4 + h.length + data.length);
  new DataView(out.buffer).setUint32(0, h.length);
  out.set(h, 4);
  out.set(data, 4 + h.length);
  return frame(out);
}

function splitData(framed: Uint8Array, what: string): { header: Record<string, unknown>; data: Uint8Array } {
  const bytes = unframe(framed, what);
  if (bytes.length < 4) throw new RaftStorageCorrupt(`${what}: truncated`);
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
  if (4 + len > bytes.length) throw new RaftStorageCorrupt(`${what}: header longer than value`);
  const header = decodeJson(bytes.subarray(4, 4 + len), what);
  if (typeof header !== "object" || header === null)
    throw new RaftStorageCorrupt(`${what}: header not an object`);
  return { header: header as Record<string, unknown>, data: bytes.slice(4 + len) };
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
const unb64 = (s: unknown, what: string): Uint8Array => {
  if (typeof s !== "string") throw new RaftStorageCorrupt(`${what}: not base64`);
  return new Uint8Array(Buffer.from(s, "base64"));
};

function uint(v: unknown, what: string): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0)
    throw new RaftStorageCorrupt(`${what}: not an index/term`);
  return v as number;
}

function confState(v: unknown, what: string): ConfState {
  const c = v as { voters?: unknown; learners?: unknown } | null;
  const ids = (x: unknown): x is string[] => Array.isArray(x) && x.every((i) => typeof i === "string");
  if (c === null || typeof c !== "object" || !ids(c.voters) || !ids(c.learners)) {
    throw new RaftStorageCorrupt(`${what}: bad configuration`);
  }
  return { voters: [...c.voters], learners: [...c.learners] };
}

export function encodeEntry(e: Entry): Uint8Array {
  const cc = e.confChange === null ? null : { ...e.confChange, context: b64(e.confChange.context) };
  return withData(
    { index: e.index, term: e.term, type: e.type, confChange: cc, confState: e.confState },
    e.data,
  );
}

export function decodeEntry(bytes: Uint8Array): Entry {
  const { header: h, data } = splitData(bytes, "entry");
  let confChange: ConfChange | null = null;
  if (h.confChange !== null && h.confChange !== undefined) {
    const c = h.confChange as Record<string, unknown>;
    if (typeof c.nodeId !== "string") throw new RaftStorageCorrupt("entry: bad conf change");
    confChange = {
      type: uint(c.type, "entry conf change type") as ConfChange["type"],
      nodeId: c.nodeId,
      context: unb64(c.context, "entry conf change context"),
    };
  }
  return {
    index: uint(h.index, "entry index"),
    term: uint(h.term, "entry term"),
    type: uint(h.type, "entry type") as Entry["type"],
    data,
    confChange,
    confState: h.confState === null || h.confState === undefined ? null : confState(h.confState, "entry"),
  };
}

export function encodeSnapshot(s: Snapshot): Uint8Array {
  return withData(s.metadata, s.data);
}

export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  const { header: h, data } = splitData(bytes, "snapshot");
  return {
    metadata: {
      index: uint(h.index, "snapshot index"),
      term: uint(h.term, "snapshot term"),
      confState: confState(h.confState, "snapshot"),
    },
    data,
  };
}

export function encodeHardState(hs: HardState): Uint8Array {
  return frame(encodeJson({ term: hs.term, vote: hs.vote, commit: hs.commit }));
}

export function decodeHardState(bytes: Uint8Array): HardState {
  const h = decodeJson(unframe(bytes, "hard state"), "hard state") as Record<string, unknown> | null;
  if (h === null || typeof h !== "object") throw new RaftStorageCorrupt("hard state: not an object");
  if (h.vote !== null && typeof h.vote !== "string") throw new RaftStorageCorrupt("hard state: bad vote");
  return {
    term: uint(h.term, "hard state term"),
    vote: h.vote as string | null,
    commit: uint(h.commit, "hard state commit"),
  };
}
