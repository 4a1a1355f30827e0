/**
 * The hybrid logical clock's high-water mark on disk (src/replication/hlc-lease.ts), with a real
 * ReplicationNode on a real LevelDB that is closed and opened again: a peer restarted with its
 * physical clock stepped back an hour stamps above every stamp it sent before, so its later change
 * wins the merge over its earlier one; a steady clock syncs the mark about once per lease, not once
 * per write; restarts do not push the clock ever further ahead of physical time; a damaged mark is
 * refused at start.
 */
import test, { type ExecutionContext } from "ava";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  compareStamps,
  type HlcStamp,
  mergeKeys,
  type ReplicatedKey,
} from "../../cluster/replication/index.js";
import { placedKeyId, RingBuilder, scopeHash32 } from "../../cluster/ring/index.js";
import { isLockboxError } from "../../src/errors.js";
import { HLC_HIGH_WATER_KEY, HlcLease } from "../../src/replication/hlc-lease.js";
import { ReplicationNode } from "../../src/replication/replication-node.js";
import { openPeerStore, type PeerStore } from "../../src/store/peer-store.js";
import { peerTls } from "../raft-process/peer-tls.js";
import { ringRecord, TEST_TUNABLES } from "./replication-nodes.js";

const SALT = new Uint8Array(32).fill(9);
const POWER = 3;
const HOUR = 3_600_000;

async function openNode(
  store: PeerStore,
  nowMs: () => number,
  hlcLeaseMs?: number,
): Promise<ReplicationNode> {
  const node = await ReplicationNode.open({
    self: "a",
    store,
    clusterSalt: SALT,
    partitionPower: POWER,
    tls: await peerTls("a"),
    admitPeer: () => null,
    tunables: TEST_TUNABLES,
    nowMs,
    log: () => {},
    ...(hlcLeaseMs !== undefined ? { hlcLeaseMs } : {}),
  });
  // One peer, N = 1: every write is this peer's own replica's.
  const builder = RingBuilder.create({ partPower: POWER, replicas: 1, minPartHours: 0 });
  builder.addPeer({ id: "a", zone: "z", weight: 1 });
  builder.rebalance(0);
  node.sync({ ring: ringRecord(builder), addresses: new Map() });
  return node;
}

function keyStamped(n: number, node: ReplicationNode): ReplicatedKey {
  const stamp = node.keys.stamp();
  return {
    fields: {
      id: placedKeyId(scopeHash32(SALT, "proj", "vol"), new Uint8Array(16).fill(n)),
      project: "proj",
      scope: "vol",
      name: `k${n}`,
      algorithm: "AES",
      bitLength: 256,
      createdAtMs: stamp.wallMs,
      parentId: "",
    },
    created: stamp,
    wrappedMaterial: new Uint8Array(32).fill(n),
    state: { value: "active", stamp },
    tombstone: null,
    grants: [],
    consumers: [],
  };
}

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-hlc-lease-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("a peer restarted with its clock stepped back an hour stamps above every stamp it sent before", async (t) => {
  const dir = await tempDir(t);
  const start = Date.now();
  let store = await openPeerStore(dir);
  let node = await openNode(store, () => start);
  const created = keyStamped(1, node);
  await node.keys.write(created);
  // A change a little later (same clock), e.g. a consumer: also sent, also covered.
  const change = node.keys.stamp();
  await node.keys.write({ ...created, state: { value: "deactivated", stamp: change } });
  t.true(node.hlcHighWater().highWaterMs >= change.wallMs, "the mark on disk covers what was sent");
  await node.close();
  await store.close();

  // Restart on the same LevelDB, the physical clock an hour behind.
  store = await openPeerStore(dir);
  t.teardown(() => store.close());
  node = await openNode(store, () => start - HOUR);
  t.teardown(() => node.close());
  const later = node.keys.stamp();
  t.true(compareStamps(later, change) > 0, `${JSON.stringify(later)} is above ${JSON.stringify(change)}`);
  // So the later change wins the merge over the earlier one, as it must.
  const reactivated: ReplicatedKey = { ...created, state: { value: "active", stamp: later } };
  await node.keys.write(reactivated);
  const read = await node.keys.read(created.fields.id);
  t.is(read!.state.value, "active");
  t.is(
    mergeKeys(read!, { ...created, state: { value: "deactivated", stamp: change } }).state.value,
    "active",
  );
});

