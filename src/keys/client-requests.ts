/**
 * Client request ids: what makes a create-like call (CreateKey, ImportKey, CloneKey, RekeyClone)
 * safe to retry after a timeout. The first call with an id stores, in the same batch as the new
 * key, which key it made; a retry by the same identity with the same id finds that entry and gets
 * the same key back, also after a restart (the batch is synced before the call answers). The same
 * id with another request (another method, project, name, material...) is refused, never
 * answered with the first key.
 *
 * Stored in the "meta" sublevel:
 *   client-request/<identity>/<request id>               -> the entry (record-codec.ts, MAC'd)
 *   client-request-at/<created ms, 12 hex>/<identity>/<request id>  -> "" (oldest first)
 * Identities and request ids never contain "/" (validation.ts), so the names are unambiguous.
 *
 * Bounds (documented in keys.proto): an entry counts for CLIENT_REQUEST_TTL_MS (24 h) and at most
 * CLIENT_REQUESTS_MAX (100,000) entries are kept over all identities; past either, the oldest go
 * first. An expired entry is never honoured even before it is reclaimed. Reclaiming runs in the
 * background, one pass at a time, after writes that pass the count or when the oldest entry is
 * due, and deletes an entry only while holding its id's lock and only if it is the entry the time
 * index names (a newer entry under a reused id stays).
 *
 * The fingerprint is an HMAC under the project's record-MAC key over the request's canonical
 * binding and, for ImportKey, an inner HMAC of the material: nothing stored reveals the material,
 * and a low-entropy passphrase cannot be guessed from it offline.
 */
import { createHash, createHmac } from "node:crypto";
import { KEY_ID_RANDOM_BYTES, placedKeyId } from "../../cluster/ring/key-id.js";
import { scopeHash32 } from "../../cluster/ring/placement.js";
import { withEncodedBinding, type BindingValue } from "../crypto/binding.js";
import { LockboxError } from "../errors.js";
import { fnv1a32 } from "../store/fnv1a.js";
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import { prefixEnd } from "./key-record-store.js";
import type { KeyedMutex } from "./keyed-mutex.js";
import type { ProjectKeys } from "./project-keks.js";
import {
  encodeClientRequest,
  parseClientRequest,
  type ClientRequestEntry,
  type Unauthenticated,
} from "./record-codec.js";

export const CLIENT_REQUEST_TTL_MS = 24 * 3600 * 1000;
export const CLIENT_REQUESTS_MAX = 100_000;
/** Index entries one reclaim pass reads at a time. */
const RECLAIM_BATCH = 256;

const ENTRY_PREFIX = "client-request/";
const INDEX_PREFIX = "client-request-at/";
const entryKey = (identity: string, requestId: string): string => `${ENTRY_PREFIX}${identity}/${requestId}`;
const indexKey = (createdAtMs: number, identity: string, requestId: string): string =>
  `${INDEX_PREFIX}${createdAtMs.toString(16).padStart(12, "0")}/${identity}/${requestId}`;
/** The lock serialising every use of one (identity, request id). */
export const clientRequestLock = (identity: string, requestId: string): string =>
  `client-request:${identity}/${requestId}`;

/** The (identity, request id) an index entry names, or undefined for a damaged index name (it names none). */
function namedByIndex(index: string): { identity: string; requestId: string } | undefined {
  const rest = index.slice(INDEX_PREFIX.length + 13);
  const slash = rest.indexOf("/");
  return slash <= 0 ? undefined : { identity: rest.slice(0, slash), requestId: rest.slice(slash + 1) };
}

/**
 * Which entries may be stored, kept in memory so that `find` for a request id this peer never
 * stored (nearly every create) answers without a store read. It counts index entries (written and
 * deleted in the same batches as the entries they name, see putOps and deleteIndexed) in a fixed
 * array of slots, by a hash of the entry key they name: a count of 0 means no entry under any key
 * of that slot. A collision or a write that failed after it was counted only costs a store read.
 *
 * A fixed array, not a map of hashes: a create adds a count without allocating, and the filter is
 * the same 2 MiB from start to entriesMax. A map of hashes grew to 100,000 entries, rehashing as it
 * grew: leaving its add out raised replicated CreateKey at concurrency 64 by about 4% (one run,
 * the add skipped in every other second), an upper bound of what the array saves. At 100,000
 * entries about 1 in 10 ids never stored falls in a counted slot and costs one read. A slot that
 * reaches the largest count stays there ("maybe" for good): request ids are chosen by clients, and
 * no choice of them may make the filter forget a stored entry.
 */
