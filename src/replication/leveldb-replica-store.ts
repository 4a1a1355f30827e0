/**
 * The production ReplicaStore: the peer's one LevelDB (src/store/peer-store.ts), sublevels "records"
 * (keyed `<partition hex>/<key id>`, record-key.ts, so a partition is one range) and "hints" (keyed
 * `<partition hex>/<key id>/<owner>`). Every write goes through the peer store's group commit: one
 * synced LevelDB batch for all writers waiting at the time. Quarantine marks live in "meta".
 *
 * On a replicated peer it is the only writer of "records" (the key service writes there only with
 * replication off, and KeyService.open refuses to turn it on over such keys; the purger only puts back
 * a value already there), so it keeps a RecordIdFilter of the ids stored there: a read of an id never
 * written (every create's merge read, on each replica) is answered without LevelDB. The filter counts
 * only once `open`'s scan has added every id already on disk; until then every read goes to LevelDB.
 */
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import { partitionHexWidth, partitionRange, recordKey } from "../store/record-key.js";
import { RecordIdFilter } from "./record-id-filter.js";
import type { Hint, ReplicaStore, ReplicaStoreOp, StoredHint, StoredRecord } from "./replica-store.js";

/** Quarantine marks live in the "meta" sublevel under this prefix. */
const QUARANTINE_PREFIX = "replication-quarantine/";
const QUARANTINE_END = "replication-quarantine0"; // "0" follows "/"

function u64(n: number): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.floor(n / 2 ** 32), 0);
  b.writeUInt32BE(n >>> 0, 4);
  return new Uint8Array(b);
}

export interface LevelReplicaStoreOptions {
  /** The id filter's size, 2^filterBitsLog2 bits (record-id-filter.ts); tests make it small. */
  filterBitsLog2?: number;
  /** Where the id filter's load (its time, or its failure) is told. */
  log?: (line: string) => void;
}

export class LevelReplicaStore implements ReplicaStore {
  private readonly width: number;
  /** Partition -> its records' key prefix ("<partition hex>/"), made on first use. */
  private readonly prefixes: string[] = [];
  /** Ids written to "records" by this store or found there by `open`. */
  private readonly ids: RecordIdFilter;
  /** Set once `open` has added every id on disk: before, the filter's "no" proves nothing. */
  private filterReady = false;
  readonly metrics = { readsSkipped: 0, filterScanFailed: false };

  constructor(
    private readonly store: PeerStore,
    private readonly partitionPower: number,
    private readonly options: LevelReplicaStoreOptions = {},
  ) {
    this.width = partitionHexWidth(partitionPower);
    this.ids = new RecordIdFilter(options.filterBitsLog2);
  }

  /**
   * Adds every record id on disk to the filter, then lets it answer reads. The key iterator reads a
   * snapshot taken when it starts; a record written after that was added by `write` (which adds
   * before it writes), so no id is missed whatever runs beside it. A scan that fails (a damaged
   * table, the store closing) leaves the filter unused rather than failing the open: every read then
   * goes to LevelDB, which reports damage record by record (the replica quarantines the partition).
   */
  async open(): Promise<void> {
    if (this.filterReady) return;
    const started = Date.now();
    let keys: { nextv(size: number): Promise<string[]>; close(): Promise<void> } | undefined;
    let scanned = 0;
    try {
      keys = this.store.sublevel("records").keys();
      for (;;) {
        const chunk = await keys.nextv(1024);
        if (chunk.length === 0) break;
        for (const key of chunk) this.ids.add(key.slice(this.width + 1));
        scanned += chunk.length;
      }
      this.filterReady = true;
      this.options.log?.(`replica store: id filter holds ${scanned} record ids (${Date.now() - started} ms)`);
    } catch (e) {
      this.metrics.filterScanFailed = true;
      // The peer stopping during the scan is no news.
      if (this.store.sublevel("records").status === "open")
        this.options.log?.(
          `replica store: id filter not used, its key scan failed after ${scanned} ids (${e instanceof Error ? e.constructor.name : "error"}); every read goes to LevelDB`,
        );
    } finally {
      await keys?.close().catch(() => undefined);
    }
  }

  getRecord(partition: number, id: string): Promise<Uint8Array | undefined> {
    if (this.filterReady && !this.ids.mayHold(id)) {
      this.metrics.readsSkipped += 1;
      return Promise.resolve(undefined);
    }
    return this.store.get("records", this.recordKey(partition, id));
  }

  /**
   * recordKey (record-key.ts) with each partition's prefix made once: a get and a put per replicated
   * write and replica otherwise format the partition anew every time.
   */
  private recordKey(partition: number, id: string): string {
    let prefix = this.prefixes[partition];
    if (prefix === undefined) {
      prefix = recordKey(partition, "", this.partitionPower);
      this.prefixes[partition] = prefix;
    }
    return prefix + id;
  }

