/**
 * The peer's one LevelDB (DESIGN.md §7), with a sublevel per concern:
 *   raft    — raft hard state and log (the raft driver)
 *   records — managed key records, keyed `<partition hex>/<key id>` (see record-key.ts)
 *   hints   — handoff hints for records held for another peer
 *   meta    — local metadata: cluster salt, project KEKs (until raft holds them), list index, grants
 *   audit   — the audit log, keyed by zero-padded sequence number
 *   purge   — markers `<sublevel>/<key>` of overwritten values still to be purged (purger.ts)
 * Keys are UTF-8 strings, values raw bytes. Every write goes through `write()`, which group-commits
 * into one synced LevelDB batch. Point reads (`get()`) are synchronous LevelDB reads on the event
 * loop: a read of a record in the memtable or the block cache takes a few microseconds, while an
 * asynchronous one (a hop through libuv's thread pool and back, even batched as one getMany per
 * turn) cost 35-40 µs of CPU per hop on these machines, more than the read itself by ten times.
 * A read that misses the cache blocks the loop for one disk read; key records are small and the
 * working set of a storage node's keys is meant to stay in memory (as better-sqlite3 reasons).
 * Writes stay asynchronous: a sync to disk must never block the loop.
 */
import { mkdir } from "node:fs/promises";
import type { AbstractSublevel } from "abstract-level";
import { Level } from "level";
import { LockboxError } from "../errors.js";
import { GroupCommitWriter, type GroupCommitMetrics, type GroupCommitOptions } from "./group-commit.js";
import { Purger, type PurgerOptions, type PurgeStatus } from "./purger.js";
import { checkStoreFiles } from "./store-integrity.js";

export const SUBLEVEL_NAMES = ["raft", "records", "hints", "meta", "audit", "purge"] as const;
export type SublevelName = (typeof SUBLEVEL_NAMES)[number];

export type PeerDb = Level<string, Uint8Array>;
export type Sublevel = AbstractSublevel<PeerDb, string | Buffer | Uint8Array, string, Uint8Array>;

export type StoreOp =
  | {
      type: "put";
      sublevel: SublevelName;
      key: string;
      value: Uint8Array;
      /**
       * A key many writers overwrite (the audit log's head): when a later put in the same synced
       * batch also has `coalesce` and the same key, this one is left out. The batch is atomic, so no
       * reader or crash can see the skipped value; LevelDB just inserts and compacts one less entry.
       */
      coalesce?: true;
    }
  | { type: "del"; sublevel: SublevelName; key: string };

/** A value whose overwritten versions must leave the disk (e.g. a destroyed key's record). */
export interface PurgeTarget {
  sublevel: SublevelName;
  key: string;
}

export interface PeerStoreOptions extends GroupCommitOptions, PurgerOptions {
  /** LevelDB's memtable size (write_buffer_size); WRITE_BUFFER_BYTES_DEFAULT when absent. */
  writeBufferBytes?: number;
}

/**
 * 32 MiB, where LevelDB's own default is 4 MiB. Key ids are random, so every table flushed from the
 * memtable overlaps the whole of level 1, and each level-0 compaction rewrites it: with 4 MiB
 * memtables LevelDB's compaction thread spent 0.06-0.07 ms of CPU per replicated create (summed over
 * 3 peers, 30 s at 64 concurrent creates), with 32 MiB 0.02 ms. The cost is memory (up to two
 * memtables, 64 MiB) and replaying up to 32 MiB of log when the peer restarts.
 */
export const WRITE_BUFFER_BYTES_DEFAULT = 32 * 1024 * 1024;

/**
 * What the writer queues: the public operations, plus the purger's `rewrite`, which puts a key's
 * value back unchanged. It is resolved inside the flush (reading the committed value, and placed
 * before the batch's other operations), so it can never undo a write queued around it.
 */
type QueuedOp = StoreOp | { type: "rewrite"; sublevel: SublevelName; key: string };

const EMPTY = new Uint8Array(0);
/**
 * A key above every stored one (all live in sublevels, prefixed "!name!"): compacting just it
 * flushes the memtable and merges nothing.
 */
const FLUSH_ONLY_KEY = "\u007f";

