/**
 * The cluster part of a backup (issue 12 item 5): a raft snapshot of the control state, read from
 * a stopped peer's store, and the re-founding that brings a cluster back from it.
 *
 * The control state of a peer is its raft snapshot plus the committed entries after it. A backup
 * applies those entries to a fresh ControlState, exactly as the driver would, and writes the image
 * (control-snapshot.ts: magic, version, SHA-256 of the body) with the raft position it stands for.
 * The image holds members, policies, the ring, CMK epochs (never a key), project KEKs and the CA key
 * only wrapped under the master key: no key material in the clear.
 *
 * Re-founding (`lockbox restore --shares ... --single-voter`): when every other member is gone for
 * good, the restored peer's raft log is replaced by that snapshot with this peer as its one voter,
 * as etcd's snapshot restore founds a new membership. Its other members stay listed in the control
 * state until an operator removes them (`lockbox peer remove`).
 */
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { dirname } from "node:path";

import { EntryType, type NodeId } from "../../cluster/raft/core/types.js";
import { ControlState } from "../controlplane/control-state.js";
import { decodeControlSnapshot } from "../controlplane/control-snapshot.js";
import { LockboxError } from "../errors.js";
import { syncDirectory } from "../pki/pem-files.js";
import { peerRaftStorage } from "../raft/peer-raft.js";
import type { PeerStore } from "../store/peer-store.js";

/** Where a control snapshot sits beside its backup file. */
export const controlSnapshotPath = (backupPath: string): string => `${backupPath}.control`;

export interface ControlSnapshotSummary {
  /** The file, beside the backup. */
  file: string;
  sha256: string;
  bytes: number;
  /** The raft position the image stands for: the last committed entry, and its term. */
  index: number;
  term: number;
  voters: string[];
  learners: string[];
  members: number;
}

interface ControlImageAt {
  image: Uint8Array;
  index: number;
  term: number;
  voters: NodeId[];
  learners: NodeId[];
}

/**
 * The control state of a stopped peer's store, as of its commit index: undefined when the store
 * holds no raft state (nothing to add to a store backup).
 */
export async function readControlImage(store: PeerStore): Promise<ControlImageAt | undefined> {
  const persisted = await peerRaftStorage(store).load();
  if (persisted.snapshot === null && persisted.entries.length === 0) return undefined;
  const state = new ControlState();
  const snapshot = persisted.snapshot;
  if (snapshot !== null && snapshot.data.byteLength > 0) state.restore(snapshot.data);
  let index = snapshot?.metadata.index ?? 0;
  let term = snapshot?.metadata.term ?? 0;
  let conf = snapshot?.metadata.confState ?? { voters: [], learners: [] };
  for (const e of persisted.entries) {
    if (e.index > persisted.hardState.commit) break;
    if (e.type === EntryType.ConfChange && e.confState !== null) conf = e.confState;
    // A new leader's first entry is empty: nothing for the state machine (the driver skips it too).
    if (e.type === EntryType.Normal && e.data.byteLength > 0) state.apply(e.data, e.index);
    index = e.index;
    term = e.term;
  }
  return { image: state.snapshot(), index, term, voters: [...conf.voters], learners: [...conf.learners] };
}

/** Writes the control snapshot of `store` beside the backup at `backupPath` (0600, never overwriting). */
export async function writeControlSnapshot(
  store: PeerStore,
  backupPath: string,
): Promise<ControlSnapshotSummary | undefined> {
  const at = await readControlImage(store);
  if (at === undefined) return undefined;
  const file = controlSnapshotPath(backupPath);
  const header = JSON.stringify({
    format: CONTROL_BACKUP_FORMAT,
    index: at.index,
    term: at.term,
    voters: at.voters,
    learners: at.learners,
  });
  const bytes = Buffer.concat([Buffer.from(header + "\n"), at.image]);
  const handle = await open(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600).catch(
    (err: unknown) => {
      throw (err as NodeJS.ErrnoException).code === "EEXIST"
        ? new LockboxError("ALREADY_EXISTS", `${file} exists; refusing to overwrite it`)
        : err;
    },
  );
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await syncDirectory(dirname(file));
  return {
    file,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    bytes: bytes.byteLength,
    index: at.index,
    term: at.term,
    voters: at.voters,
    learners: at.learners,
    members: decodeControlSnapshot(at.image).members.length,
  };
}

const CONTROL_BACKUP_FORMAT = "lockbox-control-snapshot-v1";
const CONTROL_HEADER_BYTES_MAX = 64 * 1024;

/** Reads a control snapshot file as hostile: header shape, then the image's own digest check. */
export async function readControlSnapshot(file: string, expectedSha256?: string): Promise<ControlImageAt> {
  const bytes = await readFile(file);
  const damaged = (why: string): LockboxError =>
    new LockboxError("DATA_LOSS", `${file} is not a usable control snapshot: ${why}`);
  if (expectedSha256 !== undefined && createHash("sha256").update(bytes).digest("hex") !== expectedSha256)
    throw damaged("its SHA-256 differs from the one its backup recorded");
  const newline = bytes.subarray(0, CONTROL_HEADER_BYTES_MAX).indexOf(0x0a);
  if (newline < 0) throw damaged("no header line");
  let header: unknown;
  try {
    header = JSON.parse(bytes.subarray(0, newline).toString("utf8"));
  } catch {
    throw damaged("the header is not JSON");
  }
  const h = header as Record<string, unknown>;
  const ids = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");
  if (
    h.format !== CONTROL_BACKUP_FORMAT ||
    !Number.isSafeInteger(h.index) ||
    !Number.isSafeInteger(h.term) ||
    !ids(h.voters) ||
    !ids(h.learners)
  )
    throw damaged("the header has the wrong fields");
  const image = new Uint8Array(bytes.subarray(newline + 1));
  try {
    decodeControlSnapshot(image);
  } catch (err) {
    throw damaged(err instanceof Error ? err.message : String(err));
  }
  return {
    image,
    index: h.index as number,
    term: h.term as number,
    voters: h.voters as NodeId[],
    learners: h.learners as NodeId[],
  };
}

/**
 * Replaces the raft state of `store` by the control snapshot, with `self` its one voter: the
 * restored peer leads a raft group of one that holds the whole control state.
 */
export async function refoundRaft(store: PeerStore, self: NodeId, at: ControlImageAt): Promise<void> {
  const storage = peerRaftStorage(store);
  const persisted = await storage.load();
  const term = Math.max(at.term, persisted.hardState.term);
  await storage.save({
    snapshot: {
      metadata: { index: at.index, term: at.term, confState: { voters: [self], learners: [] } },
      data: at.image,
    },
    entries: [],
    hardState: { term, vote: null, commit: at.index },
    sync: true,
  });
}
