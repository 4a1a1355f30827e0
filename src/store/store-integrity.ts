/**
 * Checks a LevelDB directory before it is opened, so a damaged store stops the peer at start
 * instead of being served (DESIGN.md §7). classic-level exposes neither `paranoid_checks` nor
 * `verify_checksums`, and without them LevelDB drops the records after a damaged one in a
 * write-ahead log ("ignoring error ... checksum mismatch", then deletes the log: acknowledged
 * keys lost) and serves a damaged table block as if it were data. So this module does what
 * paranoid checks would, itself, on the files the MANIFEST names as live:
 *   - the MANIFEST named by CURRENT: every record's checksum, and that its edits parse;
 *   - every write-ahead log still to be recovered: every record's checksum (log-format reader);
 *   - every live table: its size as recorded, and every block's checksum (table check).
 * It must run before LevelDB opens the directory: opening replays the logs and deletes them.
 * Reads after open are covered by the records' own MACs (keys/record-codec.ts).
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { LockboxError } from "../errors.js";
import { readLogRecords } from "./leveldb-log-format.js";
import { liveFiles, ManifestError, type LiveFiles } from "./leveldb-manifest.js";
import { checkTable } from "./leveldb-table-check.js";

/** Throws DATA_LOSS naming the damaged file and what to do; a missing or new store passes. */
export async function checkStoreFiles(dir: string): Promise<void> {
  let current: string;
  try {
    current = await readFile(join(dir, "CURRENT"), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return; // a store not yet created
    throw e;
  }
  const manifestName = current.endsWith("\n") ? current.slice(0, -1) : current;
  if (!/^MANIFEST-\d+$/.test(manifestName)) throw damaged(dir, "CURRENT", "does not name a MANIFEST");
  const manifest = await readExisting(dir, manifestName);
  const contents = readLogRecords(manifest);
  if (contents.damage !== undefined) {
    throw damaged(dir, manifestName, `${contents.damage.problem} at byte ${contents.damage.offset}`);
  }
  let live: LiveFiles;
  try {
    live = liveFiles(contents.records);
  } catch (e) {
    if (e instanceof ManifestError) throw damaged(dir, manifestName, e.message);
    throw e;
  }

  const names = await readdir(dir);
  for (const name of names.filter((n) => /^\d+\.log$/.test(n)).sort()) {
    const number = Number(name.slice(0, -4));
    if (number < live.logNumber && number !== live.prevLogNumber) continue; // obsolete: never replayed
    const log = readLogRecords(await readFile(join(dir, name)));
    if (log.damage !== undefined)
      throw damaged(dir, name, `${log.damage.problem} at byte ${log.damage.offset}`);
  }
  for (const [number, size] of [...live.tables].sort((a, b) => a[0] - b[0])) {
    const name = await tableFileName(dir, names, number);
    const actual = (await stat(join(dir, name))).size;
    if (actual !== size) throw damaged(dir, name, `is ${actual} bytes, the MANIFEST recorded ${size}`);
    const problem = checkTable(await readFile(join(dir, name)));
    if (problem !== undefined) throw damaged(dir, name, `${problem.problem} at byte ${problem.offset}`);
  }
}

async function tableFileName(dir: string, names: readonly string[], number: number): Promise<string> {
  const stem = String(number).padStart(6, "0");
  const name = [`${stem}.ldb`, `${stem}.sst`].find((n) => names.includes(n));
  if (name === undefined) throw damaged(dir, `${stem}.ldb`, "is missing (the MANIFEST lists it as live)");
  return name;
}

async function readExisting(dir: string, name: string): Promise<Uint8Array> {
  try {
    return await readFile(join(dir, name));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT")
      throw damaged(dir, name, "is missing (CURRENT names it)");
    throw e;
  }
}

function damaged(dir: string, name: string, what: string): LockboxError {
  const path = join(dir, name);
  return new LockboxError(
    "DATA_LOSS",
    `the store is damaged: ${path} ${what.startsWith("is ") || what.startsWith("does ") ? what : `has ${what}`}. ` +
      `This peer will not serve a damaged store. Stop it, keep ${dir} aside for analysis, and restore ` +
      `the directory from a backup (in a cluster: remove this peer's data and let it re-replicate). ` +
      `Do not run LevelDB's repair: it drops the damaged records silently.`,
  );
}
