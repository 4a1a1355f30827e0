/**
 * Where grants live (the "meta" sublevel until the raft state holds them):
 *   grant/<key id>/<grant id>  -> the grant (record-codec.ts)
 *   grant-id/<grant id>        -> the key id, so RevokeGrant finds a grant by its id alone
 * A key's grants are contiguous, so checking a caller's grant is one bounded range scan.
 */
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import type { Grant } from "./key-model.js";
import { prefixEnd } from "./key-record-store.js";
import { decodeGrant, encodeGrant } from "./record-codec.js";

/** Most grant records (live, expired or revoked) one key may accumulate. */
export const GRANTS_PER_KEY_MAX = 1000;

const grantPrefix = (keyId: string): string => `grant/${keyId}/`;
const grantKey = (keyId: string, grantId: string): string => `${grantPrefix(keyId)}${grantId}`;
const grantIdKey = (grantId: string): string => `grant-id/${grantId}`;

export class GrantStore {
  constructor(private readonly store: PeerStore) {}

  /** Number of grant records of a key, counted up to GRANTS_PER_KEY_MAX. */
  async countForKey(keyId: string): Promise<number> {
    const prefix = grantPrefix(keyId);
    const keys = await this.store
      .sublevel("meta")
      .keys({ gte: prefix, lt: prefixEnd(prefix), limit: GRANTS_PER_KEY_MAX })
      .all();
    return keys.length;
  }

  /** Operations writing `grant`; `isNew` also adds its id lookup entry. */
  putOps(grant: Grant, isNew: boolean): StoreOp[] {
    const ops: StoreOp[] = [
      { type: "put", sublevel: "meta", key: grantKey(grant.keyId, grant.id), value: encodeGrant(grant) },
    ];
    if (isNew) {
      const value = new Uint8Array(Buffer.from(grant.keyId, "utf8"));
      ops.push({ type: "put", sublevel: "meta", key: grantIdKey(grant.id), value });
    }
    return ops;
  }

  /** The key a grant belongs to, or undefined for an unknown grant. */
  async keyIdOf(grantId: string): Promise<string | undefined> {
    const bytes = await this.store.get("meta", grantIdKey(grantId));
    return bytes === undefined ? undefined : Buffer.from(bytes).toString("utf8");
  }

  async load(keyId: string, grantId: string): Promise<Grant | undefined> {
    const stored = await this.store.get("meta", grantKey(keyId, grantId));
    return stored === undefined ? undefined : decodeGrant(stored, grantId);
  }

  /** Does `identity` hold a grant on `keyId` that is unrevoked and not yet expired at `nowMs`? */
  async hasLive(identity: string, keyId: string, nowMs: number): Promise<boolean> {
    const prefix = grantPrefix(keyId);
    const range = { gte: prefix, lt: prefixEnd(prefix), limit: GRANTS_PER_KEY_MAX };
    for await (const [k, v] of this.store.sublevel("meta").iterator(range)) {
      const g = decodeGrant(v, k);
      if (g.grantee === identity && g.revokedAt === undefined && nowMs < g.expiresAt.getTime()) return true;
    }
    return false;
  }
}
