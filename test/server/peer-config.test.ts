import test from "ava";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isLockboxError } from "../../src/errors.js";
import { loadPeerConfig, newPeerConfig } from "../../src/config/peer-config.js";
import { PEER_RAFT_LIMITS_DEFAULT } from "../../src/raft/peer-raft-limits.js";

function dirWith(t: import("ava").ExecutionContext, content: string | undefined): string {
  const dir = mkdtempSync(join(tmpdir(), "lockbox-config-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  if (content !== undefined) writeFileSync(join(dir, "config.json"), content);
  return dir;
}

test("a new config round-trips through config.json", async (t) => {
  const config = newPeerConfig({ peerId: "peer-3", listen: "127.0.0.1:7443" });
  t.is(config.partitionPower, 10);
  t.regex(config.clusterSalt, /^[0-9a-f]{64}$/);
  const dir = dirWith(t, JSON.stringify(config));
  t.deepEqual(await loadPeerConfig(dir), config);
});

test("a missing config says to run init", async (t) => {
  const err = await t.throwsAsync(loadPeerConfig(dirWith(t, undefined)));
  t.true(isLockboxError(err, "FAILED_PRECONDITION"));
  t.regex(err!.message, /lockbox init/);
});

test("each wrong field is named", async (t) => {
  const good = newPeerConfig({ peerId: "peer-3", listen: "127.0.0.1:7443" });
  const cases: [string, unknown][] = [
    ["(root)", []],
    ["version", { ...good, version: 2 }],
    ["peerId", { ...good, peerId: "has space" }],
    ["clusterId", { ...good, clusterId: 7 }],
    ["listen", { ...good, listen: "7443" }],
    ["listen", { ...good, listen: "127.0.0.1:99999" }],
    ["partitionPower", { ...good, partitionPower: 40 }],
    ["clusterSalt", { ...good, clusterSalt: "abc" }],
    ["paths.data", { ...good, paths: { ...good.paths, data: "" } }],
    ["raft", { ...good, raft: 5 }],
    ["raft.inflightBytesMax", { ...good, raft: { inflightBytesMax: 0 } }],
    ["raft.uncommittedBytesMax", { ...good, raft: { uncommittedBytesMax: 2 ** 31 } }],
    ["raft.promoteLagMax", { ...good, raft: { promoteLagMax: -1 } }],
    ["raft.inflightBytes", { ...good, raft: { inflightBytes: 1 } }],
  ];
  for (const [field, value] of cases) {
    const err = await t.throwsAsync(loadPeerConfig(dirWith(t, JSON.stringify(value))));
    t.true(isLockboxError(err, "FAILED_PRECONDITION"), field);
    t.is((err as { field?: string }).field, field);
    t.true(err!.message.includes(field), err!.message);
  }
  const notJson = await t.throwsAsync(loadPeerConfig(dirWith(t, "{ nope")));
  t.regex(notJson!.message, /not valid JSON/);
});

test("the raft section is optional: each bound left out takes its documented default", async (t) => {
  const good = newPeerConfig({ peerId: "peer-3", listen: "127.0.0.1:7443" });
  t.deepEqual(good.raft, PEER_RAFT_LIMITS_DEFAULT);
  t.deepEqual(PEER_RAFT_LIMITS_DEFAULT, {
    inflightBytesMax: 16 * 1024 * 1024,
    uncommittedBytesMax: 64 * 1024 * 1024,
    promoteLagMax: 1024,
  });
  const { raft: _omitted, ...without } = good;
  t.deepEqual((await loadPeerConfig(dirWith(t, JSON.stringify(without)))).raft, PEER_RAFT_LIMITS_DEFAULT);
  const some = await loadPeerConfig(dirWith(t, JSON.stringify({ ...good, raft: { promoteLagMax: 0 } })));
  t.deepEqual(some.raft, { ...PEER_RAFT_LIMITS_DEFAULT, promoteLagMax: 0 });
});
