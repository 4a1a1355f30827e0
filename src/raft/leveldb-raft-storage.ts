/**
 * RaftStorage on one LevelDB sublevel. It takes the sublevel (not a path) so the raft log lives in the
 * peer's single LevelDB beside the records (DESIGN.md §7); one process, one database. Reads go to the
 * sublevel; writes go through `write` when given (in the peer: the store's group commit, which syncs
 * every batch, so there every write is synced whatever the driver asks), else straight to the sublevel.
 *
 * Layout inside the sublevel (keys are UTF-8 strings, values bytes):
 *   "hardstate"          JSON { term, vote, commit }
 *   "snapshot"           encoded snapshot (metadata + state machine image)
 *   "e" + 16-digit index one log entry; zero-padding makes key order equal index order
 *
 * Every write is one atomic batch, with { sync: true } whenever the driver asks for durability (always
 * for entries, snapshots, term and vote), so it is on disk before the driver sends anything that depends
 * on it. compact() always syncs.
 */
import type { AbstractSublevel } from "abstract-level";
import type { RaftStorage, RaftStorageUpdate } from "../../cluster/raft/driver/raft-storage.js";
import {
  emptyHardState,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type PersistedState,
  type Snapshot,
} from "../../cluster/raft/core/types.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RaftSublevel = AbstractSublevel<any, any, string, Uint8Array>;

const HARD_STATE_KEY = "hardstate";
const SNAPSHOT_KEY = "snapshot";
const ENTRY_PREFIX = "e";
const INDEX_DIGITS = 16; // Number.MAX_SAFE_INTEGER has 16 digits

/** Stored raft state that cannot be decoded or is inconsistent: the node must not start on it. */
export class RaftStorageCorrupt extends Error {
  override readonly name = "RaftStorageCorrupt";
  readonly code = "RAFT_STORAGE_CORRUPT";
}

/** One write to the raft sublevel; a list of them is written atomically. */
export type RaftStoreOp = { type: "put"; key: string; value: Uint8Array } | { type: "del"; key: string };
type Op = RaftStoreOp;

export interface LevelDbRaftStorageOptions {
  /**
   * Writes `ops` to the raft sublevel as one atomic batch, resolving once it is on disk (synced at least
   * when `sync` is set). Default: a batch on the sublevel itself.
   */
  write?: (ops: RaftStoreOp[], sync: boolean) => Promise<void>;
}

export const entryKey = (index: number): string => ENTRY_PREFIX + String(index).padStart(INDEX_DIGITS, "0");

export class LevelDbRaftStorage implements RaftStorage {
  /** Range of entry keys on disk ([first, last]; last < first when none), kept to delete by index. */
  #first = 1;
  #last = 0;
  #loaded = false;

  readonly #write: (ops: RaftStoreOp[], sync: boolean) => Promise<void>;

  constructor(
    readonly db: RaftSublevel,
    options: LevelDbRaftStorageOptions = {},
  ) {
    this.#write = options.write ?? ((ops, sync) => this.db.batch(ops, { sync } as object));
  }

  async load(): Promise<PersistedState> {
    const hsBytes = await this.db.get(HARD_STATE_KEY);
    const hardState = hsBytes === undefined ? emptyHardState() : decodeHardState(hsBytes);
    const snapBytes = await this.db.get(SNAPSHOT_KEY);
    const snapshot = snapBytes === undefined ? null : decodeSnapshot(snapBytes);
    const snapIndex = snapshot?.metadata.index ?? 0;
    const entries: Entry[] = [];
    let first = Infinity;
    let last = 0;
    for await (const [key, value] of this.db.iterator({
      gte: entryKey(0),
      lte: entryKey(Number.MAX_SAFE_INTEGER),
    })) {
      const e = decodeEntry(value);
      if (key !== entryKey(e.index))
        throw new RaftStorageCorrupt(`entry under ${key} claims index ${e.index}`);
      first = Math.min(first, e.index);
      last = Math.max(last, e.index);
      // Entries at or below the snapshot are leftovers of a compaction interrupted by a crash.
      if (e.index <= snapIndex) continue;
      const prev = entries[entries.length - 1];
      const expected = prev === undefined ? snapIndex + 1 : prev.index + 1;
      if (e.index !== expected)
        throw new RaftStorageCorrupt(`log gap: expected entry ${expected}, found ${e.index}`);
      entries.push(e);
    }
    this.#first = last === 0 ? 1 : first;
    this.#last = last;
    this.#loaded = true;
    return { hardState, snapshot, entries };
  }

  async save(update: RaftStorageUpdate): Promise<void> {
    this.#assertLoaded();
    const ops: Op[] = [];
    let first = this.#first;
    let last = this.#last;
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
      for (const e of update.entries)
        ops.push({ type: "put", key: entryKey(e.index), value: encodeEntry(e) });
      if (last < first) first = from;
      first = Math.min(first, from);
      last = to;
    }
    if (update.hardState !== null) {
      ops.push({ type: "put", key: HARD_STATE_KEY, value: encodeJson(update.hardState) });
    }
    if (ops.length === 0) return;
    await this.#write(ops, update.sync);
    this.#first = first;
    this.#last = last;
  }

  async compact(snapshot: Snapshot): Promise<void> {
    this.#assertLoaded();
    const upTo = Math.min(snapshot.metadata.index, this.#last);
    const ops: Op[] = [{ type: "put", key: SNAPSHOT_KEY, value: encodeSnapshot(snapshot) }];
    for (let i = this.#first; i <= upTo; i++) ops.push({ type: "del", key: entryKey(i) });
    await this.#write(ops, true);
    if (upTo >= this.#first) this.#first = upTo + 1;
  }

  /** The sublevel belongs to the caller's database; closing that database is the caller's job. */
  async close(): Promise<void> {}

  #assertLoaded(): void {
    if (!this.#loaded) throw new Error("LevelDbRaftStorage: load() must run before any write");
  }
}

// ---- codecs ---------------------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

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
  return out;
}

function splitData(bytes: Uint8Array, what: string): { header: Record<string, unknown>; data: Uint8Array } {
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

function decodeHardState(bytes: Uint8Array): HardState {
  const h = decodeJson(bytes, "hard state") as Record<string, unknown> | null;
  if (h === null || typeof h !== "object") throw new RaftStorageCorrupt("hard state: not an object");
  if (h.vote !== null && typeof h.vote !== "string") throw new RaftStorageCorrupt("hard state: bad vote");
  return {
    term: uint(h.term, "hard state term"),
    vote: h.vote as string | null,
    commit: uint(h.commit, "hard state commit"),
  };
}
