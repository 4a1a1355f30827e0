/**
 * One peer's replica service (DESIGN §4): it answers the items other peers send (peer-link.ts) over
 * its ReplicaStore. A put merges the incoming version with the stored one (replicated-key.ts) and is
 * answered only after the merged record is synced; puts of different keys share group commits, puts of
 * one key are serialised so each merge sees the last.
 *
 * It keeps a digest per partition in memory (built by one scan, then updated by every write it makes),
 * reclaims tombstones older than `reclaimAgeMs`, and treats every stored byte as possibly damaged: a
 * record failing its checksum is removed and its partition quarantined: reads, digests and pulls of it
 * are refused (so no replica answers "not found" for a record it lost) until anti-entropy has
 * re-fetched the partition from its other primaries (endQuarantine). Puts are still accepted.
 */
import {
  areRivals,
  bucketOf,
  decodeReplicatedKey,
  encodeReplicatedKey,
  mergeKeys,
  PartitionDigest,
  ReplicationError,
  replicatedKeyVersion,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import {
  BATCH_ITEMS_MAX,
  failure,
  PULL_BUCKETS_MAX,
  PULL_RECORDS_MAX,
  type ReplicaBatch,
  type ReplicaBatchReply,
  type ReplicaItem,
  type ReplicaItemResult,
} from "./peer-link.js";
import type { ReplicaStore, ReplicaStoreOp } from "./replica-store.js";

export interface ReplicaOptions {
  self: string;
  store: ReplicaStore;
  partitionOfKey: (id: string) => number;
  partitions: number;
  /** Physical time for tombstone ages. */
  nowMs: () => number;
  /** Tombstones older than this are deleted; must exceed the worst replication cycle (see anti-entropy.ts). */
  reclaimAgeMs: number;
  bucketBits?: number;
  /** Most records one partition may hold on this peer; a scan finding more fails. */
  partitionRecordsMax?: number;
}

export interface ReplicaMetrics {
  puts: number;
  writes: number;
  damagedRecords: number;
  quarantines: number;
  repairs: number;
  reclaimed: number;
  refused: number;
}

const ID_BYTES_MAX = 128;
const PEER_BYTES_MAX = 128;

/**
 * The refusal of a version whose rival this replica holds: ALREADY_EXISTS tells the coordinator
 * another attempt of the same client request got here first (coordinator.ts settles the id).
 */
export const rivalHeld = (id: string): ReplicaItemResult =>
  failure("ALREADY_EXISTS", `key ${id}: a rival version of its client request is held`);

export class Replica {
  readonly self: string;
  readonly bucketBits: number;
  private readonly store: ReplicaStore;
  private readonly partitionRecordsMax: number;
  /** Per key id held: the holders waiting after the current one, in order. */
  private readonly locks = new Map<string, (() => void)[]>();
  private readonly digests = new Map<number, PartitionDigest>();
  /** Encoded digests, until the partition's next write (most passes find nothing changed). */
  private readonly encodedDigests = new Map<number, Uint8Array>();
  /** Bumped by every write to a partition: a digest built across a write is rebuilt. */
  private readonly writeCounts = new Map<number, number>();
  /** Tombstoned records of partitions whose digest is built: partition -> id -> tombstone wallMs. */
  private readonly tombstones = new Map<number, Map<string, number>>();
  /** Quarantined partition -> its generation (a new damage restarts the repair). */
  private readonly quarantine = new Map<number, number>();
  private quarantineGen = 0;
  readonly metrics: ReplicaMetrics = {
    puts: 0,
    writes: 0,
    damagedRecords: 0,
    quarantines: 0,
    repairs: 0,
    reclaimed: 0,
    refused: 0,
  };

  constructor(private readonly options: ReplicaOptions) {
    this.self = options.self;
    this.store = options.store;
    this.bucketBits = options.bucketBits ?? 8;
    this.partitionRecordsMax = options.partitionRecordsMax ?? 1_000_000;
    if (!Number.isSafeInteger(options.reclaimAgeMs) || options.reclaimAgeMs <= 0)
      throw new RangeError("reclaimAgeMs must be a positive integer");
  }

  /**
   * Starts the store's load of its in-memory id filter (a scan of every record key: at a start with
   * millions of records it takes seconds, and reads are only slower until it ends) and loads the
   * quarantine marks a previous run left: those partitions stay refused until repaired.
   */
  async open(): Promise<void> {
    void this.store.open?.();
    for (const p of await this.store.quarantined()) {
      if (this.validPartition(p)) this.quarantine.set(p, ++this.quarantineGen);
    }
  }

  /** Answers one batch from `batch.from`; never throws (a bad item gets a failure result). */
  handle(batch: ReplicaBatch): Promise<ReplicaBatchReply> {
    return this.answer(batch, false);
  }

  /**
   * Answers a batch this peer's own coordinator sent itself (LinkBatcher's local path): a put there
   * may carry the record its bytes were just encoded from (`decoded`, validated by the encoder), so
   * the replica does not decode and check its own fresh bytes again. Everything else is as `handle`;
   * batches from the network or records from disk never come this way.
   */
  handleLocal(batch: ReplicaBatch): Promise<ReplicaBatchReply> {
    return this.answer(batch, true);
  }

  private async answer(batch: ReplicaBatch, local: boolean): Promise<ReplicaBatchReply> {
    if (typeof batch !== "object" || batch === null || !Array.isArray(batch.items)) {
      return { results: [] };
    }
    if (batch.items.length > BATCH_ITEMS_MAX) {
      this.metrics.refused += batch.items.length;
      const f = failure("INVALID_ARGUMENT", `a batch holds at most ${BATCH_ITEMS_MAX} items`);
      return { results: batch.items.map(() => f) };
    }
    const results = await Promise.all(batch.items.map((item) => this.item(item, local)));
    return { results };
  }

  private async item(item: ReplicaItem, local: boolean): Promise<ReplicaItemResult> {
    try {
      if (typeof item !== "object" || item === null)
        return failure("INVALID_ARGUMENT", "item is not an object");
      if (!this.validPartition(item.partition))
        return failure("INVALID_ARGUMENT", `partition ${String(item.partition)} out of range`);
      switch (item.kind) {
        case "put":
          return await this.put(item.partition, item.record, item.hintFor, local ? item.decoded : undefined);
        case "get":
          return await this.get(item.partition, item.id, local);
        case "digest":
          return await this.digestItem(item.partition);
        case "pull":
          return await this.pull(item.partition, item.buckets);
        default:
          return failure("INVALID_ARGUMENT", "unknown item kind");
      }
    } catch (e) {
      // A store failure (EIO, closing) or a bug: the item fails, retryably; nothing was acknowledged.
      return failure(
        "UNAVAILABLE",
        `replica ${this.self}: ${e instanceof Error ? e.constructor.name : "error"}`,
      );
    }
  }

  /**
   * Merges `bytes` into the stored record; resolves once the result is synced. `decoded`: the record
   * this process just encoded `bytes` from (handleLocal), taken instead of decoding them.
   */
  async put(
    partition: number,
    bytes: unknown,
    hintFor?: unknown,
    decoded?: ReplicatedKey,
  ): Promise<ReplicaItemResult> {
    this.metrics.puts += 1;
    if (!(bytes instanceof Uint8Array)) return failure("INVALID_ARGUMENT", "record is not bytes");
    if (
      hintFor !== undefined &&
      (typeof hintFor !== "string" || hintFor === "" || hintFor.length > PEER_BYTES_MAX)
    )
      return failure("INVALID_ARGUMENT", "hintFor must name a peer");
    let incoming: ReplicatedKey;
    try {
      // Its material may be a view of `bytes`: the incoming version is only merged (a merge copies
      // the material it keeps) or stored as `bytes`, never kept itself.
      incoming = decoded ?? decodeReplicatedKey(bytes, { materialView: true });
    } catch (e) {
      if (e instanceof ReplicationError) return failure("INVALID_ARGUMENT", e.message);
      throw e;
    }
    const id = incoming.fields.id;
    if (!this.ownsKey(partition, id))
      return failure("INVALID_ARGUMENT", `key ${id} is not in partition ${partition}`);
    // The key's lock, inline (the common case, a key nobody holds, costs no promise): each merge
    // sees the version the one before it stored.
    const waiting = this.acquire(id);
    if (waiting !== undefined) await waiting;
    try {
      const current = await this.readChecked(partition, id);
      let merged: ReplicatedKey;
      try {
        merged = current === undefined ? incoming : mergeKeys(current.record, incoming);
      } catch (e) {
        // A rival attempt's version (replicated-key.ts): the first one held stays, so at most one
        // rival reaches a write quorum. Else two versions disagree on immutable fields: one is forged
        // or damaged. Either way keep ours and refuse theirs.
        if (e instanceof ReplicationError && e.code === "RIVAL") return rivalHeld(id);
        if (e instanceof ReplicationError) return failure("DATA_LOSS", e.message);
        throw e;
      }
      // A settled rival is held: the incoming version lost, and is not acknowledged as synced.
      if (current !== undefined && areRivals(merged, incoming)) return rivalHeld(id);
      const ops: ReplicaStoreOp[] = [];
      let next: Uint8Array | undefined;
      if (this.reclaimable(merged)) {
        if (current !== undefined) ops.push({ type: "del-record", partition, id });
      } else {
        // A record new here is stored as it came: the codec is canonical (one record, one encoding),
        // so encoding what was just decoded would give these bytes again.
        next = current === undefined ? bytes : encodeReplicatedKey(merged);
        if (current === undefined || !bytesEqual(next, current.bytes)) {
          const purge =
            current !== undefined &&
            current.record.wrappedMaterial !== null &&
            merged.wrappedMaterial === null;
          const op: ReplicaStoreOp = { type: "put-record", partition, id, value: next };
          if (purge) op.purge = true;
          ops.push(op);
        }
        if (typeof hintFor === "string" && hintFor !== this.self)
          ops.push({ type: "put-hint", partition, id, owner: hintFor, atMs: this.options.nowMs() });
      }
      if (ops.length > 0)
        await this.writeAndTrack(partition, ops, [
          {
            id,
            old: current?.bytes,
            next,
            tombstoneWallMs: next === undefined ? undefined : merged.tombstone?.wallMs,
          },
        ]);
      return { ok: true, kind: "put" };
    } finally {
      this.release(id);
    }
  }

  /** `local`: the answer also carries the record as checked here (handleLocal's caller is this peer). */
  private async get(partition: number, id: unknown, local = false): Promise<ReplicaItemResult> {
    if (typeof id !== "string" || id.length === 0 || id.length > ID_BYTES_MAX)
      return failure("INVALID_ARGUMENT", "id must be a short non-empty string");
    if (!this.ownsKey(partition, id))
      return failure("INVALID_ARGUMENT", `key ${id} is not in partition ${partition}`);
    if (this.quarantine.has(partition)) return this.quarantined(partition);
    const current = await this.readChecked(partition, id);
    // The read may have found damage: then this replica's answer cannot be trusted either way.
    if (this.quarantine.has(partition)) return this.quarantined(partition);
    if (current === undefined) return { ok: true, kind: "get", record: null };
    return local
      ? { ok: true, kind: "get", record: current.bytes, decoded: current.record }
      : { ok: true, kind: "get", record: current.bytes };
  }

  private async digestItem(partition: number): Promise<ReplicaItemResult> {
    const d = await this.digest(partition);
    if (d === null) return this.quarantined(partition);
    let encoded = this.encodedDigests.get(partition);
    if (encoded === undefined) {
      encoded = d.encode();
      this.encodedDigests.set(partition, encoded);
    }
    return { ok: true, kind: "digest", digest: encoded };
  }

  private async pull(partition: number, buckets: unknown): Promise<ReplicaItemResult> {
    if (
      !Array.isArray(buckets) ||
      buckets.length > PULL_BUCKETS_MAX ||
      !buckets.every((b) => Number.isInteger(b) && b >= 0 && b < 1 << this.bucketBits)
    )
      return failure("INVALID_ARGUMENT", "buckets must be a bounded list of bucket numbers");
    if (this.quarantine.has(partition)) return this.quarantined(partition);
    const records = await this.bucketRecords(partition, buckets as number[]);
    if (records === null) return this.quarantined(partition);
    if (records.length > PULL_RECORDS_MAX)
      return failure("RESOURCE_EXHAUSTED", `more than ${PULL_RECORDS_MAX} records in the buckets asked for`);
    return { ok: true, kind: "pull", records };
  }

  /**
   * The partition's digest, built by one scan on first use; null while the partition is quarantined
   * (a scan finding damage quarantines it).
   */
  async digest(partition: number): Promise<PartitionDigest | null> {
    for (let attempt = 0; attempt < 8; attempt++) {
      if (this.quarantine.has(partition)) return null;
      const cached = this.digests.get(partition);
      if (cached !== undefined) return cached;
      const before = this.writeCounts.get(partition) ?? 0;
      const records = await this.scanChecked(partition);
      if (records === null) return null;
      if ((this.writeCounts.get(partition) ?? 0) !== before) continue; // a write landed mid-scan
      const d = new PartitionDigest(partition, this.bucketBits);
      const tombs = new Map<string, number>();
      for (const r of records) {
        d.add(r.id, replicatedKeyVersion(r.bytes));
        if (r.record.tombstone !== null) tombs.set(r.id, r.record.tombstone.wallMs);
      }
      this.digests.set(partition, d);
      this.tombstones.set(partition, tombs);
      return d;
    }
    throw new ReplicationError("INVALID_ARGUMENT", `partition ${partition} changes too fast to digest`);
  }

  /** Records of `buckets` (every bucket when undefined); null if the partition is quarantined. */
  async bucketRecords(partition: number, buckets?: readonly number[]): Promise<Uint8Array[] | null> {
    const records = await this.scanChecked(partition);
    if (records === null) return null;
    const wanted = buckets === undefined ? null : new Set(buckets);
    return records
      .filter((r) => wanted === null || wanted.has(bucketOf(r.id, this.bucketBits)))
      .map((r) => r.bytes);
  }

  /** The stored record if present and sound (damage quarantines and yields undefined). */
  async localRecord(partition: number, id: string): Promise<Uint8Array | undefined> {
    return (await this.readChecked(partition, id))?.bytes;
  }

  /**
   * Deletes the tombstones of `partition` older than the reclaim age. It looks only at the tombstones
   * the digest knows of (built by one scan, kept up by every write), so a pass costs no scan.
   */
  async reclaimTombstones(partition: number): Promise<number> {
    if ((await this.digest(partition)) === null) return 0;
    const tombs = this.tombstones.get(partition);
    if (tombs === undefined) return 0;
    const due = [...tombs].filter(([, wallMs]) => this.options.nowMs() - wallMs > this.options.reclaimAgeMs);
    let reclaimed = 0;
    for (const [id] of due) {
      await this.withLock(id, async () => {
        const current = await this.readChecked(partition, id);
        if (current === undefined || !this.reclaimable(current.record)) return;
        await this.writeAndTrack(
          partition,
          [{ type: "del-record", partition, id }],
          [{ id, old: current.bytes, next: undefined }],
        );
        reclaimed += 1;
      });
    }
    this.metrics.reclaimed += reclaimed;
    return reclaimed;
  }

  /**
   * Ends a handoff: deletes the hints of `owners` for the record, and the record itself when this peer
   * is no primary of it and the record is still the version every primary acknowledged (a newer version
   * that arrived meanwhile stays, with its hint, for the next pass).
   */
  async finishHandoff(
    partition: number,
    id: string,
    owners: readonly string[],
    pushed: Uint8Array,
    keepRecord: boolean,
  ): Promise<void> {
    await this.withLock(id, async () => {
      const current = await this.readChecked(partition, id);
      if (current !== undefined && !bytesEqual(current.bytes, pushed)) return;
      const ops: ReplicaStoreOp[] = owners.map((owner) => ({ type: "del-hint", partition, id, owner }));
      if (!keepRecord && current !== undefined) ops.push({ type: "del-record", partition, id });
      await this.writeAndTrack(
        partition,
        ops,
        keepRecord || current === undefined ? [] : [{ id, old: current.bytes, next: undefined }],
      );
    });
  }

  /** Drops hints whose record is gone (reclaimed, or removed as damaged). */
  async dropHints(partition: number, id: string, owners: readonly string[]): Promise<void> {
    await this.withLock(id, async () => {
      if ((await this.store.getRecord(partition, id)) !== undefined) return;
      await this.store.write(owners.map((owner) => ({ type: "del-hint", partition, id, owner })));
    });
  }

  isQuarantined(partition: number): boolean {
    return this.quarantine.has(partition);
  }

  quarantinedPartitions(): number[] {
    return [...this.quarantine.keys()].sort((a, b) => a - b);
  }

  /** The generation of a partition's quarantine (undefined when not quarantined). */
  quarantineGeneration(partition: number): number | undefined {
    return this.quarantine.get(partition);
  }

  /** Ends a quarantine once its partition was re-fetched, unless new damage restarted it meanwhile. */
  async endQuarantine(partition: number, generation: number): Promise<boolean> {
    if (this.quarantine.get(partition) !== generation) return false;
    await this.store.write([{ type: "del-quarantine", partition }]);
    if (this.quarantine.get(partition) !== generation) return false;
    this.quarantine.delete(partition);
    this.metrics.repairs += 1;
    return true;
  }

  private quarantined(partition: number): ReplicaItemResult {
    this.metrics.refused += 1;
    return failure(
      "UNAVAILABLE",
      `partition ${partition} is quarantined on ${this.self} while it is repaired`,
    );
  }

  private startQuarantine(partition: number): void {
    if (!this.quarantine.has(partition)) this.metrics.quarantines += 1;
    this.quarantine.set(partition, ++this.quarantineGen);
    this.digests.delete(partition);
    this.tombstones.delete(partition);
    this.encodedDigests.delete(partition);
  }

  /** Reads and checks one record; a damaged one is deleted and its partition quarantined. */
  private async readChecked(
    partition: number,
    id: string,
  ): Promise<{ bytes: Uint8Array; record: ReplicatedKey } | undefined> {
    const bytes = await this.store.getRecord(partition, id);
    if (bytes === undefined) return undefined;
    const record = this.check(partition, id, bytes);
    if (record !== undefined) return { bytes, record };
    await this.removeDamaged(partition, [id]);
    return undefined;
  }

  private async scanChecked(
    partition: number,
  ): Promise<{ id: string; bytes: Uint8Array; record: ReplicatedKey }[] | null> {
    const stored = await this.store.scanPartition(partition, this.partitionRecordsMax + 1);
    if (stored.length > this.partitionRecordsMax)
      throw new RangeError(`partition ${partition} holds more than ${this.partitionRecordsMax} records`);
    const out: { id: string; bytes: Uint8Array; record: ReplicatedKey }[] = [];
    const damaged: string[] = [];
    for (const s of stored) {
      const record = this.check(partition, s.id, s.value);
      if (record === undefined) damaged.push(s.id);
      else out.push({ id: s.id, bytes: s.value, record });
    }
    if (damaged.length > 0) {
      await this.removeDamaged(partition, damaged);
      return null;
    }
    return this.quarantine.has(partition) ? null : out;
  }

  private check(partition: number, id: string, bytes: Uint8Array): ReplicatedKey | undefined {
    try {
      const record = decodeReplicatedKey(bytes);
      // A sound record under the wrong key is damage too (a misdirected write): never served as `id`.
      if (record.fields.id !== id || !this.ownsKey(partition, id)) return undefined;
      return record;
    } catch (e) {
      if (e instanceof ReplicationError) return undefined;
      throw e;
    }
  }

  private async removeDamaged(partition: number, ids: readonly string[]): Promise<void> {
    this.metrics.damagedRecords += ids.length;
    this.startQuarantine(partition);
    // The mark and the deletes in one batch: no restart finds the records gone but the partition trusted.
    await this.store.write([
      { type: "put-quarantine", partition },
      ...ids.map((id): ReplicaStoreOp => ({ type: "del-record", partition, id })),
    ]);
    this.bump(partition);
  }

  private async writeAndTrack(
    partition: number,
    ops: ReplicaStoreOp[],
    changes: {
      id: string;
      old: Uint8Array | undefined;
      next: Uint8Array | undefined;
      tombstoneWallMs?: number;
    }[],
  ): Promise<void> {
    await this.store.write(ops);
    this.metrics.writes += 1;
    const d = this.digests.get(partition);
    const tombs = this.tombstones.get(partition);
    if (d !== undefined) {
      for (const c of changes) {
        if (c.old !== undefined && c.next !== undefined && bytesEqual(c.old, c.next)) continue;
        if (c.old !== undefined) d.remove(c.id, replicatedKeyVersion(c.old));
        if (c.next !== undefined) d.add(c.id, replicatedKeyVersion(c.next));
        tombs?.delete(c.id);
        if (c.tombstoneWallMs !== undefined) tombs?.set(c.id, c.tombstoneWallMs);
      }
    }
    this.bump(partition);
  }

  private bump(partition: number): void {
    this.encodedDigests.delete(partition);
    this.writeCounts.set(partition, (this.writeCounts.get(partition) ?? 0) + 1);
  }

  private reclaimable(k: ReplicatedKey): boolean {
    return k.tombstone !== null && this.options.nowMs() - k.tombstone.wallMs > this.options.reclaimAgeMs;
  }

  private validPartition(p: unknown): p is number {
    return Number.isInteger(p) && (p as number) >= 0 && (p as number) < this.options.partitions;
  }

  private ownsKey(partition: number, id: string): boolean {
    try {
      return this.options.partitionOfKey(id) === partition;
    } catch {
      return false;
    }
  }

  /** Runs `fn` holding `id`'s lock (after every earlier holder, in arrival order). */
  private async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const waiting = this.acquire(id);
    if (waiting !== undefined) await waiting;
    try {
      return await fn();
    } finally {
      this.release(id);
    }
  }

  /**
   * Takes `id`'s lock: undefined when it was free (taken now), else a promise that resolves once it
   * is this caller's. Every acquire is paired with one release.
   */
  private acquire(id: string): Promise<void> | undefined {
    const waiting = this.locks.get(id);
    if (waiting === undefined) {
      this.locks.set(id, []);
      return undefined;
    }
    return new Promise<void>((go) => waiting.push(go));
  }

  /** Hands `id`'s lock to the next waiter, or frees it. */
  private release(id: string): void {
    const next = this.locks.get(id)!.shift();
    if (next === undefined) this.locks.delete(id);
    else next();
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
