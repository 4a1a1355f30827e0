/**
 * The cluster master key sealed to this peer's own TPM (DESIGN.md §2, §5): the
 * only form in which a CMK is ever on a peer's disk. The TPM releases it only
 * while the PCRs named by the policy hold the values they held at sealing,
 * only under the same storage root key (pinned by name, so another TPM or a
 * cleared one is refused before a session is salted to it), and over a
 * session salted to that key with response encryption, so the CMK never
 * crosses the TPM transport in clear (tpm/seal/seal.ts).
 *
 * A file holds one CMK per epoch the peer needs, so that during a rotation
 * (DESIGN.md §2: the old epoch stays until nothing refers to it) a restarted
 * peer still reads both.
 *
 * File format, version 1 (all integers big-endian):
 *   magic "LBXSEALK" (8) | version u16 = 1 | body length u32 | body | SHA-256 of all before (32)
 *   body  = cluster id (16, the UUID's bytes) | entry count u8 (1..SEALED_EPOCHS_MAX) | entries,
 *           epochs strictly ascending
 *   entry = epoch u32 | CMK check value (32) | blob length u16 | sealed blob
 *   sealed blob = TPM2B_PRIVATE || TPM2B_PUBLIC || TPML_PCR_SELECTION || TPM2B_NAME srkName
 * Every entry pins the same storage root key. The checksum names accidental
 * damage; the check value (cmk-check.ts), tested after unsealing, refuses a
 * header edited to another cluster or epoch.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { constants } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { CMK_CHECK_BYTES, cmkCheckValue, cmkMatchesCheck } from "../crypto/cmk-check.js";
import { MASTER_KEY_BYTES } from "../crypto/keyring.js";
import type { MasterKey } from "../crypto/master-key-provider.js";
import { MasterKeyError } from "../crypto/master-key-error.js";
import { zeroize } from "../crypto/random-source.js";
import {
  TPM_ALG_ID,
  TPM_RC,
  TpmClientError,
  TpmDecodeError,
  TpmError,
  TpmlPcrSelection,
  createStoragePrimary,
  decodeSealedBlob,
  encodeSealedBlob,
  objectName,
  policyPcrDigest,
  sealSecret,
  unsealSecret,
  withTransient,
  type SealedBlob,
  type Tpm,
} from "../../tpm/index.js";

const MAGIC = Buffer.from("LBXSEALK", "ascii");
export const SEALED_FILE_VERSION = 1;
const HEADER_BYTES = MAGIC.length + 2 + 4;
const CHECKSUM_BYTES = 32;
/** A sealed CMK file is well under 1 KiB; anything larger is not one. */
export const SEALED_FILE_BYTES_MAX = 8192;
/** PCRs the CMK is sealed to when no policy names others: firmware, its config, option ROMs, boot loader, secure boot. */
export const DEFAULT_SEAL_PCRS: readonly number[] = [0, 1, 2, 3, 7];

/** Most CMK epochs one sealed file holds (a rotation needs two; a few more leave room). */
export const SEALED_EPOCHS_MAX = 8;

export interface SealedMasterKeyEntry {
  readonly epoch: number;
  readonly cmkCheck: Uint8Array;
  readonly blob: SealedBlob & { readonly srkName: Uint8Array };
}

export interface SealedMasterKey {
  readonly clusterId: string;
  /** Epochs strictly ascending; the last is the active one. */
  readonly entries: readonly SealedMasterKeyEntry[];
}

/** Parses a PCR list such as "0,1,2,3,7" or "sha256:0,7" (SHA-256 bank), sorted; undefined if malformed. */
export function parseSealPcrs(text: string): number[] | undefined {
  if (!/^(sha256:)?[0-9]{1,2}(,[0-9]{1,2})*$/.test(text)) return undefined;
  const pcrs = [
    ...new Set(
      text
        .replace(/^sha256:/, "")
        .split(",")
        .map(Number),
    ),
  ].sort((a, b) => a - b);
  return pcrs.some((p) => p > 23) ? undefined : pcrs;
}

/** The SHA-256 PCR selection of `pcrs`. */
export function sha256Pcrs(pcrs: readonly number[]): TpmlPcrSelection {
  return TpmlPcrSelection.of(TPM_ALG_ID.SHA256, [...pcrs]);
}

/**
 * Seals `cmk` (epoch `epoch` of cluster `clusterId`) to the TPM's current
 * values of `pcrs`, and returns the file's bytes. Throws MasterKeyError
 * CMK_TPM_FAILED when the TPM refuses.
 */