/** `level` on Node is classic-level, whose compactRange its universal type does not declare. */
interface Compactable {
  compactRange(start: string, end: string): Promise<void>;
}

export class PeerStore {
  private readonly writer: GroupCommitWriter<QueuedOp>;
  private readonly purger: Purger;
  private readonly sublevels: ReadonlyMap<SublevelName, Sublevel>;
  private closing: Promise<void> | undefined;

  private constructor(
    readonly dir: string,
    readonly db: PeerDb,
    options: PeerStoreOptions,
  ) {
    this.sublevels = new Map(
      SUBLEVEL_NAMES.map((name) => [
        name,
        db.sublevel<string, Uint8Array>(name, { keyEncoding: "utf8", valueEncoding: "view" }),
      ]),
    );
    this.writer = new GroupCommitWriter((ops) => this.flushBatch(ops), options);
    this.purger = new Purger(
      {
        purge: (markers) => this.purgeMarked(markers),
        clearMarkers: (markers) =>
          this.write(markers.map((key) => ({ type: "del", sublevel: "purge", key }))),
      },
      options,
    );
  }

  /**
   * Opens (creating if needed) the LevelDB in `dir`, after checking every live file's checksums
   * (store-integrity.ts): a damaged store fails DATA_LOSS naming the file. Fails UNAVAILABLE if
   * another process holds it.
   */
  static async open(dir: string, options: PeerStoreOptions = {}): Promise<PeerStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // Before LevelDB opens it: opening replays and deletes the write-ahead logs.
    await checkStoreFiles(dir);
    const db: PeerDb = new Level<string, Uint8Array>(dir, {
      keyEncoding: "utf8",
      valueEncoding: "view",
      writeBufferSize: options.writeBufferBytes ?? WRITE_BUFFER_BYTES_DEFAULT,
    });
    try {
      await db.open();
    } catch (cause) {
      throw new LockboxError(
        "UNAVAILABLE",
        `cannot open the store in ${dir} (is another peer using it?)`,
        undefined,
        {
          cause,
        },
      );
    }
    const store = new PeerStore(dir, db, options);
    // Purges a crash interrupted (markers written, compaction not yet run) are picked up again.
    store.purger.add(await store.sublevel("purge").keys().all());
    return store;
  }

  sublevel(name: SublevelName): Sublevel {
    const s = this.sublevels.get(name);
    if (s === undefined) throw new RangeError(`unknown sublevel ${name}`);
    return s;
  }

  /**
   * The value of `key` (getNow as a promise, for callers written against an asynchronous store):
   * it sees every write that resolved before the call.
   */
  get(name: SublevelName, key: string): Promise<Uint8Array | undefined> {
    try {
      return Promise.resolve(this.getNow(name, key));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The value of `key` now (a synchronous LevelDB read): every write that resolved is seen. */
  getNow(name: SublevelName, key: string): Uint8Array | undefined {
    return this.db.getSync(this.sublevel(name).prefixKey(key, "utf8"));
  }

  /**
   * Writes `ops` atomically; resolves only after the batch holding them is synced to disk. The
   * overwritten versions of `purge` targets (a destroyed key's material) leave the disk within
   * the purge delay: a marker for each is written in the same batch, and the purger compacts
   * their ranges in batches (purger.ts).
   */
  write(ops: readonly StoreOp[], purge: readonly PurgeTarget[] = []): Promise<void> {
    // Nearly every write purges nothing: no marker arrays and no extra promise for those.
    return purge.length === 0 ? this.writer.write(ops) : this.writeWithPurge(ops, purge);
  }

  private async writeWithPurge(ops: readonly StoreOp[], purge: readonly PurgeTarget[]): Promise<void> {
    const markers = purge.map((p) => `${p.sublevel}/${p.key}`);
    const markerOps = markers.map((key): StoreOp => ({ type: "put", sublevel: "purge", key, value: EMPTY }));
    await this.writer.write(markerOps.length === 0 ? ops : [...ops, ...markerOps]);
    if (markers.length > 0) this.purger.add(markers);
  }

  /** Runs every pending purge now (tests, and operators who cannot wait for the delay). */
  purgeNow(): Promise<void> {
    return this.purger.flush();
  }

  /** How many purges are waiting and for how long, and what runs have done. */
  purgeStatus(): PurgeStatus {
    return this.purger.status();
  }

  /** Counters of the group-commit writer (batches, writes, ops). */
  commitMetrics(): Readonly<GroupCommitMetrics> {
    return { ...this.writer.metrics };
  }

  /** Flushes queued writes, then closes the database. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.purger.close();
      await this.writer.close();
      await this.db.close();
    })();
    return this.closing;
  }

  /**
   * Makes LevelDB drop every overwritten version of the marked keys. A compaction drops an old
   * version only when it merges it with a newer one, and a manual compactRange never compacts the
   * deepest level holding the range; so when the old and the new version were flushed from the
   * memtable into one table, compacting alone would never drop the old one. Hence three steps:
   *   1. flush the memtable (a compactRange over a range holding no keys): every version is now
   *      in a table, and the write-ahead log that held them is retired;
   *   2. rewrite each key's current value (synced): the memtable now holds the only newer copy;
   *   3. one compactRange from the lowest to the highest marked key: flushes those copies into a
   *      table above every older version, then merges every level overlapping the range down to
   *      the deepest, dropping all older versions.
   * Compaction works on whole files (about 2 MiB), so one range per run rewrites each file in it
   * once, where a range per key rewrote the files around every key again.
   */
  private async purgeMarked(markers: readonly string[]): Promise<void> {
    const targets: { name: SublevelName; key: string; prefixed: string }[] = [];
    for (const marker of markers) {
      const slash = marker.indexOf("/");
      const name = marker.slice(0, slash) as SublevelName;
      if (!SUBLEVEL_NAMES.includes(name)) continue; // not a marker this code writes: just cleared
      const key = marker.slice(slash + 1);
      targets.push({ name, key, prefixed: this.sublevel(name).prefixKey(key, "utf8") });
    }
    if (targets.length === 0) return;
    const db = this.db as unknown as Compactable;
    await db.compactRange(FLUSH_ONLY_KEY, FLUSH_ONLY_KEY);
    await this.writer.write(targets.map((t) => ({ type: "rewrite", sublevel: t.name, key: t.key })));
    const sorted = targets.map((t) => t.prefixed).sort();
    await db.compactRange(sorted[0]!, sorted[sorted.length - 1]!);
  }

  private async flushBatch(ops: QueuedOp[]): Promise<void> {
    const rewrites = ops.filter((op) => op.type === "rewrite");
    const current =
      rewrites.length === 0
        ? []
        : await this.db.getMany(rewrites.map((op) => this.sublevel(op.sublevel).prefixKey(op.key, "utf8")));
    // Keys prefixed here and written to the root database (same encodings as the sublevels): the
    // `sublevel` option costs abstract-level a delegation per operation, a third of its work on a put.
    const batch = this.db.batch();
    rewrites.forEach((op, i) => {
      const value = current[i];
      if (value !== undefined) batch.put(this.sublevel(op.sublevel).prefixKey(op.key, "utf8"), value);
    });
    const superseded = supersededPuts(ops);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      if (op.type === "rewrite" || superseded?.has(i) === true) continue;
      const key = this.sublevel(op.sublevel).prefixKey(op.key, "utf8");
      if (op.type === "put") batch.put(key, op.value);
      else batch.del(key);
    }
    await batch.write({ sync: true });
  }
}

/**
 * The positions of `coalesce` puts a later `coalesce` put of the same key overwrites within the
 * batch, or undefined when there are none. One pass; a batch without coalesce puts allocates nothing.
 */
export function supersededPuts(ops: readonly QueuedOp[]): Set<number> | undefined {
  let last: Map<string, number> | undefined;
  let superseded: Set<number> | undefined;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.type !== "put" || op.coalesce !== true) continue;
    const name = `${op.sublevel}/${op.key}`;
    const before = (last ??= new Map()).get(name);
    if (before !== undefined) (superseded ??= new Set()).add(before);
    last.set(name, i);
  }
  return superseded;
}

/** Opens the peer's store in `dir` (see PeerStore). */
export const openPeerStore = (dir: string, options?: PeerStoreOptions): Promise<PeerStore> =>
  PeerStore.open(dir, options);
