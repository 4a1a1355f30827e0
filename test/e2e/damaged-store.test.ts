/**
 * A damaged store stops the peer at start, naming the file, instead of being served. LevelDB on
 * its own (no paranoid checks) dropped the records after a flipped byte in its write-ahead log
 * and deleted the log, losing acknowledged keys, and served a flipped byte in a table as data.
 * Real peer processes, real LevelDB files, one flipped byte each.
 */
import test from "ava";
import { promises as fs } from "node:fs";
import { basename, join } from "node:path";

import { spawnPeer, type PeerProcess } from "../helpers/peer-process.js";

const peers: PeerProcess[] = [];
test.after.always(async () => {
  for (const p of peers) await p.teardown();
});

async function peerWithKeys(count: number): Promise<{ peer: PeerProcess; ids: string[] }> {
  const peer = await spawnPeer();
  peers.push(peer);
  const client = peer.client(peer.admin, { cache: false });
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    ids.push((await client.createKey({ project: "vol", scope: `s${i}`, name: `key-${i}` })).id);
  }
  return { peer, ids };
}

/** LevelDB files of the peer's data directory matching `pattern`, largest first. */
async function storeFiles(peer: PeerProcess, pattern: RegExp): Promise<string[]> {
  const dir = join(peer.dir, "data");
  const names = (await fs.readdir(dir)).filter((n) => pattern.test(n));
  const sized = await Promise.all(names.map(async (n) => ({ n, size: (await fs.stat(join(dir, n))).size })));
  return sized.sort((a, b) => b.size - a.size).map((f) => join(dir, f.n));
}

/** Flips one bit of the byte where `needle` first occurs in `file` (else in its middle); returns the offset. */
async function flipByte(file: string, needle: string): Promise<number> {
  const bytes = await fs.readFile(file);
  const found = bytes.indexOf(Buffer.from(needle));
  const at = found >= 0 ? found + 3 : Math.floor(bytes.length / 2);
  bytes[at]! ^= 0x04;
  await fs.writeFile(file, bytes);
  return at;
}

async function refusesToStart(
  t: import("ava").ExecutionContext,
  peer: PeerProcess,
  file: string,
): Promise<void> {
  const err = await t.throwsAsync(peer.restart(), undefined, "the peer must not start on a damaged store");
  t.regex(err?.message ?? "", /exited before ready/);
  const log = await peer.log();
  t.true(log.includes(file), `the error names ${file}; log:\n${log}`);
  t.regex(log, /damaged/);
  t.regex(log, /restore/, "and says what to do");
}

test("a flipped byte in the write-ahead log stops the next start, naming the log, and leaves it in place", async (t) => {
  const { peer, ids } = await peerWithKeys(20);
  await peer.kill("SIGKILL"); // the keys are in the write-ahead log only
  const [log] = await storeFiles(peer, /^\d+\.log$/);
  t.truthy(log, "the peer has a write-ahead log");
  const damagedBytes = await fs.readFile(log!);
  t.true(damagedBytes.includes(Buffer.from(ids[10]!)), "the log holds the keys just created");
  await flipByte(log!, ids[10]!);
  const before = await fs.readFile(log!);

  await refusesToStart(t, peer, basename(log!));
  // Nothing was replayed or deleted: the evidence is still there, byte for byte.
  t.deepEqual(await fs.readFile(log!), before);
});

test("a flipped byte in a table file stops the next start, naming the table", async (t) => {
  const { peer, ids } = await peerWithKeys(20);
  await peer.restart(); // opening turns the write-ahead log into a table
  await peer.kill("SIGTERM");
  const tables = await storeFiles(peer, /^\d+\.(ldb|sst)$/);
  t.true(tables.length > 0, "the peer has table files");
  let table = tables[0]!;
  for (const candidate of tables) {
    if ((await fs.readFile(candidate)).includes(Buffer.from(ids[5]!))) table = candidate;
  }
  await flipByte(table, ids[5]!);

  await refusesToStart(t, peer, basename(table));
});
