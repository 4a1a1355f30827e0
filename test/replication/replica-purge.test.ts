/**
 * A destroyed key's wrapped material leaves a replica's LevelDB files, not only its reads: the
 * Replica asks for a purge when a tombstone replaces a version with material (and when a record is
 * deleted), and LevelReplicaStore hands it to the peer store's purger, as the single-peer store does.
 * Real Replica, real PeerStore on a temp directory; the files are searched byte by byte after close.
 */
import test from "ava";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeReplicatedKey, type ReplicatedKey } from "../../cluster/replication/index.js";
import { partitionOfKeyId, placedKeyId, scopeHash32 } from "../../cluster/ring/index.js";
import { LevelReplicaStore } from "../../src/replication/leveldb-replica-store.js";
import { Replica } from "../../src/replication/replica.js";
import { openPeerStore } from "../../src/store/peer-store.js";

const SALT = new Uint8Array([5, 5, 5, 5]);
const POWER = 4;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function filesHold(dir: string, needle: Buffer): Promise<string[]> {
  const hits: string[] = [];
  for (const name of await readdir(dir)) {
    const bytes = await readFile(join(dir, name)).catch(() => Buffer.alloc(0));
    if (bytes.indexOf(needle) >= 0) hits.push(name);
  }
  return hits;
}

test("a tombstone merged over a record with material purges the material from the store's files", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-replica-purge-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await openPeerStore(dir, { purgeDelayMs: 0 });
  const replica = new Replica({
    self: "a",
    store: new LevelReplicaStore(store, POWER),
    partitionOfKey: (id) => partitionOfKeyId(SALT, id, POWER),
    partitions: 2 ** POWER,
    nowMs: () => Date.now(),
    reclaimAgeMs: 3_600_000,
  });
  await replica.open();
  const material = Buffer.from("wrapped-material-that-must-leave-the-disk-0123456789");
  const stamp = { wallMs: Date.now(), logical: 0, peer: "a" };
  const id = placedKeyId(scopeHash32(SALT, "p", "s"), new Uint8Array(16).fill(9));
  const live: ReplicatedKey = {
    fields: {
      id,
      project: "p",
      scope: "s",
      name: "k",
      algorithm: "AES",
      bitLength: 256,
      createdAtMs: 1,
      parentId: "",
    },
    created: stamp,
    wrappedMaterial: new Uint8Array(material),
    state: { value: "active", stamp },
    tombstone: null,
    grants: [],
    consumers: [],
  };
  const partition = partitionOfKeyId(SALT, id, POWER);
  t.like(await replica.put(partition, encodeReplicatedKey(live)), { ok: true });
  const tombstone: ReplicatedKey = {
    ...live,
    wrappedMaterial: null,
    tombstone: { ...stamp, logical: 1 },
  };
  t.like(await replica.put(partition, encodeReplicatedKey(tombstone)), { ok: true });
  t.true(store.purgeStatus().pending + store.purgeStatus().runs > 0, "a purge was asked for");
  for (let i = 0; i < 80 && store.purgeStatus().pending > 0; i++) await sleep(25);
  t.is(store.purgeStatus().pending, 0);
  await store.close();
  t.deepEqual(await filesHold(dir, material), [], "no file holds the destroyed material");
});