export function sealMasterKey(
  tpm: Tpm,
  p: { cmk: Uint8Array; epoch: number; clusterId: string; pcrs: TpmlPcrSelection },
): Promise<Uint8Array> {
  return sealMasterKeys(tpm, {
    keys: [{ epoch: p.epoch, key: p.cmk }],
    clusterId: p.clusterId,
    pcrs: p.pcrs,
  });
}

/**
 * Seals several CMK epochs (a keyring during a rotation) into one file, each
 * to the current values of `pcrs`. Epochs must be distinct; they are stored
 * ascending.
 */
export async function sealMasterKeys(
  tpm: Tpm,
  p: { keys: readonly MasterKey[]; clusterId: string; pcrs: TpmlPcrSelection },
): Promise<Uint8Array> {
  if (p.keys.length === 0 || p.keys.length > SEALED_EPOCHS_MAX)
    throw new RangeError(`a sealed file holds 1..${SEALED_EPOCHS_MAX} epochs`);
  const keys = [...p.keys].sort((a, b) => a.epoch - b.epoch);
  keys.forEach((k, i) => {
    if (k.key.length !== MASTER_KEY_BYTES)
      throw new RangeError(`master key must be ${MASTER_KEY_BYTES} bytes`);
    if (i > 0 && keys[i - 1]!.epoch === k.epoch) throw new RangeError(`epoch ${k.epoch} given twice`);
  });
  const entries: SealedMasterKeyEntry[] = [];
  for (const k of keys) {
    let blob: SealedBlob;
    try {
      // Every entry is sealed under the SRK of the first: one TPM, pinned once.
      blob = await sealSecret(tpm, {
        secret: k.key,
        pcrs: p.pcrs,
        ...(entries[0] !== undefined ? { srkName: entries[0].blob.srkName } : {}),
      });
    } catch (cause) {
      throw new MasterKeyError("CMK_TPM_FAILED", `the TPM did not seal the master key: ${describe(cause)}`, {
        cause,
      });
    }
    if (blob.srkName === undefined) throw new Error("sealSecret returned no SRK name");
    entries.push({
      epoch: k.epoch,
      cmkCheck: cmkCheckValue(k.key, p.clusterId, k.epoch),
      blob: { ...blob, srkName: blob.srkName },
    });
  }
  return encodeSealedMasterKey({ clusterId: p.clusterId, entries });
}

/**
 * Unseals the active (highest) epoch of a sealed file: unsealMasterKeys,
 * keeping only the last key (the others are zeroed).
 */
export async function unsealMasterKey(
  tpm: Tpm,
  bytes: Uint8Array,
  p: { clusterId: string; source: string },
): Promise<MasterKey> {
  const keys = await unsealMasterKeys(tpm, bytes, p);
  for (const k of keys.slice(0, -1)) zeroize(k.key);
  return keys[keys.length - 1]!;
}

/**
 * Unseals every epoch of a sealed file, ascending. Checks, in this order, each
 * failure a MasterKeyError with its reason: the file (CMK_SEALED_FILE_DAMAGED),
 * its cluster (CMK_WRONG_CLUSTER), the TPM's storage root key against the
 * pinned name (CMK_SRK_MISMATCH), the PCRs against the sealed policy
 * (CMK_PCRS_CHANGED: attest again), then unseals in a salted, encrypting
 * session and checks each key against its check value. The PCR pre-check
 * reads values over the bus and only makes the error clear; the TPM's
 * PolicyPCR is what enforces the policy.
 */
export async function unsealMasterKeys(
  tpm: Tpm,
  bytes: Uint8Array,
  p: { clusterId: string; source: string },
): Promise<MasterKey[]> {
  const sealed = decodeSealedMasterKey(bytes, p.source);
  if (sealed.clusterId !== p.clusterId) {
    throw new MasterKeyError(
      "CMK_WRONG_CLUSTER",
      `${p.source} holds the master key of cluster ${sealed.clusterId}, not of this peer's cluster ${p.clusterId}`,
    );
  }
  const keys: MasterKey[] = [];
  try {
    await tpm.exclusive(async () => {
      await checkSrk(tpm, sealed.entries[0]!.blob.srkName, p.source);
      for (const entry of sealed.entries) await checkPcrs(tpm, entry, p.source);
      for (const entry of sealed.entries) {
        keys.push({ epoch: entry.epoch, key: await unsealSecret(tpm, entry.blob) });
      }
    });
  } catch (cause) {
    for (const k of keys) zeroize(k.key);
    if (cause instanceof MasterKeyError) throw cause;
    if (cause instanceof TpmClientError && cause.code === "SALT_KEY_MISMATCH")
      throw srkMismatch(p.source, cause);
    if (cause instanceof TpmError && cause.baseCode === TPM_RC.POLICY_FAIL)
      throw pcrsChanged(p.source, cause);
    throw new MasterKeyError("CMK_TPM_FAILED", `the TPM did not unseal ${p.source}: ${describe(cause)}`, {
      cause,
    });
  }
  const bad = sealed.entries.find(
    (e, i) => !cmkMatchesCheck(keys[i]!.key, sealed.clusterId, e.epoch, e.cmkCheck),
  );
  if (bad !== undefined) {
    for (const k of keys) zeroize(k.key);
    throw new MasterKeyError(
      "CMK_SEALED_FILE_DAMAGED",
      `${p.source}: the unsealed key of epoch ${bad.epoch} does not match the file's check value (the file was edited)`,
    );
  }
  return keys;
}

