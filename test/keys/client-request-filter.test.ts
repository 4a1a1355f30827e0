/**
 * ClientRequestStore keeps in memory which entries may be stored (EntryFilter), so that a create
 * whose request id was never stored reads nothing: the filter must never hide a stored entry (after
 * a write, a restart, a reused id), and must forget an entry once it is reclaimed.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import fc from "fast-check";
import { ClientRequestStore, CLIENT_REQUEST_TTL_MS, EntryFilter } from "../../src/keys/client-requests.js";
import { KeyedMutex } from "../../src/keys/keyed-mutex.js";
import type { ProjectKeys } from "../../src/keys/project-keks.js";
import type { ClientRequestEntry } from "../../src/keys/record-codec.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";

const keys = { recordMacKey: new Uint8Array(randomBytes(32)) } as unknown as ProjectKeys;
const entry = (requestId: string, atMs: number): ClientRequestEntry => ({
  identity: "vol-host",
  requestId,
  method: "CreateKey",
  project: "tenant-a",
  keyId: "8a3e1b2c-0000-8000-8000-000000000001",
  fingerprint: "f",
  createdAt: new Date(atMs),
});

/** A store whose reads of the meta sublevel are counted. */
async function open(
  dir: string,
): Promise<{ store: PeerStore; requests: ClientRequestStore; reads: string[] }> {
  const store = await openPeerStore(dir);
  const reads: string[] = [];
  const get = store.get.bind(store);
  store.get = (name, key) => {
    if (name === "meta") reads.push(key);
    return get(name, key);
  };
  const requests = new ClientRequestStore(store, new KeyedMutex());
  await requests.open();
  return { store, requests, reads };
}

test("find reads the store only for an entry that may be stored: never for an id not stored, always for a stored one (also after a restart and a reused id), never after it is reclaimed", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-crf-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const t0 = 1_700_000_000_000;
  let { store, requests, reads } = await open(dir);

  t.is(await requests.find("vol-host", "never-stored", t0), undefined);
  t.deepEqual(reads, [], "an id never stored is answered without a read");

  await store.write(requests.putOps(entry("r1", t0), keys));
  requests.written(entry("r1", t0), t0);
  t.is((await requests.find("vol-host", "r1", t0))?.unverified.requestId, "r1");
  t.is(reads.length, 1);
  t.is(await requests.find("other-host", "r1", t0), undefined);
  t.is(reads.length, 1, "another identity's id is another entry");

  // A restart rebuilds what may be stored from the index on disk.
  await store.close();
  ({ store, requests, reads } = await open(dir));
  t.is((await requests.find("vol-host", "r1", t0))?.unverified.requestId, "r1");
  t.is(reads.length, 1);

  // Reused after it expired: two index entries name it; reclaiming the older keeps it findable,
  // also when two passes reclaim it at once (the write below starts one in the background).
  const t1 = t0 + CLIENT_REQUEST_TTL_MS;
  await store.write(requests.putOps(entry("r1", t1), keys));
  requests.written(entry("r1", t1), t1);
  await Promise.all([requests.reclaim(t1 + 1), requests.reclaim(t1 + 1)]);
  await requests.idle();
  t.is((await requests.find("vol-host", "r1", t1 + 1))?.unverified.createdAt.getTime(), t1);

  // Reclaimed for good: no read any more.
  await requests.reclaim(t1 + CLIENT_REQUEST_TTL_MS);
  const before = reads.length;
  t.is(await requests.find("vol-host", "r1", t1 + CLIENT_REQUEST_TTL_MS), undefined);
  t.is(reads.length, before);
  await store.close();
});

test("EntryFilter: a key added more often than removed is always held, in crowded slots too; a saturated slot is never emptied", (t) => {
  // Four slots for up to 40 keys: nearly every key shares its slot with others.
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 39 })), { maxLength: 300 }),
      (steps) => {
        const filter = new EntryFilter(2);
        const held = new Map<string, number>();
        for (const [add, n] of steps) {
          const key = `client-request/vol-host/r${n}`;
          const count = held.get(key) ?? 0;
          // As the store does: an entry is removed only when it was counted.
          if (add) {
            filter.add(key);
            held.set(key, count + 1);
          } else if (count > 0) {
            filter.remove(key);
            held.set(key, count - 1);
          }
        }
        for (const [key, count] of held) if (count > 0 && !filter.mayHold(key)) return false;
        return true;
      },
    ),
  );
  const empty = new EntryFilter();
  t.false(empty.mayHold("client-request/vol-host/r1"), "nothing added: nothing held");
  const one = new EntryFilter(0);
  for (let i = 0; i < EntryFilter.SATURATED; i++) one.add(`k${i}`);
  for (let i = 0; i < EntryFilter.SATURATED; i++) one.remove(`k${i}`);
  t.true(one.mayHold("k0"), "a slot that reached the largest count stays 'maybe'");
  t.throws(() => new EntryFilter(25), { instanceOf: RangeError });
});
