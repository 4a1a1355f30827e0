/**
 * A consistent backup of one peer's store, and its restore (issue 12 item 5, single peer).
 *
 * What a backup holds: every entry of the peer's LevelDB (records, audit log, raft, meta, hints,
 * purge markers), read through ONE iterator, which LevelDB gives a snapshot: the backup is the
 * store as of one instant, whatever writes follow. Plus the peer's config.json, whose cluster salt
 * and partition power the records' placement depends on. Keys in the store are wrapped under their
 * project KEK and the master key, so a backup holds no key in the clear; it is useless without the
 * master key, which it does NOT contain (nor the CA's or the peer's private keys): keep those apart
 * and together with the backups (README, "Backup and restore").
 *
 * Format, version 1: one JSON header line; then entries `[u32 key bytes][key][u32 value
 * bytes][value]` (big-endian lengths); then the trailer `[u32 0xFFFFFFFF][u64 entry count][32-byte
 * SHA-256 of everything before the trailer]`. Restore reads a file as hostile: it checks the whole
 * file (lengths within bounds, count, hash) before it writes anything, and writes only into an
 * empty store.
 *
 * A cluster peer's backup also has a raft snapshot of the control state in a file beside it
 * (control-backup.ts), named with its SHA-256 in this header's `controlSnapshot`.
 */
import { createHash } from "node:crypto";
import { constants, createReadStream, createWriteStream } from "node:fs";
import { access } from "node:fs/promises";
import { LockboxError } from "../errors.js";
import type { PeerStore } from "../store/peer-store.js";

export const BACKUP_FORMAT = "lockbox-backup";
export const BACKUP_VERSION = 1;
const TRAILER_MARK = 0xffffffff;
const HEADER_BYTES_MAX = 64 * 1024;
const KEY_BYTES_MAX = 4096;
const VALUE_BYTES_MAX = 64 * 1024 * 1024;
/** Entries per synced batch on restore. */
const RESTORE_BATCH_MAX = 1000;

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: typeof BACKUP_VERSION;
  kind: "peer-store";
  peerId: string;
  clusterId: string;
  /** ISO 8601. */
  createdAt: string;
  lockboxVersion: string;
  /** The peer's config.json, as it was. */
  config: Record<string, unknown>;
  /** A cluster peer's control snapshot, written beside the backup (control-backup.ts). */
  controlSnapshot?: { file: string; sha256: string };
}

export interface BackupSummary {
  entries: number;
  bytes: number;
  sha256: string;
}

/** Writes a backup of `store` to `path` (created 0600; an existing file is refused). */
export async function writeStoreBackup(
  store: PeerStore,
  header: Omit<BackupHeader, "format" | "version" | "kind">,
  path: string,
): Promise<BackupSummary> {
  const out = createWriteStream(path, { flags: "wx", mode: 0o600 });
  await new Promise<void>((resolve, reject) => {
    out.once("open", () => resolve());
    out.once("error", reject);
  });
  const hash = createHash("sha256");
  let bytes = 0;
  let failed: Error | undefined;
  out.on("error", (e) => (failed ??= e));
  const put = async (chunk: Buffer): Promise<void> => {
    if (failed !== undefined) throw failed;
    hash.update(chunk);
    bytes += chunk.length;
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", resolve));
  };
  const full: BackupHeader = {
    format: BACKUP_FORMAT,
    version: BACKUP_VERSION,
    kind: "peer-store",
    ...header,
  };
  await put(Buffer.from(JSON.stringify(full) + "\n", "utf8"));
  let entries = 0;
  // One iterator over the whole database: LevelDB reads it from one implicit snapshot.
  const iterator = store.db.iterator({ keyEncoding: "buffer", valueEncoding: "buffer" });
  try {
    for await (const [key, value] of iterator as AsyncIterable<[Buffer, Buffer]>) {
      await put(Buffer.concat([u32(key.length), key, u32(value.length), value]));
      entries += 1;
    }
  } finally {
    await iterator.close();
  }
  const digest = hash.digest();
  const count = Buffer.alloc(8);
  count.writeBigUInt64BE(BigInt(entries));
  const trailer = Buffer.concat([u32(TRAILER_MARK), count, digest]);
  out.write(trailer);
  await new Promise<void>((resolve, reject) => {
    out.end(() => (failed !== undefined ? reject(failed) : resolve()));
  });
  return { entries, bytes: bytes + trailer.length, sha256: digest.toString("hex") };
}

/** Reads and checks a whole backup without writing anything: its header, and DATA_LOSS if damaged. */
export async function verifyStoreBackup(path: string): Promise<BackupHeader & BackupSummary> {
  await access(path, constants.R_OK).catch((cause: unknown) => {
    const code = (cause as NodeJS.ErrnoException).code ?? "error";
    throw new LockboxError("NOT_FOUND", `cannot read backup ${path}: ${code}`, undefined, { cause });
  });
  let header: BackupHeader | undefined;
  const summary = await readEntries(
    path,
    (h) => (header = h),
    () => {},
  );
  return { ...header!, ...summary };
}

/**
 * Restores `path` into `store`, which must be empty: checks the whole file first (nothing is
 * written from a damaged one), then writes its entries in synced batches.
 */