export class EntryFilter {
  /** The largest count: a slot that reaches it is never decremented again. */
  static readonly SATURATED = 0xffff;
  private readonly counts: Uint16Array;
  private readonly shift: number;

  /** `slotBits`: 2^slotBits slots (20, 2 MiB, unless a test wants crowded slots). */
  constructor(slotBits = 20) {
    if (!Number.isInteger(slotBits) || slotBits < 0 || slotBits > 24)
      throw new RangeError("slotBits must be an integer in 0..24");
    this.counts = new Uint16Array(2 ** slotBits);
    this.shift = 32 - slotBits;
  }

  add(key: string): void {
    const i = this.slot(key);
    const n = this.counts[i]!;
    if (n < EntryFilter.SATURATED) this.counts[i] = n + 1;
  }

  remove(key: string): void {
    const i = this.slot(key);
    const n = this.counts[i]!;
    if (n > 0 && n < EntryFilter.SATURATED) this.counts[i] = n - 1;
  }

  mayHold(key: string): boolean {
    return this.counts[this.slot(key)]! > 0;
  }

  private slot(key: string): number {
    // The top bits (FNV-1a's best mixed); a shift by 32 (one slot) must give 0, which >>> does not.
    return this.shift === 32 ? 0 : fnv1a32(key) >>> this.shift;
  }
}

/** What a create-like call asked for, as its fingerprint covers it. */
export interface RequestBody {
  method: "CreateKey" | "ImportKey" | "CloneKey" | "RekeyClone";
  attributes: Record<string, BindingValue>;
  /** ImportKey's material: only an HMAC of it enters the fingerprint. */
  material?: Uint8Array;
}

/**
 * On the ring, the id of the key a create-like call with a client request id makes: derived from
 * (cluster salt, identity, request id, project, scope), so every attempt of the request, through
 * any peer, makes a version of the same id in the same partition (rival versions, settled by the
 * coordinator: src/replication/coordinator.ts), instead of a second key. The method is left out on
 * purpose: a request id reused for another method names the same id, and the request fingerprint
 * the key carries tells them apart (INVALID_ARGUMENT). It still carries the scope's placement.
 */
export function requestKeyId(
  clusterSalt: Uint8Array,
  identity: string,
  requestId: string,
  project: string,
  scope: string,
): string {
  const bits = createHash("sha256")
    .update("lockbox/client-request-key-id\0")
    .update(clusterSalt)
    .update(JSON.stringify([identity, requestId, project, scope]))
    .digest()
    .subarray(0, KEY_ID_RANDOM_BYTES);
  return placedKeyId(scopeHash32(clusterSalt, project, scope), bits); // placedKeyId copies them
}

export function requestFingerprint(keys: ProjectKeys, body: RequestBody): string {
  // Copied only to add the material's MAC: the caller's attributes are never changed.
  const attributes: Readonly<Record<string, BindingValue>> =
    body.material === undefined
      ? body.attributes
      : {
          ...body.attributes,
          materialMac: createHmac("sha256", keys.recordMacKey)
            .update("lockbox/client-request/material\0")
            .update(body.material)
            .digest("base64"),
        };
  return withEncodedBinding({ kind: "client-request-body", id: body.method, attributes }, 0, (canonical) =>
    createHmac("sha256", keys.recordMacKey).update(canonical).digest("base64"),
  );
}

export interface ClientRequestOptions {
  ttlMs?: number;
  entriesMax?: number;
}

export class ClientRequestStore {
  readonly ttlMs: number;
  readonly entriesMax: number;
  /** Index entries on disk (each live entry has one; a reused id may leave a stale one until reclaimed). */
  private indexed = 0;
  /** The entries that may be stored (EntryFilter): find reads the store only for those. */
  private readonly present = new EntryFilter();
  /** When the oldest index entry falls due; a write after it starts a reclaim pass. */
  private nextDueMs = Number.POSITIVE_INFINITY;
  private reclaiming: Promise<void> | undefined;
  /** A trigger arrived during the running pass: the time to run one more with. */
  private rerunAtMs: number | undefined;
  private closed = false;

