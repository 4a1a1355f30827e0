/**
 * Where key records live: the "records" sublevel keyed `<partition>/<id>` (the partition as the
 * ring computes it), plus a listing index in "meta" keyed `idx/<project>/<scope>/<id>` so a
 * project, or one scope of it, lists in order without scanning every partition. A record and its
 * index entry are always written in one batch.
 */
import { partitionOf } from "../../cluster/ring/partition.js";
import { LockboxError } from "../errors.js";
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import { recordKey } from "../store/record-key.js";
import type { KeyRecord } from "./key-model.js";
import { decodeKeyRecord, encodeKeyRecord } from "./record-codec.js";

const EMPTY = new Uint8Array(0);

/** Index prefix of a project, or of one scope of it ("" = every scope). Project and scope never contain "/". */
export const listingPrefix = (project: string, scope: string): string =>
  scope === "" ? `idx/${project}/` : `idx/${project}/${scope}/`;

/** The first key after every key starting with `prefix` (which ends in "/"; "0" follows "/"). */
export const prefixEnd = (prefix: string): string => `${prefix.slice(0, -1)}0`;

export interface ListingPage {
  records: KeyRecord[];
  /** Index key of the last record returned; resume after it. */
  lastIndexKey: string | undefined;
  /** True when more records follow this page. */
  more: boolean;
}

export class KeyRecordStore {
  private readonly clusterSalt: Uint8Array;

  constructor(
    private readonly store: PeerStore,
    clusterSalt: Uint8Array,
    private readonly partitionPower: number,
  ) {
    this.clusterSalt = new Uint8Array(clusterSalt);
    partitionOf(this.clusterSalt, "probe", partitionPower); // validates salt and power up front
  }

  /** The "records" key of a key id. */
  recordKeyOf(id: string): string {
    return recordKey(partitionOf(this.clusterSalt, id, this.partitionPower), id, this.partitionPower);
  }

  /** The record of `id`, or undefined. A record stored under another id's place is DATA_LOSS. */
  async load(id: string): Promise<KeyRecord | undefined> {
    const stored = await this.store.get("records", this.recordKeyOf(id));
    return stored === undefined ? undefined : this.decode(stored, id);
  }

  /** Operations writing `record`; `withIndex` also adds its listing entry (for new keys). */
  putOps(record: KeyRecord, withIndex: boolean): StoreOp[] {
    const ops: StoreOp[] = [
      { type: "put", sublevel: "records", key: this.recordKeyOf(record.id), value: encodeKeyRecord(record) },
    ];
    if (withIndex) {
      const key = `${listingPrefix(record.project, record.scope)}${record.id}`;
      ops.push({ type: "put", sublevel: "meta", key, value: EMPTY });
    }
    return ops;
  }

  /** Compacts the range of `id`'s record, dropping versions a newer table supersedes (see deleteKey). */
  purgeOverwritten(id: string): Promise<void> {
    return this.store.compactKey("records", this.recordKeyOf(id));
  }

  /** Up to `limit` records under a listing prefix, after index key `after` if given. */
  async listPage(prefix: string, after: string | undefined, limit: number): Promise<ListingPage> {
    const range = after === undefined ? { gte: prefix } : { gt: after };
    const indexKeys = await this.store
      .sublevel("meta")
      .keys({ ...range, lt: prefixEnd(prefix), limit: limit + 1 })
      .all();
    const page = indexKeys.slice(0, limit);
    const ids = page.map((k) => k.slice(k.lastIndexOf("/") + 1));
    const values = await this.store.sublevel("records").getMany(ids.map((id) => this.recordKeyOf(id)));
    const records = values.map((v, i) => {
      if (v === undefined)
        throw new LockboxError("DATA_LOSS", `key ${ids[i]} is listed but its record is missing`);
      return this.decode(v, ids[i]!);
    });
    return { records, lastIndexKey: page[page.length - 1], more: indexKeys.length > limit };
  }

  /** Number of records not destroyed (a full scan; done once at open). */
  async countLive(): Promise<number> {
    let count = 0;
    for await (const [k, v] of this.store.sublevel("records").iterator()) {
      if (decodeKeyRecord(v, k).state !== "destroyed") count += 1;
    }
    return count;
  }

  private decode(bytes: Uint8Array, id: string): KeyRecord {
    const record = decodeKeyRecord(bytes, id);
    if (record.id !== id) {
      throw new LockboxError("DATA_LOSS", `integrity check failed for key ${id} (record names ${record.id})`);
    }
    return record;
  }
}