async function checkSrk(tpm: Tpm, pinned: Uint8Array, source: string): Promise<void> {
  const name = await withTransient(tpm, createStoragePrimary(tpm), async (srk) => objectName(srk.publicArea));
  if (name.length !== pinned.length || !timingSafeEqual(name, pinned)) throw srkMismatch(source);
}

async function checkPcrs(tpm: Tpm, entry: SealedMasterKeyEntry, source: string): Promise<void> {
  const { values } = await tpm.pcrRead(entry.blob.pcrs);
  const digest = policyPcrDigest(
    TPM_ALG_ID.SHA256,
    entry.blob.pcrs,
    values.map((v) => v.digest),
  );
  const policy = entry.blob.outPublic.authPolicy;
  if (digest.length !== policy.length || !timingSafeEqual(digest, policy)) throw pcrsChanged(source);
}

const srkMismatch = (source: string, cause?: unknown): MasterKeyError =>
  new MasterKeyError(
    "CMK_SRK_MISMATCH",
    `${source} was sealed under another TPM's storage root key (another TPM, or this one was cleared): ` +
      "this TPM cannot unseal it; rebuild the master key with `lockbox recover` or attest again",
    { cause },
  );

const pcrsChanged = (source: string, cause?: unknown): MasterKeyError =>
  new MasterKeyError(
    "CMK_PCRS_CHANGED",
    `the TPM's PCRs no longer hold the values ${source} was sealed to (the platform changed): ` +
      "the master key stays sealed; this peer must attest again",
    { cause },
  );

export function encodeSealedMasterKey(s: SealedMasterKey): Uint8Array {
  if (s.entries.length === 0 || s.entries.length > SEALED_EPOCHS_MAX)
    throw new RangeError(`a sealed file holds 1..${SEALED_EPOCHS_MAX} epochs`);
  const parts: Buffer[] = [uuidBytes(s.clusterId), Buffer.of(s.entries.length)];
  for (const e of s.entries) {
    const blob = encodeSealedBlob(e.blob);
    parts.push(u32(e.epoch), Buffer.from(e.cmkCheck), u16(blob.length), Buffer.from(blob));
  }
  const body = Buffer.concat(parts);
  const header = Buffer.concat([MAGIC, u16(SEALED_FILE_VERSION), u32(body.length)]);
  const checksum = createHash("sha256").update(header).update(body).digest();
  return new Uint8Array(Buffer.concat([header, body, checksum]));
}

