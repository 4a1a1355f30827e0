/**
 * Where grants live (the "meta" sublevel until the raft state holds them):
 *   grant/<key id>/<grantee>/<grant id>  -> the grant (record-codec.ts, MAC'd with the record key
 *                                           of the key's project)
 *   grant-id/<grant id>                  -> "<key id>/<grantee>", so RevokeGrant finds a grant by
 *                                           its id alone
 * Grants are keyed by (key, grantee): whether a caller holds a grant on a key is one short range
 * read of that caller's own grants, the same work whether the key has no grants, a thousand
 * grants to others, or does not exist (no existence signal by timing). Grantees never contain
 * "/" (validation.ts) and grant ids are UUIDs, so no caller's prefix matches another's grants.
 *
 * Only live grants count against GRANTS_PER_KEY_MAX; revoked and expired ones are reclaimed (both
 * entries deleted) by the next CreateGrant on the key, so a key never holds more than the cap.
 */
import type { PeerStore, StoreOp } from "../store/peer-store.js";
import type { Grant } from "./key-model.js";
import { prefixEnd } from "./key-record-store.js";
import type { ProjectKeys } from "./project-keks.js";
import { encodeGrant, parseGrant, type Unauthenticated } from "./record-codec.js";

/** Most live (unrevoked, unexpired) grants one key may have. */
export const GRANTS_PER_KEY_MAX = 1000;

const keyPrefix = (keyId: string): string => `grant/${keyId}/`;
const granteePrefix = (keyId: string, grantee: string): string => `${keyPrefix(keyId)}${grantee}/`;
const grantKey = (g: Pick<Grant, "keyId" | "grantee" | "id">): string =>
  `${granteePrefix(g.keyId, g.grantee)}${g.id}`;
const grantIdKey = (grantId: string): string => `grant-id/${grantId}`;

/** Where a grant is stored. */
export interface GrantLocation {
  keyId: string;
  grantee: string;
}

export class GrantStore {
  constructor(
    private readonly store: PeerStore,
    /** The key service's cap on live grants per key; bounds every range read here. */
    private readonly perKeyMax: number = GRANTS_PER_KEY_MAX,
  ) {}

  /** The grants of `grantee` on `keyId`, shape-checked only (authenticate before trusting them). */
  async ofGrantee(keyId: string, grantee: string): Promise<Unauthenticated<Grant>[]> {
    const prefix = granteePrefix(keyId, grantee);
    const range = { gte: prefix, lt: prefixEnd(prefix), limit: this.perKeyMax };
    const rows = await this.store.sublevel("meta").iterator(range).all();
    return rows.map(([k, v]) => parseGrant(v, k));
  }

  /**
   * Every grant stored for `keyId`, shape-checked only. Bounded: a key holds at most the cap of
   * live grants plus those revoked or expired since the last CreateGrant reclaimed them.
   */
  async ofKey(keyId: string): Promise<Unauthenticated<Grant>[]> {
    const prefix = keyPrefix(keyId);
    const range = { gte: prefix, lt: prefixEnd(prefix), limit: 2 * this.perKeyMax };
    const rows = await this.store.sublevel("meta").iterator(range).all();
    return rows.map(([k, v]) => parseGrant(v, k));
  }

  /** Operations writing `grant` (MAC'd under `keys`); `isNew` also adds its id lookup entry. */
  putOps(grant: Grant, keys: ProjectKeys, isNew: boolean): StoreOp[] {
    const ops: StoreOp[] = [
      { type: "put", sublevel: "meta", key: grantKey(grant), value: encodeGrant(grant, keys.recordMacKey) },
    ];
    if (isNew) {
      const value = new Uint8Array(Buffer.from(`${grant.keyId}/${grant.grantee}`, "utf8"));
      ops.push({ type: "put", sublevel: "meta", key: grantIdKey(grant.id), value });
    }
    return ops;
  }

  /** Operations removing a grant and its id lookup entry. */
  deleteOps(grant: Grant): StoreOp[] {
    return [
      { type: "del", sublevel: "meta", key: grantKey(grant) },
      { type: "del", sublevel: "meta", key: grantIdKey(grant.id) },
    ];
  }

  /** Where a grant is stored, or undefined for an unknown (or reclaimed) grant. */
  async locationOf(grantId: string): Promise<GrantLocation | undefined> {
    const bytes = await this.store.get("meta", grantIdKey(grantId));
    if (bytes === undefined) return undefined;
    const text = Buffer.from(bytes).toString("utf8");
    const slash = text.indexOf("/");
    return { keyId: text.slice(0, slash), grantee: text.slice(slash + 1) };
  }

  /** The grant at `location`, shape-checked only. */
  async load(location: GrantLocation, grantId: string): Promise<Unauthenticated<Grant> | undefined> {
    const key = grantKey({ ...location, id: grantId });
    const stored = await this.store.get("meta", key);
    return stored === undefined ? undefined : parseGrant(stored, key);
  }
}
