/**
 * The peer's one LevelDB (DESIGN.md §7), with a sublevel per concern:
 *   raft    — raft hard state and log (the raft driver)
 *   records — managed key records, keyed `<partition hex>/<key id>` (see record-key.ts)
 *   hints   — handoff hints for records held for another peer
 *   meta    — local metadata: cluster salt, project KEKs (until raft holds them), list index, grants
 *   audit   — the audit log, keyed by zero-padded sequence number
 * Keys are UTF-8 strings, values raw bytes. Reads go straight to a sublevel; every write goes
 * through `write()`, which group-commits into one synced LevelDB batch.
 */
import { mkdir } from "node:fs/promises";
import type { AbstractSublevel } from "abstract-level";
import { Level } from "level";
import { LockboxError } from "../errors.js";
import { GroupCommitWriter, type GroupCommitMetrics, type GroupCommitOptions } from "./group-commit.js";

export const SUBLEVEL_NAMES = ["raft", "records", "hints", "meta", "audit"] as const;
export type SublevelName = (typeof SUBLEVEL_NAMES)[number];

export type PeerDb = Level<string, Uint8Array>;
export type Sublevel = AbstractSublevel<PeerDb, string | Buffer | Uint8Array, string, Uint8Array>;

export type StoreOp =
  | { type: "put"; sublevel: SublevelName; key: string; value: Uint8Array }
  | { type: "del"; sublevel: SublevelName; key: string };

export interface PeerStoreOptions extends GroupCommitOptions {}

/** `level` on Node is classic-level, whose compactRange its universal type does not declare. */
interface Compactable {
  compactRange(start: string, end: string): Promise<void>;
}

export class PeerStore {
  private readonly writer: GroupCommitWriter<StoreOp>;
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
  }

  /** Opens (creating if needed) the LevelDB in `dir`. Fails UNAVAILABLE if another process holds it. */
  static async open(dir: string, options: PeerStoreOptions = {}): Promise<PeerStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const db: PeerDb = new Level<string, Uint8Array>(dir, { keyEncoding: "utf8", valueEncoding: "view" });
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
    return new PeerStore(dir, db, options);
  }

  sublevel(name: SublevelName): Sublevel {
    const s = this.sublevels.get(name);
    if (s === undefined) throw new RangeError(`unknown sublevel ${name}`);
    return s;
  }

  get(name: SublevelName, key: string): Promise<Uint8Array | undefined> {
    return this.sublevel(name).get(key);
  }

  /** Writes `ops` atomically; resolves only after the batch holding them is synced to disk. */
  write(ops: readonly StoreOp[]): Promise<void> {
    return this.writer.write(ops);
  }

  /**
   * Compacts the range holding `key` now, so that versions a later write overwrote (a deleted
   * key's wrapped material) leave LevelDB's write-ahead log and tables instead of lingering until
   * some future compaction. Best effort against open snapshots: an iterator open meanwhile can
   * keep an old version alive until the next compaction of that range.
   */
  async compactKey(name: SublevelName, key: string): Promise<void> {
    const prefixed = this.sublevel(name).prefixKey(key, "utf8");
    await (this.db as unknown as Compactable).compactRange(prefixed, prefixed);
  }

  /** Counters of the group-commit writer (batches, writes, ops). */
  commitMetrics(): Readonly<GroupCommitMetrics> {
    return { ...this.writer.metrics };
  }

  /** Flushes queued writes, then closes the database. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.writer.close();
      await this.db.close();
    })();
    return this.closing;
  }

  private async flushBatch(ops: StoreOp[]): Promise<void> {
    const batch = this.db.batch();
    for (const op of ops) {
      const sublevel = this.sublevel(op.sublevel);
      if (op.type === "put") batch.put(op.key, op.value, { sublevel });
      else batch.del(op.key, { sublevel });
    }
    await batch.write({ sync: true });
  }
}

/** Opens the peer's store in `dir` (see PeerStore). */
export const openPeerStore = (dir: string, options?: PeerStoreOptions): Promise<PeerStore> =>
  PeerStore.open(dir, options);
