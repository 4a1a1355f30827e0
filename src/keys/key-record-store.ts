/**
 * Where key records live: the "records" sublevel keyed `<partition>/<id>` (DESIGN §7), the
 * partition read from the key id itself (cluster/ring/key-id.ts: a version-8 id carries its
 * scope's placement hash; a legacy version-4 id's partition is the salted hash of the id), plus a listing index in "meta" keyed `idx/<project>/<scope>/<id>` so a
 * project, or one scope of it, lists in order without scanning every partition. A record and its
 * index entry are always written in one batch.
 *
 * Records are MAC'd under their project's record key (record-codec.ts): `load` returns only
 * authenticated records; `loadUnauthenticated` lets the access check look at a record's project
 * before any key is touched, so a caller who may not see a key costs the same as a missing id.
 */
import { partitionOfKeyId } from "../../cluster/ring/key-id.js";
import { partitionOf } from "../../cluster/ring/partition.js";
import { LockboxError } from "../errors.js";
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import { recordKey } from "../store/record-key.js";
import type { KeyRecord } from "./key-model.js";
import type { ProjectKeks, ProjectKeys } from "./project-keks.js";
import {
  authenticateKeyRecord,
  encodeKeyRecord,
  parseKeyRecord,
  type Unauthenticated,
} from "./record-codec.js";

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
    private readonly keks: ProjectKeks,
    clusterSalt: Uint8Array,
    private readonly partitionPower: number,
  ) {
    this.clusterSalt = new Uint8Array(clusterSalt);
    partitionOf(this.clusterSalt, "probe", partitionPower); // validates salt and power up front
  }

  /** The partition of a key id (a validated, lower-case UUID). */
  partitionOf(id: string): number {
    return partitionOfKeyId(this.clusterSalt, id, this.partitionPower);
  }

  /** The "records" key of a key id. */
  recordKeyOf(id: string): string {
    return recordKey(this.partitionOf(id), id, this.partitionPower);
  }

  /** The authenticated record of `id`, or undefined. Any damage, or another id's record, is DATA_LOSS. */
  async load(id: string): Promise<KeyRecord | undefined> {
    const parsed = await this.loadUnauthenticated(id);
    return parsed === undefined ? undefined : this.authenticate(parsed);
  }

  /** The record of `id` checked for shape only; pass it through `authenticate` before using it. */
  async loadUnauthenticated(id: string): Promise<Unauthenticated<KeyRecord> | undefined> {
    const stored = await this.store.get("records", this.recordKeyOf(id));
    return stored === undefined ? undefined : this.parse(stored, id);
  }

  /** Checks a parsed record's MAC under its project's record key; DATA_LOSS if it fails. */
  async authenticate(parsed: Unauthenticated<KeyRecord>): Promise<KeyRecord> {
    const { id, project } = parsed.unverified;
    let keys: ProjectKeys;
    try {
      keys = await this.keks.getExisting(project);
    } catch (e) {
      // A damaged project field names a project with no KEK: the record is what is damaged.
      if (e instanceof LockboxError && e.code === "DATA_LOSS") {
        throw new LockboxError("DATA_LOSS", `integrity check failed for key ${id}`, undefined, { cause: e });
      }
      throw e;
    }
    return authenticateKeyRecord(parsed, keys.recordMacKey, id);
  }

  /** Operations writing `record` (MAC'd under `keys`); `withIndex` also adds its listing entry (for new keys). */
  putOps(record: KeyRecord, keys: ProjectKeys, withIndex: boolean): StoreOp[] {
    const value = encodeKeyRecord(record, keys.recordMacKey);
    const ops: StoreOp[] = [{ type: "put", sublevel: "records", key: this.recordKeyOf(record.id), value }];
    if (withIndex) {
      const key = `${listingPrefix(record.project, record.scope)}${record.id}`;
      ops.push({ type: "put", sublevel: "meta", key, value: EMPTY });
    }
    return ops;
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
    const records: KeyRecord[] = [];
    for (const [i, v] of values.entries()) {
      const id = ids[i]!;
      if (v === undefined)
        throw new LockboxError("DATA_LOSS", `key ${id} is listed but its record is missing`);
      const record = await this.authenticate(this.parse(v, id));
      // The index key is not authenticated: it must name the record's own project and scope.
      if (!page[i]!.startsWith(listingPrefix(record.project, record.scope))) {
        throw new LockboxError("DATA_LOSS", `the listing entry of key ${id} does not match its record`);
      }
      records.push(record);
    }
    return { records, lastIndexKey: page[page.length - 1], more: indexKeys.length > limit };
  }

  /**
   * Number of records not destroyed, and of records that do not parse (a full scan; done once at
   * open). A statistic for status: it checks shapes but not MACs, which would need every
   * project's KEK at start. A damaged record does not stop the peer: reading it is DATA_LOSS.
   */
  async countLive(): Promise<{ live: number; damaged: number }> {
    let live = 0;
    let damaged = 0;
    for await (const [k, v] of this.store.sublevel("records").iterator()) {
      try {
        if (parseKeyRecord(v, k).unverified.state !== "destroyed") live += 1;
      } catch (e) {
        if (!(e instanceof LockboxError && e.code === "DATA_LOSS")) throw e;
        damaged += 1;
      }
    }
    return { live, damaged };
  }

  /**
   * Up to `limit` keys stored without replication (their listing entries; only a single peer writes
   * them), as `<project>/<scope>/<id>`: a store that has any cannot turn replication on (key-service.ts).
   */
  async singlePeerKeys(limit: number): Promise<string[]> {
    const keys = await this.store
      .sublevel("meta")
      .keys({ gte: "idx/", lt: prefixEnd("idx/"), limit })
      .all();
    return keys.map((k) => k.slice("idx/".length));
  }

  private parse(bytes: Uint8Array, id: string): Unauthenticated<KeyRecord> {
    const parsed = parseKeyRecord(bytes, id);
    if (parsed.unverified.id !== id) {
      throw new LockboxError("DATA_LOSS", `integrity check failed for key ${id} (record names another id)`);
    }
    return parsed;
  }
}