  constructor(
    private readonly store: PeerStore,
    private readonly locks: KeyedMutex,
    options: ClientRequestOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? CLIENT_REQUEST_TTL_MS;
    this.entriesMax = options.entriesMax ?? CLIENT_REQUESTS_MAX;
    if (!Number.isSafeInteger(this.ttlMs) || this.ttlMs < 1) throw new RangeError("ttlMs must be positive");
    if (!Number.isSafeInteger(this.entriesMax) || this.entriesMax < 1)
      throw new RangeError("entriesMax must be positive");
  }

  /** Counts the index once (at open); bounded by the entries the bounds allow. */
  async open(): Promise<void> {
    let n = 0;
    let oldest: string | undefined;
    for await (const k of this.store
      .sublevel("meta")
      .keys({ gte: INDEX_PREFIX, lt: prefixEnd(INDEX_PREFIX) })) {
      oldest ??= k;
      n += 1;
      const named = namedByIndex(k);
      if (named !== undefined) this.present.add(entryKey(named.identity, named.requestId));
    }
    this.indexed = n;
    this.nextDueMs = oldest === undefined ? Number.POSITIVE_INFINITY : this.dueMs(oldest);
  }

  /** Entries on disk, for tests and status. */
  get size(): number {
    return this.indexed;
  }

  /**
   * The unexpired entry of (identity, request id), shape-checked only; undefined when there is
   * none or it has expired. Call with the id's lock held.
   */
  async find(
    identity: string,
    requestId: string,
    nowMs: number,
  ): Promise<Unauthenticated<ClientRequestEntry> | undefined> {
    const key = entryKey(identity, requestId);
    if (!this.present.mayHold(key)) return undefined;
    const bytes = await this.store.get("meta", key);
    if (bytes === undefined) return undefined;
    const parsed = parseClientRequest(bytes, key);
    const e = parsed.unverified;
    if (e.identity !== identity || e.requestId !== requestId) {
      throw new LockboxError("DATA_LOSS", `integrity check failed for client request ${key} (another name)`);
    }
    return nowMs - e.createdAt.getTime() >= this.ttlMs ? undefined : parsed;
  }

  /** Operations storing `entry` (in the same batch as the key it names). Call with the id's lock held. */
  putOps(entry: ClientRequestEntry, keys: ProjectKeys): StoreOp[] {
    const at = entry.createdAt.getTime();
    // Counted from now, before the batch is written: find reads the store for it from here on.
    this.present.add(entryKey(entry.identity, entry.requestId));
    return [
      {
        type: "put",
        sublevel: "meta",
        key: entryKey(entry.identity, entry.requestId),
        value: encodeClientRequest(entry, keys.recordMacKey),
      },
      {
        type: "put",
        sublevel: "meta",
        key: indexKey(at, entry.identity, entry.requestId),
        value: new Uint8Array(0),
      },
    ];
  }

  /** After the batch of putOps is written: counts it, and reclaims in the background when due. */
  written(entry: ClientRequestEntry, nowMs: number): void {
    this.indexed += 1;
    this.nextDueMs = Math.min(this.nextDueMs, entry.createdAt.getTime() + this.ttlMs);
    if (this.indexed > this.entriesMax || nowMs >= this.nextDueMs) this.reclaimSoon(nowMs);
  }

  /**
   * Starts a reclaim pass unless one runs; a trigger during a pass runs one more pass after it
   * (with the latest time), so no trigger is lost. A failed pass is retried by the next trigger.
   */
  reclaimSoon(nowMs: number): void {
    if (this.reclaiming !== undefined) {
      this.rerunAtMs = Math.max(this.rerunAtMs ?? nowMs, nowMs);
      return;
    }
    this.reclaiming = this.reclaim(nowMs)
      .catch(() => {
        // The store may be closing; nothing is lost, the entries stay bounded by the next pass.
      })
      .finally(() => {
        this.reclaiming = undefined;
        const again = this.rerunAtMs;
        this.rerunAtMs = undefined;
        if (again !== undefined && !this.closed) this.reclaimSoon(again);
      });
  }