  async scanPartition(partition: number, limit: number): Promise<StoredRecord[]> {
    const range = partitionRange(partition, this.partitionPower);
    const out: StoredRecord[] = [];
    for await (const [key, value] of this.store.sublevel("records").iterator({ ...range, limit })) {
      out.push({ id: key.slice(this.width + 1), value });
    }
    return out;
  }

  /** One seek per partition present, not a walk over every record. */
  async partitions(): Promise<number[]> {
    const out: number[] = [];
    const records = this.store.sublevel("records");
    let from = "";
    for (;;) {
      const keys = await records.keys({ gte: from, limit: 1 }).all();
      const key = keys[0];
      if (key === undefined) return out;
      const partition = Number.parseInt(key.slice(0, this.width), 16);
      if (!Number.isInteger(partition)) throw new RangeError(`a records key does not start with a partition`);
      out.push(partition);
      from = partitionRange(partition, this.partitionPower).lt;
    }
  }

  async hints(limit: number): Promise<StoredHint[]> {
    const out: StoredHint[] = [];
    for await (const [key, value] of this.store.sublevel("hints").iterator({ limit })) {
      const hint = this.parseHint(key);
      // A hint value is the u64 time its copy was written; a damaged one reads as 0 (expires at once).
      const atMs =
        value.length === 8
          ? Buffer.from(value).readUInt32BE(0) * 2 ** 32 + Buffer.from(value).readUInt32BE(4)
          : 0;
      if (hint !== undefined) out.push({ ...hint, atMs: Number.isSafeInteger(atMs) ? atMs : 0 });
    }
    return out;
  }

  async quarantined(): Promise<number[]> {
    const out: number[] = [];
    for await (const key of this.store
      .sublevel("meta")
      .keys({ gte: QUARANTINE_PREFIX, lt: QUARANTINE_END })) {
      const partition = Number.parseInt(key.slice(QUARANTINE_PREFIX.length), 16);
      if (Number.isInteger(partition)) out.push(partition);
    }
    return out.sort((a, b) => a - b);
  }

  write(ops: readonly ReplicaStoreOp[]): Promise<void> {
    // Overwritten material stays in LevelDB's log and tables until a compaction: a tombstone or a
    // delete asks the store's purger to compact the record's key soon (as the single-peer store does).
    const storeOps: StoreOp[] = [];
    let purge: { sublevel: "records"; key: string }[] | undefined;
    for (const op of ops) {
      const storeOp = this.toStoreOp(op);
      storeOps.push(storeOp);
      if (op.type === "del-record" || (op.type === "put-record" && op.purge === true))
        (purge ??= []).push({ sublevel: "records", key: storeOp.key });
    }
    return purge === undefined ? this.store.write(storeOps) : this.store.write(storeOps, purge);
  }

  private toStoreOp(op: ReplicaStoreOp): StoreOp {
    switch (op.type) {
      case "put-record":
        // Before the write is even queued: once it lands, a read must not be told "no".
        this.ids.add(op.id);
        return {
          type: "put",
          sublevel: "records",
          key: this.recordKey(op.partition, op.id),
          value: op.value,
        };
      case "del-record":
        return { type: "del", sublevel: "records", key: this.recordKey(op.partition, op.id) };
      case "put-hint":
        return { type: "put", sublevel: "hints", key: this.hintKey(op), value: u64(op.atMs) };
      case "del-hint":
        return { type: "del", sublevel: "hints", key: this.hintKey(op) };
      case "put-quarantine":
        return {
          type: "put",
          sublevel: "meta",
          key: this.quarantineKey(op.partition),
          value: new Uint8Array(0),
        };
      case "del-quarantine":
        return { type: "del", sublevel: "meta", key: this.quarantineKey(op.partition) };
    }
  }

  private quarantineKey(partition: number): string {
    return `${QUARANTINE_PREFIX}${partition.toString(16).padStart(this.width, "0")}`;
  }

  private hintKey(h: Hint): string {
    if (h.id.includes("/")) throw new RangeError("a key id must not contain '/'");
    return `${this.recordKey(h.partition, h.id)}/${h.owner}`;
  }

  private parseHint(key: string): Hint | undefined {
    const partition = Number.parseInt(key.slice(0, this.width), 16);
    const rest = key.slice(this.width + 1);
    const slash = rest.indexOf("/");
    if (!Number.isInteger(partition) || slash <= 0) return undefined;
    return { partition, id: rest.slice(0, slash), owner: rest.slice(slash + 1) };
  }
}
