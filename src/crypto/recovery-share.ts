/**
 * k-of-n recovery shares of a cluster master key (DESIGN.md §2), written once
 * at `lockbox init` for their custodians and combined by `lockbox recover`
 * when no TPM can unseal the CMK.
 *
 * One share is one small JSON file, self-describing so a custodian, an
 * operator and `recover` can all tell which share it is and whether it is
 * whole:
 *   {"format":"lockbox-recovery-share","version":1,"clusterId":...,"epoch":1,
 *    "index":2,"threshold":3,"shares":5,"share":"<hex>","cmkCheck":"<hex>",
 *    "checksum":"<hex>"}
 * `checksum` is SHA-256 over every other field (it names a damaged share);
 * `cmkCheck` (cmk-check.ts) is the same in every share of a split and decides
 * whether combined shares gave the right key, so a refusal of k-1 shares (or
 * of one wrong share) never depends on luck.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { CMK_CHECK_BYTES, cmkCheckValue, cmkMatchesCheck } from "./cmk-check.js";
import { MASTER_KEY_BYTES } from "./keyring.js";
import type { MasterKey } from "./master-key-provider.js";
import { MasterKeyError } from "./master-key-error.js";
import { nodeRandomSource, zeroize, type RandomSource } from "./random-source.js";
import { combineShares, SHARE_INDEX_MAX, splitSecret } from "./shamir.js";

export const SHARE_FORMAT = "lockbox-recovery-share";
export const SHARE_VERSION = 1;
/** A share file is a few hundred bytes; anything past this is not one. */
export const SHARE_FILE_BYTES_MAX = 4096;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface RecoveryShare {
  readonly clusterId: string;
  readonly epoch: number;
  /** 1..shares. */
  readonly index: number;
  readonly threshold: number;
  readonly shares: number;
  /** MASTER_KEY_BYTES bytes. Secret: a share file is 0600 and goes to one custodian. */
  readonly share: Uint8Array;
  readonly cmkCheck: Uint8Array;
}

/** Splits the CMK of `clusterId`/`epoch` into `shares` shares, any `threshold` of which rebuild it. */
export function makeRecoveryShares(p: {
  cmk: Uint8Array;
  clusterId: string;
  epoch: number;
  threshold: number;
  shares: number;
  random?: RandomSource;
}): RecoveryShare[] {
  if (p.cmk.length !== MASTER_KEY_BYTES) throw new RangeError(`master key must be ${MASTER_KEY_BYTES} bytes`);
  if (!UUID.test(p.clusterId)) throw new RangeError("clusterId must be a UUID");
  const cmkCheck = cmkCheckValue(p.cmk, p.clusterId, p.epoch);
  return splitSecret(p.cmk, p.threshold, p.shares, p.random ?? nodeRandomSource).map((s) => ({
    clusterId: p.clusterId,
    epoch: p.epoch,
    index: s.index,
    threshold: p.threshold,
    shares: p.shares,
    share: s.value,
    cmkCheck,
  }));
}

export function encodeRecoveryShare(s: RecoveryShare): string {
  const fields = {
    format: SHARE_FORMAT,
    version: SHARE_VERSION,
    clusterId: s.clusterId,
    epoch: s.epoch,
    index: s.index,
    threshold: s.threshold,
    shares: s.shares,
    share: hex(s.share),
    cmkCheck: hex(s.cmkCheck),
  };
  return JSON.stringify({ ...fields, checksum: hex(shareChecksum(fields)) }, null, 2) + "\n";
}

