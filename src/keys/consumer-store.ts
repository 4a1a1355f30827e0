/**
 * Where a key's consumers live (Barbican's consumers: which volumes, instances or images use a
 * key), in the "meta" sublevel until the replicated record holds them:
 *   consumer/<key id>/<hex SHA-256 of the consumer's canonical encoding>  -> the entry
 *                                          (record-codec.ts, MAC'd with the record key of the
 *                                          key's project, bound to the key id)
 * Consumer fields may hold any printable character, "/" included, so the entry's name is a digest
 * of the (service, resource type, resource id) triple: one entry per consumer, found without a
 * scan. The entry read back must hash to its own name, or it is DATA_LOSS.
 *
 * A key holds at most CONSUMERS_PER_KEY_MAX consumers (the key service refuses more with
 * RESOURCE_EXHAUSTED), and every range read here is bounded by twice that.
 */
import { createHash } from "node:crypto";
import { encodeBinding } from "../crypto/binding.js";
import { LockboxError } from "../errors.js";
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import type { Consumer, ConsumerRef } from "./key-model.js";
import { prefixEnd } from "./key-record-store.js";
import type { ProjectKeys } from "./project-keks.js";
import { encodeConsumer, parseConsumer, type StoredConsumer, type Unauthenticated } from "./record-codec.js";

/** Most consumers one key may have. Barbican sets none; a volume key has a handful. */
export const CONSUMERS_PER_KEY_MAX = 100;

const keyPrefix = (keyId: string): string => `consumer/${keyId}/`;

/** The digest naming a consumer's entry. */
export function consumerDigest(ref: ConsumerRef): string {
  const canonical = encodeBinding({
    kind: "consumer-ref",
    id: "",
    attributes: { service: ref.service, resourceType: ref.resourceType, resourceId: ref.resourceId },
  });
  return createHash("sha256").update(canonical).digest("hex");
}

const entryKey = (keyId: string, ref: ConsumerRef): string => `${keyPrefix(keyId)}${consumerDigest(ref)}`;

/** Sorts by service, then resource type, then resource id (code unit order). */
export function compareConsumers(a: ConsumerRef, b: ConsumerRef): number {
  const cmp = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);
  return cmp(a.service, b.service) || cmp(a.resourceType, b.resourceType) || cmp(a.resourceId, b.resourceId);
}

export const sameConsumer = (a: ConsumerRef, b: ConsumerRef): boolean => compareConsumers(a, b) === 0;

export class ConsumerStore {
  constructor(
    private readonly store: PeerStore,
    private readonly perKeyMax: number = CONSUMERS_PER_KEY_MAX,
  ) {}

  /** Every consumer entry of `keyId`, shape-checked only (authenticate before trusting them). */
  async ofKey(keyId: string): Promise<Unauthenticated<StoredConsumer>[]> {
    const prefix = keyPrefix(keyId);
    const range = { gte: prefix, lt: prefixEnd(prefix), limit: 2 * this.perKeyMax };
    const rows = await this.store.sublevel("meta").iterator(range).all();
    return rows.map(([k, v]) => {
      const parsed = parseConsumer(v, k);
      if (k !== entryKey(keyId, parsed.unverified.consumer)) {
        throw new LockboxError(
          "DATA_LOSS",
          `integrity check failed for consumer ${k} (stored under another name)`,
        );
      }
      return parsed;
    });
  }

  /** True when `keyId` has at least one consumer entry (one short read). */
  async any(keyId: string): Promise<boolean> {
    const prefix = keyPrefix(keyId);
    const keys = await this.store
      .sublevel("meta")
      .keys({ gte: prefix, lt: prefixEnd(prefix), limit: 1 })
      .all();
    return keys.length > 0;
  }

  putOps(keyId: string, consumer: Consumer, keys: ProjectKeys): StoreOp[] {
    const value = encodeConsumer(keyId, consumer, keys.recordMacKey);
    return [{ type: "put", sublevel: "meta", key: entryKey(keyId, consumer), value }];
  }

  deleteOps(keyId: string, ref: ConsumerRef): StoreOp[] {
    return [{ type: "del", sublevel: "meta", key: entryKey(keyId, ref) }];
  }

  /** Operations removing every consumer entry of `keyId` (a forced delete of the key). */
  async deleteAllOps(keyId: string): Promise<StoreOp[]> {
    const prefix = keyPrefix(keyId);
    const keys = await this.store
      .sublevel("meta")
      .keys({ gte: prefix, lt: prefixEnd(prefix), limit: 2 * this.perKeyMax })
      .all();
    return keys.map((key) => ({ type: "del" as const, sublevel: "meta" as const, key }));
  }
}