test("without the mark, the same restart would stamp below (the test can fail)", async (t) => {
  const dir = await tempDir(t);
  const start = Date.now();
  const store = await openPeerStore(dir);
  t.teardown(() => store.close());
  let node = await openNode(store, () => start);
  const before = node.keys.stamp();
  await node.keys.write(keyStamped(2, node));
  await node.close();
  await store.write([{ type: "del", sublevel: "meta", key: HLC_HIGH_WATER_KEY }]);
  node = await openNode(store, () => start - HOUR);
  t.teardown(() => node.close());
  t.true(compareStamps(node.keys.stamp(), before) < 0, "a lost mark loses the order");
});

test("a steady clock syncs the mark about once per lease, not once per write", async (t) => {
  const dir = await tempDir(t);
  const store = await openPeerStore(dir);
  t.teardown(() => store.close());
  let now = Date.now();
  const node = await openNode(store, () => now, 1_000);
  t.teardown(() => node.close());
  for (let i = 0; i < 200; i++) {
    now += 10; // 200 writes over 2 s of clock
    await node.keys.write(keyStamped(i % 250, node));
    t.true(node.hlcHighWater().highWaterMs >= node.hlcHighWater().last.wallMs);
  }
  const { raises } = node.hlcHighWater();
  t.true(raises >= 2 && raises <= 6, `${raises} raises for 2 s of clock with a 1 s lease`);
});

test("ten restarts that each write once keep the clock within 1.5 leases of a fixed physical clock", async (t) => {
  // The bound is a lease ahead of physical time, not of the previous bound: otherwise each restart
  // that writes moves the clock another lease ahead, until other peers refuse its stamps.
  const dir = await tempDir(t);
  const lease = 1_000;
  const physical = Date.now();
  const store = await openPeerStore(dir);
  t.teardown(() => store.close());
  let sent = node0Stamp();
  for (let restart = 0; restart < 10; restart++) {
    const node = await openNode(store, () => physical, lease);
    const record = keyStamped(restart + 1, node);
    t.true(compareStamps(record.created, sent) > 0, "still above every stamp sent before the restart");
    sent = record.created;
    await node.keys.write(record);
    const { highWaterMs, last } = node.hlcHighWater();
    await node.close();
    t.true(
      highWaterMs - physical <= 1.5 * lease,
      `restart ${restart}: bound ${highWaterMs - physical} ms ahead`,
    );
    t.true(
      last.wallMs - physical <= 1.5 * lease,
      `restart ${restart}: clock ${last.wallMs - physical} ms ahead`,
    );
  }
});

function node0Stamp(): HlcStamp {
  return { wallMs: 0, logical: 0, peer: "a" };
}

test("a damaged high-water mark is DATA_LOSS at start, naming it", async (t) => {
  const dir = await tempDir(t);
  const store = await openPeerStore(dir);
  t.teardown(() => store.close());
  for (const bad of ['{"v":1,"highWaterMs":-5}', '{"v":1}', "not json", '{"v":1,"highWaterMs":1.5,"x":1}']) {
    await store.write([
      { type: "put", sublevel: "meta", key: HLC_HIGH_WATER_KEY, value: new TextEncoder().encode(bad) },
    ]);
    const e = await t.throwsAsync(HlcLease.open(store));
    t.true(isLockboxError(e, "DATA_LOSS"), String(e));
    t.regex(String(e), /high-water mark/);
  }
});