/** Parses and checks one share file's text; `source` (its path) names it in errors. */
export function decodeRecoveryShare(text: string, source: string): RecoveryShare {
  const damaged = (what: string): MasterKeyError =>
    new MasterKeyError("SHARE_DAMAGED", `recovery share ${source}: ${what}`);
  if (text.length > SHARE_FILE_BYTES_MAX) throw damaged(`larger than ${SHARE_FILE_BYTES_MAX} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw damaged("not JSON (damaged, or not a share file)");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw damaged("not a share object");
  const o = v as Record<string, unknown>;
  if (o.format !== SHARE_FORMAT)
    throw damaged(`not a lockbox recovery share (format ${JSON.stringify(o.format)})`);
  if (o.version !== SHARE_VERSION)
    throw damaged(`version ${JSON.stringify(o.version)} is not ${SHARE_VERSION}`);
  const int = (name: string, min: number, max: number): number => {
    const x = o[name];
    if (typeof x !== "number" || !Number.isInteger(x) || x < min || x > max)
      throw damaged(`${name} must be an integer in ${min}..${max}`);
    return x;
  };
  const bytes = (name: string, length: number): Uint8Array => {
    const x = o[name];
    if (typeof x !== "string" || !new RegExp(`^[0-9a-f]{${length * 2}}$`).test(x))
      throw damaged(`${name} must be ${length * 2} lower-case hex digits`);
    return new Uint8Array(Buffer.from(x, "hex"));
  };
  if (typeof o.clusterId !== "string" || !UUID.test(o.clusterId)) throw damaged("clusterId must be a UUID");
  const clusterId = o.clusterId;
  const epoch = int("epoch", 1, 0xffffffff);
  const shares = int("shares", 1, SHARE_INDEX_MAX);
  const threshold = int("threshold", 1, shares);
  const index = int("index", 1, shares);
  const share = bytes("share", MASTER_KEY_BYTES);
  const cmkCheck = bytes("cmkCheck", CMK_CHECK_BYTES);
  const checksum = bytes("checksum", 32);
  const expected = shareChecksum({
    format: SHARE_FORMAT,
    version: SHARE_VERSION,
    clusterId,
    epoch,
    index,
    threshold,
    shares,
    share: hex(share),
    cmkCheck: hex(cmkCheck),
  });
  if (!timingSafeEqual(expected, checksum))
    throw damaged(`share ${index}: checksum mismatch (damaged or edited)`);
  return { clusterId, epoch, index, threshold, shares, share, cmkCheck };
}

/** Reads and checks one share file (bounded read; a FIFO or a huge file is refused). */
export async function readRecoveryShareFile(path: string): Promise<RecoveryShare> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (cause) {
    throw new MasterKeyError("SHARE_DAMAGED", `recovery share ${path} cannot be read`, { cause });
  }
  try {
    if (!(await handle.stat()).isFile())
      throw new MasterKeyError("SHARE_DAMAGED", `recovery share ${path} is not a file`);
    const buf = Buffer.alloc(SHARE_FILE_BYTES_MAX + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    try {
      return decodeRecoveryShare(buf.subarray(0, bytesRead).toString("utf8"), path);
    } finally {
      buf.fill(0);
    }
  } finally {
    await handle.close();
  }
}

/**
 * Writes each share to its own new file in `dir` (mode 0600, never over an
 * existing file, synced with the directory) and returns the paths in share order.
 */
export async function writeRecoveryShareFiles(
  dir: string,
  shares: readonly RecoveryShare[],
): Promise<string[]> {
  const paths: string[] = [];
  for (const s of shares) {
    const path = join(dir, recoveryShareFileName(s));
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.chmod(0o600);
      await handle.writeFile(encodeRecoveryShare(s), "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    paths.push(path);
  }
  const d = await open(dir, constants.O_RDONLY);
  try {
    await d.sync();
  } finally {
    await d.close();
  }
  return paths;
}

export function recoveryShareFileName(
  s: Pick<RecoveryShare, "clusterId" | "epoch" | "index" | "shares">,
): string {
  return `lockbox-${s.clusterId}-epoch${s.epoch}-share-${s.index}-of-${s.shares}.json`;
}

/**
 * Rebuilds the CMK from shares of one split. Refuses, naming the reason:
 * shares of different clusters, epochs or splits, or a share given twice
 * (SHARES_MIXED); fewer than the threshold (SHARES_TOO_FEW); a combination
 * that fails the check value (SHARES_WRONG_KEY: a forged share, or a
 * threshold edited down). With `clusterId`, shares of another cluster are
 * SHARES_MIXED too. The caller owns (and zeroes) the returned key.
 */
export function recoverMasterKey(
  shares: readonly RecoveryShare[],
  options: { clusterId?: string } = {},
): MasterKey {
  const first = shares[0];
  if (first === undefined) throw new MasterKeyError("SHARES_TOO_FEW", "no recovery shares given");
  if (options.clusterId !== undefined && first.clusterId !== options.clusterId) {
    throw new MasterKeyError(
      "SHARES_MIXED",
      `the shares belong to cluster ${first.clusterId}, not to this peer's cluster ${options.clusterId}`,
    );
  }
  const seen = new Set<number>();
  for (const s of shares) {
    const differs =
      s.clusterId !== first.clusterId ||
      s.epoch !== first.epoch ||
      s.threshold !== first.threshold ||
      s.shares !== first.shares ||
      !timingSafeEqual(s.cmkCheck, first.cmkCheck);
    if (differs) {
      throw new MasterKeyError(
        "SHARES_MIXED",
        `share ${s.index} (cluster ${s.clusterId}, epoch ${s.epoch}, ${s.threshold} of ${s.shares}) is not from the same split as share ${first.index} (cluster ${first.clusterId}, epoch ${first.epoch}, ${first.threshold} of ${first.shares})`,
      );
    }
    if (seen.has(s.index)) throw new MasterKeyError("SHARES_MIXED", `share ${s.index} was given twice`);
    seen.add(s.index);
  }
  if (shares.length < first.threshold) {
    throw new MasterKeyError(
      "SHARES_TOO_FEW",
      `${shares.length} recovery share(s) given; this master key needs ${first.threshold} of its ${first.shares}`,
    );
  }
  const key = combineShares(
    shares.slice(0, first.threshold).map((s) => ({ index: s.index, value: s.share })),
  );
  if (!cmkMatchesCheck(key, first.clusterId, first.epoch, first.cmkCheck)) {
    zeroize(key);
    throw new MasterKeyError(
      "SHARES_WRONG_KEY",
      "the shares do not rebuild the master key (its check value does not match): one of them is wrong",
    );
  }
  return { epoch: first.epoch, key };
}

function shareChecksum(fields: Record<string, string | number>): Uint8Array {
  const order = [
    "format",
    "version",
    "clusterId",
    "epoch",
    "index",
    "threshold",
    "shares",
    "share",
    "cmkCheck",
  ];
  const h = createHash("sha256");
  for (const k of order) h.update(`${k}=${String(fields[k])}\n`);
  return new Uint8Array(h.digest());
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
