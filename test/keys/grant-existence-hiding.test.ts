/**
 * A caller without access learns nothing about a key's existence from the work its call costs:
 * GetKey of a missing id, of a key without grants and of a key with many grants to others makes
 * the same store reads returning the same number of rows (one record read, one range read of the
 * caller's own grants). Before grants were keyed by (key, grantee), the last case scanned every
 * grant of the key, and took 8x as long. Counting reads, not timing them, keeps the test exact.
 */
import test from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import type { PeerStore, Sublevel, SublevelName } from "../../src/store/peer-store.js";
import { admin, openFixture, serviceOf } from "./key-service-fixture.js";

const GRANTS = 50;
const outsider = serviceOf("curious-host", "other-project");
const req = { project: "p", scope: "s", name: "n", algorithm: "AES", bitLength: 256 } as const;

/** Records every read the store serves: "get <sublevel> <hit|miss>" or "range <sublevel> <rows>". */
function recordReads(store: PeerStore): string[] {
  const reads: string[] = [];
  const get = store.get.bind(store);
  store.get = async (name: SublevelName, key: string) => {
    const v = await get(name, key);
    reads.push(`get ${name} ${v === undefined ? "miss" : "hit"}`);
    return v;
  };
  const sublevel = store.sublevel.bind(store);
  store.sublevel = (name: SublevelName): Sublevel => {
    const s = sublevel(name);
    return new Proxy(s, {
      get(target, prop, receiver) {
        if (prop === "iterator" || prop === "keys" || prop === "values") {
          return (options: unknown) => {
            const it = (target[prop] as (o: unknown) => { all(): Promise<unknown[]> }).call(target, options);
            return {
              all: async () => {
                const rows = await it.all();
                reads.push(`range ${name} ${rows.length}`);
                return rows;
              },
            };
          };
        }
        if (prop === "getMany") {
          return async (keys: string[]) => {
            const vs = await target.getMany(keys);
            reads.push(`getMany ${name} ${vs.filter((v) => v !== undefined).length}`);
            return vs;
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        // Methods run on the real sublevel (its private fields are not on the proxy).
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  };
  return reads;
}

test("GetKey by a caller without access reads the same for a missing id, a key without grants and a key with many grants", async (t) => {
  const fx = await openFixture(t);
  const service = fx.handle.service;
  const bare = await service.createKey(admin, req);
  const granted = await service.createKey(admin, req);
  const expiresAt = new Date(fx.clock.nowMs + 3600_000);
  for (let i = 0; i < GRANTS; i++)
    await service.createGrant(admin, { keyId: granted.id, grantee: `host-${i}`, expiresAt });
  const missing = "0b6f2d1e-8a3c-4e5f-9d7b-1c2a3e4f5a6b";

  const reads = recordReads(fx.handle.store);
  const readsOf = async (id: string): Promise<string[]> => {
    reads.length = 0;
    const e = await t.throwsAsync<LockboxError>(service.getKey(outsider, { id }));
    t.true(isLockboxError(e, "NOT_FOUND"), e?.message);
    return [...reads].sort();
  };
  const forMissing = await readsOf(missing);
  t.deepEqual(forMissing, ["get records miss", "range meta 0"]);
  t.deepEqual(await readsOf(bare.id), ["get records hit", "range meta 0"]);
  t.deepEqual(await readsOf(granted.id), ["get records hit", "range meta 0"]);
});
