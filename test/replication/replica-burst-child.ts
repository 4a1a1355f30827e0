/**
 * Child process for replica-durability.test.ts: a real Replica over the real LevelDB in argv[2].
 * 32 writers put key records (and, every fourth, a tombstone for the key they wrote before) through
 * `Replica.handle`, printing "C <id>" / "D <id>" as soon as each put is acknowledged, until killed.
 */
import { partitionOfKeyId, placedKeyId } from "../../cluster/ring/index.js";
import { encodeReplicatedKey, type ReplicatedKey } from "../../cluster/replication/index.js";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { Replica } from "../../src/replication/replica.js";
import { openPeerStore } from "../../src/store/peer-store.js";

export const SALT = new Uint8Array([9, 9]);
export const POWER = 4;

/** The record writer `n` creates: its material is derived from n, so the parent can check it. */
export function keyRecord(n: number): ReplicatedKey {
  const random = new Uint8Array(16).map((_, i) => (n >> (8 * (i % 4))) & 0xff);
  const id = placedKeyId((n * 2654435761) >>> 0, random);
  const stamp = { wallMs: 1_700_000_000_000 + n, logical: 0, peer: "child" };
  return {
    fields: {
      id,
      project: "p",
      scope: "s",
      name: `k${n}`,
      algorithm: "AES",
      bitLength: 256,
      createdAtMs: stamp.wallMs,
      parentId: "",
    },
    created: stamp,
    wrappedMaterial: new Uint8Array(32).map((_, i) => (n + i) & 0xff),
    state: { value: "active", stamp },
    tombstone: null,
    grants: [],
    consumers: [],
  };
}

const dir = process.argv[2];
if (dir !== undefined) {
  const store = await openPeerStore(dir);
  const replica = new Replica({
    self: "child",
    store: new LevelReplicaStore(store, POWER),
    partitionOfKey: (id) => partitionOfKeyId(SALT, id, POWER),
    partitions: 2 ** POWER,
    nowMs: () => 1_700_000_000_000,
    reclaimAgeMs: 86_400_000,
  });
  await replica.open();
  const burstMax = 50_000; // bounded even if the parent never kills us
  let next = 0;
  const put = async (k: ReplicatedKey): Promise<boolean> => {
    const partition = partitionOfKeyId(SALT, k.fields.id, POWER);
    const reply = await replica.handle({
      from: "test",
      items: [{ kind: "put", partition, record: encodeReplicatedKey(k) }],
    });
    return reply.results[0]!.ok;
  };
  const writer = async (): Promise<void> => {
    let previous: ReplicatedKey | undefined;
    while (next < burstMax) {
      const n = next++;
      const k = keyRecord(n);
      if (await put(k)) process.stdout.write(`C ${n}\n`);
      if (previous !== undefined && n % 4 === 0) {
        const gone = {
          ...previous,
          wrappedMaterial: null,
          tombstone: { wallMs: 1_700_000_100_000, logical: n, peer: "child" },
        };
        if (await put(gone)) process.stdout.write(`D ${previous.fields.name.slice(1)}\n`);
      }
      previous = k;
    }
  };
  await Promise.all(Array.from({ length: 32 }, writer));
  await store.close();
}