  /** Waits until no reclaim pass runs or is due to rerun (tests), without stopping them. */
  async idle(): Promise<void> {
    while (this.reclaiming !== undefined) await this.reclaiming;
  }

  /** Waits for a running pass and starts no more (before the store closes). */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
  }

  /**
   * Deletes index entries oldest first while they are due or over the count bound, up to
   * RECLAIM_BATCH of them per write (one synced batch each).
   */
  async reclaim(nowMs: number): Promise<void> {
    for (;;) {
      const oldest = await this.store
        .sublevel("meta")
        .keys({ gte: INDEX_PREFIX, lt: prefixEnd(INDEX_PREFIX), limit: RECLAIM_BATCH })
        .all();
      const doomed: string[] = [];
      for (const k of oldest) {
        if (this.indexed - doomed.length <= this.entriesMax && this.dueMs(k) > nowMs) break;
        doomed.push(k);
      }
      if (doomed.length > 0) {
        await this.deleteIndexed(doomed);
        this.indexed -= doomed.length;
      }
      if (doomed.length < oldest.length) {
        this.nextDueMs = this.dueMs(oldest[doomed.length]!);
        return;
      }
      if (oldest.length < RECLAIM_BATCH) {
        this.nextDueMs = Number.POSITIVE_INFINITY;
        return;
      }
    }
  }

  private dueMs(index: string): number {
    const hex = index.slice(INDEX_PREFIX.length, INDEX_PREFIX.length + 12);
    const at = Number.parseInt(hex, 16);
    // A damaged index name is due at once: reclaiming it is the repair.
    return Number.isSafeInteger(at) ? at + this.ttlMs : 0;
  }

  /**
   * Deletes index entries, and each one's entry if that is still the one the index names, in one
   * batch. Every entry's lock is held from its check until the batch is written, so a request that
   * reuses an expired id meanwhile cannot have its new entry deleted.
   */
  private async deleteIndexed(indexes: readonly string[]): Promise<void> {
    const ops: StoreOp[] = [];
    // By entry: a reused id can have a stale index entry beside its current one, and one lock
    // must not be taken twice.
    const byEntry = new Map<string, { identity: string; requestId: string; indexes: string[] }>();
    for (const index of indexes) {
      ops.push({ type: "del", sublevel: "meta", key: index });
      const named = namedByIndex(index);
      // A damaged index name names no entry: only the index entry goes.
      if (named === undefined) continue;
      const { identity, requestId } = named;
      const key = entryKey(identity, requestId);
      const entry = byEntry.get(key) ?? { identity, requestId, indexes: [] };
      entry.indexes.push(index);
      byEntry.set(key, entry);
    }
    const entries = [...byEntry.entries()];
    /** Index entries still stored when their entry's lock was taken: the ones this batch removes. */
    const removed: string[] = [];
    const locked = async (i: number): Promise<void> => {
      if (i === entries.length) {
        await this.store.write(ops);
        for (const key of removed) this.present.remove(key);
        return;
      }
      const [key, { identity, requestId, indexes: named }] = entries[i]!;
      await this.locks.run(clientRequestLock(identity, requestId), async () => {
        // Checked under the lock: another pass that deleted the same index entry first must not
        // have it uncounted twice (the filter would then hide a stored entry).
        for (const index of named) if (this.store.getNow("meta", index) !== undefined) removed.push(key);
        const bytes = await this.store.get("meta", key);
        if (bytes !== undefined && named.some((index) => this.namedBy(bytes, key, index))) {
          ops.push({ type: "del", sublevel: "meta", key });
        }
        await locked(i + 1);
      });
    };
    await locked(0);
  }

  /** Is the stored entry `bytes` the one index entry `index` was written with? A damaged one is. */
  private namedBy(bytes: Uint8Array, key: string, index: string): boolean {
    try {
      const e = parseClientRequest(bytes, key).unverified;
      return indexKey(e.createdAt.getTime(), e.identity, e.requestId) === index;
    } catch (e) {
      if (e instanceof LockboxError && e.code === "DATA_LOSS") return true; // reclaimed with its index
      throw e;
    }
  }
}
