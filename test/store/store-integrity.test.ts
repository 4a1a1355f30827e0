/**
 * The store's own checks of LevelDB's files at open (store-integrity.ts): every checksummed byte
 * of a write-ahead log, a table and the MANIFEST is covered, a damaged file is named, and a log
 * cut short by a crash (an append never synced, so never acknowledged) still opens. Real LevelDB
 * files written by PeerStore.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test, { type ExecutionContext } from "ava";
import { isLockboxError, type LockboxError } from "../../src/errors.js";
import { readLogRecords } from "../../src/store/leveldb-log-format.js";
import { checkTable } from "../../src/store/leveldb-table-check.js";
import { openPeerStore } from "../../src/store/peer-store.js";
import { checkStoreFiles } from "../../src/store/store-integrity.js";

const FOOTER_BYTES = 48;

/** A closed store with `count` records; `reopen` also turns the log into a table. */
async function storeWith(t: ExecutionContext, count: number, reopen: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "lockbox-integrity-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = await openPeerStore(dir);
  for (let i = 0; i < count; i++) {
    const value = new Uint8Array(Buffer.from(`value ${i} `.repeat(i % 5 === 0 ? 40 : 3)));
    await store.write([{ type: "put", sublevel: "records", key: `k${i}`, value }]);
  }
  await store.close();
  if (reopen) await (await openPeerStore(dir)).close();
  return dir;
}

const fileMatching = async (dir: string, pattern: RegExp): Promise<string> => {
  const name = (await readdir(dir)).find((n) => pattern.test(n));
  if (name === undefined) throw new Error(`no file matching ${pattern} in ${dir}`);
  return name;
};

test("every flipped byte of a write-ahead log is detected", async (t) => {
  const dir = await storeWith(t, 40, false);
  const log = await readFile(join(dir, await fileMatching(dir, /^\d+\.log$/)));
  t.is(readLogRecords(log).records.length, 40);
  t.is(readLogRecords(log).damage, undefined);
  const missed: number[] = [];
  for (let i = 0; i < log.length; i++) {
    const bad = Buffer.from(log);
    bad[i]! ^= 0x01;
    if (readLogRecords(bad).damage === undefined) missed.push(i);
  }
  t.deepEqual(missed, []);
});

test("a log cut short at any point (a crash mid-append) is accepted with the records before the cut", async (t) => {
  const dir = await storeWith(t, 40, false);
  const log = await readFile(join(dir, await fileMatching(dir, /^\d+\.log$/)));
  for (let n = 0; n < log.length; n += 17) {
    const read = readLogRecords(log.subarray(0, n));
    t.is(read.damage, undefined, `cut at ${n}`);
    t.deepEqual(read.records, readLogRecords(log).records.slice(0, read.records.length));
  }
});

test("every flipped byte of a table outside the footer's padding is detected", async (t) => {
  const dir = await storeWith(t, 40, true);
  const table = await readFile(join(dir, await fileMatching(dir, /^\d+\.(ldb|sst)$/)));
  t.is(checkTable(table), undefined);
  const missed: number[] = [];
  for (let i = 0; i < table.length; i++) {
    const bad = Buffer.from(table);
    bad[i]! ^= 0x01;
    if (checkTable(bad) === undefined) missed.push(i);
  }
  // Only padding between the footer's two block handles and its magic number is unchecked, and
  // LevelDB never reads it.
  const footerAt = table.length - FOOTER_BYTES;
  t.true(
    missed.every((i) => i > footerAt + 4 && i < table.length - 8),
    `undetected: ${missed.filter((i) => i <= footerAt + 4 || i >= table.length - 8).join(",")}`,
  );
});

for (const [what, pattern] of [
  ["write-ahead log", /^\d+\.log$/],
  ["table", /^\d+\.(ldb|sst)$/],
  ["MANIFEST", /^MANIFEST-\d+$/],
] as const) {
  test(`opening a store with a flipped byte in its ${what} fails DATA_LOSS naming the file, changing nothing`, async (t) => {
    const dir = await storeWith(t, 40, what !== "write-ahead log");
    if (what === "write-ahead log") await t.notThrowsAsync(checkStoreFiles(dir));
    const name = await fileMatching(dir, pattern);
    const bytes = await readFile(join(dir, name));
    bytes[Math.floor(bytes.length / 3)]! ^= 0x20;
    await writeFile(join(dir, name), bytes);
    const listing = await readdir(dir);

    const e = await t.throwsAsync<LockboxError>(openPeerStore(dir));
    t.true(isLockboxError(e, "DATA_LOSS"), String(e));
    t.true(e!.message.includes(join(dir, name)), e!.message);
    t.deepEqual(await readdir(dir), listing, "LevelDB never opened it");
    t.deepEqual(await readFile(join(dir, name)), bytes);
  });
}