/** Parses a sealed file; anything wrong is CMK_SEALED_FILE_DAMAGED naming `source` and what is wrong. */
export function decodeSealedMasterKey(bytes: Uint8Array, source: string): SealedMasterKey {
  const damaged = (what: string, cause?: unknown): MasterKeyError =>
    new MasterKeyError("CMK_SEALED_FILE_DAMAGED", `sealed master key file ${source}: ${what}`, { cause });
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length > SEALED_FILE_BYTES_MAX) throw damaged(`larger than ${SEALED_FILE_BYTES_MAX} bytes`);
  if (b.length < HEADER_BYTES + CHECKSUM_BYTES || !b.subarray(0, MAGIC.length).equals(MAGIC))
    throw damaged("not a lockbox sealed master key file");
  const version = b.readUInt16BE(MAGIC.length);
  if (version !== SEALED_FILE_VERSION)
    throw damaged(`format version ${version}; this lockbox reads ${SEALED_FILE_VERSION}`);
  const bodyLength = b.readUInt32BE(MAGIC.length + 2);
  if (HEADER_BYTES + bodyLength + CHECKSUM_BYTES !== b.length)
    throw damaged(`length ${b.length} does not match its header (truncated or extended)`);
  const end = HEADER_BYTES + bodyLength;
  const checksum = createHash("sha256").update(b.subarray(0, end)).digest();
  if (!timingSafeEqual(checksum, b.subarray(end))) throw damaged("checksum mismatch (the file is damaged)");
  const body = b.subarray(HEADER_BYTES, end);
  // Past the checksum the body is still read defensively: a bug or a forged file must not crash.
  let at = 0;
  const take = (n: number, what: string): Buffer => {
    if (at + n > body.length) throw damaged(`${what}: truncated`);
    const out = body.subarray(at, at + n);
    at += n;
    return out;
  };
  const clusterId = uuidString(take(16, "cluster id"));
  const count = take(1, "entry count")[0]!;
  if (count < 1 || count > SEALED_EPOCHS_MAX)
    throw damaged(`entry count ${count} is not in 1..${SEALED_EPOCHS_MAX}`);
  const entries: SealedMasterKeyEntry[] = [];
  for (let i = 0; i < count; i++) {
    const epoch = take(4, "epoch").readUInt32BE(0);
    if (epoch < 1) throw damaged("epoch 0");
    if (i > 0 && epoch <= entries[i - 1]!.epoch) throw damaged("epochs not strictly ascending");
    const cmkCheck = new Uint8Array(take(CMK_CHECK_BYTES, "check value"));
    const blobLength = take(2, "blob length").readUInt16BE(0);
    let blob: SealedBlob;
    try {
      blob = decodeSealedBlob(new Uint8Array(take(blobLength, "sealed object")));
    } catch (cause) {
      if (cause instanceof TpmDecodeError)
        throw damaged(`sealed object of epoch ${epoch}: ${cause.message}`, cause);
      throw cause;
    }
    if (blob.srkName === undefined) throw damaged(`epoch ${epoch}: no pinned storage root key name`);
    if (entries.length > 0 && !Buffer.from(blob.srkName).equals(Buffer.from(entries[0]!.blob.srkName)))
      throw damaged(`epoch ${epoch} pins another storage root key than epoch ${entries[0]!.epoch}`);
    const sel = blob.pcrs.entries();
    if (sel.length === 0 || sel.some((e) => e.hash !== TPM_ALG_ID.SHA256))
      throw damaged(`epoch ${epoch}: the PCR selection must be non-empty and in the SHA-256 bank`);
    entries.push({ epoch, cmkCheck, blob: { ...blob, srkName: blob.srkName } });
  }
  if (at !== body.length) throw damaged(`${body.length - at} bytes after the last entry`);
  return { clusterId, entries };
}

/** Reads a sealed file (bounded; a FIFO or a directory is refused). */
export async function readSealedMasterKeyFile(path: string): Promise<Uint8Array> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === "ENOENT")
      throw new MasterKeyError("CMK_SEALED_FILE_MISSING", `sealed master key file ${path} is missing`, {
        cause,
      });
    throw new MasterKeyError(
      "CMK_SEALED_FILE_DAMAGED",
      `sealed master key file ${path} cannot be read (${code})`,
      {
        cause,
      },
    );
  }
  try {
    if (!(await handle.stat()).isFile())
      throw new MasterKeyError("CMK_SEALED_FILE_DAMAGED", `sealed master key file ${path} is not a file`);
    const buf = Buffer.alloc(SEALED_FILE_BYTES_MAX + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    return new Uint8Array(buf.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

/**
 * Writes a sealed file, mode 0600, synced with its directory. A new file
 * never replaces an existing one unless `replace` (recovery, re-sealing after
 * attestation), and then atomically: a crash leaves the old file or the new.
 */
export async function writeSealedMasterKeyFile(
  path: string,
  bytes: Uint8Array,
  options: { replace?: boolean } = {},
): Promise<void> {
  const target = options.replace === true ? join(dirname(path), `.${basename(path)}.new`) : path;
  if (options.replace === true) await rm(target, { force: true });
  const handle = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (options.replace === true) await rename(target, path);
  const dir = await open(dirname(path), constants.O_RDONLY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** The PCR selection the active epoch's policy names (for status and re-sealing). */
export function sealedPcrs(s: SealedMasterKey): number[] {
  return s.entries[s.entries.length - 1]!.blob.pcrs.entries().map((e) => e.pcr);
}

function describe(err: unknown): string {
  if (err instanceof TpmError) return err.rcName;
  if (err instanceof Error) return err.message;
  return String(err);
}

function uuidBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, "");
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new RangeError("clusterId must be a UUID");
  return Buffer.from(hex, "hex");
}

function uuidString(b: Uint8Array): string {
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
};
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};