export async function restoreStoreBackup(
  path: string,
  store: PeerStore,
): Promise<BackupHeader & BackupSummary> {
  const checked = await verifyStoreBackup(path);
  for await (const _ of store.db.keys({ limit: 1 })) {
    throw new LockboxError(
      "FAILED_PRECONDITION",
      `the store in ${store.dir} is not empty; restore only into an empty one`,
    );
  }
  let batch: { type: "put"; key: Buffer; value: Buffer }[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const ops = batch;
    batch = [];
    await store.db.batch(ops, { keyEncoding: "buffer", valueEncoding: "buffer", sync: true } as never);
  };
  await readEntries(
    path,
    () => {},
    (key, value) => batch.push({ type: "put", key, value }),
    async () => {
      if (batch.length >= RESTORE_BATCH_MAX) await flush();
    },
  );
  await flush();
  return checked;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

const damaged = (path: string, what: string): LockboxError =>
  new LockboxError("DATA_LOSS", `backup ${path} is damaged or not a lockbox backup: ${what}`);

/**
 * Streams the file through a small parser: header, entries, trailer; every length checked against
 * its bound before anything is buffered, the hash and count checked at the end.
 */
async function readEntries(
  path: string,
  onHeader: (h: BackupHeader) => void,
  onEntry: (key: Buffer, value: Buffer) => void,
  /** Awaited after each chunk read (restore writes its batch there, so reading waits for writing). */
  afterChunk: () => Promise<void> = async () => {},
): Promise<BackupSummary> {
  const hash = createHash("sha256");
  let buffered: Buffer = Buffer.alloc(0);
  let bytes = 0;
  let entries = 0;
  let state = "header" as "header" | "entries" | "done";
  let trailer: Buffer | undefined;
  const need = (n: number): Buffer | undefined => {
    if (buffered.length < n) return undefined;
    const chunk = buffered.subarray(0, n);
    buffered = buffered.subarray(n);
    return chunk;
  };
  const parse = (): void => {
    for (;;) {
      if (state === "header") {
        const nl = buffered.indexOf(0x0a);
        if (nl < 0) {
          if (buffered.length > HEADER_BYTES_MAX) throw damaged(path, "no header line");
          return;
        }
        const line = need(nl + 1)!;
        hash.update(line);
        onHeader(parseHeader(path, line.subarray(0, nl)));
        state = "entries";
        continue;
      }
      if (state === "done") {
        if (buffered.length > 0) throw damaged(path, "bytes after the trailer");
        return;
      }
      if (buffered.length < 4) return;
      const keyLength = buffered.readUInt32BE(0);
      if (keyLength === TRAILER_MARK) {
        if (buffered.length < 4 + 8 + 32) return;
        trailer = need(4 + 8 + 32)!;
        state = "done";
        continue;
      }
      if (keyLength > KEY_BYTES_MAX) throw damaged(path, `a key of ${keyLength} bytes`);
      if (buffered.length < 4 + keyLength + 4) return;
      const valueLength = buffered.readUInt32BE(4 + keyLength);
      if (valueLength > VALUE_BYTES_MAX) throw damaged(path, `a value of ${valueLength} bytes`);
      if (buffered.length < 8 + keyLength + valueLength) return;
      const entry = need(8 + keyLength + valueLength)!;
      hash.update(entry);
      onEntry(Buffer.from(entry.subarray(4, 4 + keyLength)), Buffer.from(entry.subarray(8 + keyLength)));
      entries += 1;
    }
  };
  for await (const chunk of createReadStream(path)) {
    bytes += (chunk as Buffer).length;
    buffered = buffered.length === 0 ? (chunk as Buffer) : Buffer.concat([buffered, chunk as Buffer]);
    parse();
    await afterChunk();
  }
  if (state !== "done" || trailer === undefined) throw damaged(path, "it ends before its trailer");
  const digest = hash.digest();
  if (trailer.readBigUInt64BE(4) !== BigInt(entries)) throw damaged(path, "the entry count differs");
  if (!digest.equals(trailer.subarray(12))) throw damaged(path, "the SHA-256 differs");
  return { entries, bytes, sha256: digest.toString("hex") };
}

function parseHeader(path: string, line: Buffer): BackupHeader {
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(line.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw damaged(path, "the header is not JSON");
  }
  if (typeof h !== "object" || h === null || h.format !== BACKUP_FORMAT)
    throw damaged(path, "no lockbox-backup header");
  if (h.version !== BACKUP_VERSION) {
    throw new LockboxError(
      "FAILED_PRECONDITION",
      `backup ${path} has version ${String(h.version)}; this lockbox reads ${BACKUP_VERSION}`,
    );
  }
  if (h.kind !== "peer-store") {
    throw new LockboxError(
      "FAILED_PRECONDITION",
      `backup ${path} is a '${String(h.kind)}' backup; this lockbox restores peer-store backups`,
    );
  }
  if (
    typeof h.peerId !== "string" ||
    typeof h.clusterId !== "string" ||
    typeof h.config !== "object" ||
    h.config === null
  ) {
    throw damaged(path, "the header lacks peerId, clusterId or config");
  }
  const control = h.controlSnapshot as Record<string, unknown> | undefined;
  if (
    control !== undefined &&
    (typeof control !== "object" ||
      control === null ||
      typeof control.file !== "string" ||
      !/^[^/\0]{1,255}$/.test(control.file) ||
      typeof control.sha256 !== "string" ||
      !/^[0-9a-f]{64}$/.test(control.sha256))
  ) {
    throw damaged(path, "the header's controlSnapshot is not a file name and a SHA-256");
  }
  return h as unknown as BackupHeader;
}
