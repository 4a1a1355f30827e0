/**
 * The cluster master key sealed to this peer's own TPM (DESIGN.md §2, §5): the
 * only form in which a CMK is ever on a peer's disk. The TPM releases it only
 * while the PCRs named by the policy hold the values they held at sealing,
 * only under the same storage root key (pinned by name, so another TPM or a
 * cleared one is refused before a session is salted to it), and over a
 * session salted to that key with response encryption, so the CMK never
 * crosses the TPM transport in clear (tpm/seal/seal.ts).
 *
 * File format, version 1 (all integers big-endian):
 *   magic "LBXSEALK" (8) | version u16 = 1 | body length u32 | body | SHA-256 of all before (32)
 *   body = cluster id (16, the UUID's bytes) | epoch u32 | CMK check value (32) | sealed blob
 *   sealed blob = TPM2B_PRIVATE || TPM2B_PUBLIC || TPML_PCR_SELECTION || TPM2B_NAME srkName
 * The checksum names accidental damage; the check value (cmk-check.ts), tested
 * after unsealing, refuses a header edited to another cluster or epoch.
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

export interface SealedMasterKey {
  readonly clusterId: string;
  readonly epoch: number;
  readonly cmkCheck: Uint8Array;
  readonly blob: SealedBlob & { readonly srkName: Uint8Array };
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
export async function sealMasterKey(
  tpm: Tpm,
  p: { cmk: Uint8Array; epoch: number; clusterId: string; pcrs: TpmlPcrSelection },
): Promise<Uint8Array> {
  if (p.cmk.length !== MASTER_KEY_BYTES) throw new RangeError(`master key must be ${MASTER_KEY_BYTES} bytes`);
  let blob: SealedBlob;
  try {
    blob = await sealSecret(tpm, { secret: p.cmk, pcrs: p.pcrs });
  } catch (cause) {
    throw new MasterKeyError("CMK_TPM_FAILED", `the TPM did not seal the master key: ${describe(cause)}`, {
      cause,
    });
  }
  if (blob.srkName === undefined) throw new Error("sealSecret returned no SRK name");
  return encodeSealedMasterKey({
    clusterId: p.clusterId,
    epoch: p.epoch,
    cmkCheck: cmkCheckValue(p.cmk, p.clusterId, p.epoch),
    blob: { ...blob, srkName: blob.srkName },
  });
}

/**
 * Unseals the CMK of a sealed file's bytes. Checks, in this order, each
 * failure a MasterKeyError with its reason: the file (CMK_SEALED_FILE_DAMAGED),
 * its cluster (CMK_WRONG_CLUSTER), the TPM's storage root key against the
 * pinned name (CMK_SRK_MISMATCH), the PCRs against the sealed policy
 * (CMK_PCRS_CHANGED: attest again), then unseals in a salted, encrypting
 * session and checks the key against the file's check value.
 */
export async function unsealMasterKey(
  tpm: Tpm,
  bytes: Uint8Array,
  p: { clusterId: string; source: string },
): Promise<MasterKey> {
  const sealed = decodeSealedMasterKey(bytes, p.source);
  if (sealed.clusterId !== p.clusterId) {
    throw new MasterKeyError(
      "CMK_WRONG_CLUSTER",
      `${p.source} holds the master key of cluster ${sealed.clusterId}, not of this peer's cluster ${p.clusterId}`,
    );
  }
  let key: Uint8Array;
  try {
    key = await tpm.exclusive(async () => {
      await checkSrk(tpm, sealed, p.source);
      await checkPcrs(tpm, sealed, p.source);
      return unsealSecret(tpm, sealed.blob);
    });
  } catch (cause) {
    if (cause instanceof MasterKeyError) throw cause;
    if (cause instanceof TpmClientError && cause.code === "SALT_KEY_MISMATCH")
      throw srkMismatch(p.source, cause);
    if (cause instanceof TpmError && cause.baseCode === TPM_RC.POLICY_FAIL)
      throw pcrsChanged(p.source, cause);
    throw new MasterKeyError("CMK_TPM_FAILED", `the TPM did not unseal ${p.source}: ${describe(cause)}`, {
      cause,
    });
  }
  if (!cmkMatchesCheck(key, sealed.clusterId, sealed.epoch, sealed.cmkCheck)) {
    zeroize(key);
    throw new MasterKeyError(
      "CMK_SEALED_FILE_DAMAGED",
      `${p.source}: the unsealed key does not match the file's check value (the file was edited)`,
    );
  }
  return { epoch: sealed.epoch, key };
}

async function checkSrk(tpm: Tpm, sealed: SealedMasterKey, source: string): Promise<void> {
  const name = await withTransient(tpm, createStoragePrimary(tpm), async (srk) => objectName(srk.publicArea));
  const pinned = sealed.blob.srkName;
  if (name.length !== pinned.length || !timingSafeEqual(name, pinned)) throw srkMismatch(source);
}

async function checkPcrs(tpm: Tpm, sealed: SealedMasterKey, source: string): Promise<void> {
  const { values } = await tpm.pcrRead(sealed.blob.pcrs);
  const digest = policyPcrDigest(
    TPM_ALG_ID.SHA256,
    sealed.blob.pcrs,
    values.map((v) => v.digest),
  );
  const policy = sealed.blob.outPublic.authPolicy;
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
  const blob = encodeSealedBlob(s.blob);
  const body = Buffer.concat([uuidBytes(s.clusterId), u32(s.epoch), s.cmkCheck, blob]);
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
  const fixed = 16 + 4 + CMK_CHECK_BYTES;
  if (body.length <= fixed) throw damaged("body too short");
  const clusterId = uuidString(body.subarray(0, 16));
  const epoch = body.readUInt32BE(16);
  if (epoch < 1) throw damaged("epoch 0");
  const cmkCheck = new Uint8Array(body.subarray(20, fixed));
  let blob: SealedBlob;
  try {
    blob = decodeSealedBlob(new Uint8Array(body.subarray(fixed)));
  } catch (cause) {
    if (cause instanceof TpmDecodeError) throw damaged(`sealed object: ${cause.message}`, cause);
    throw cause;
  }
  if (blob.srkName === undefined) throw damaged("no pinned storage root key name");
  const sel = blob.pcrs.entries();
  if (sel.length === 0 || sel.some((e) => e.hash !== TPM_ALG_ID.SHA256))
    throw damaged("the PCR selection must be non-empty and in the SHA-256 bank");
  return { clusterId, epoch, cmkCheck, blob: { ...blob, srkName: blob.srkName } };
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

/** The PCR selection a sealed file's policy names (for status and re-sealing). */
export function sealedPcrs(s: SealedMasterKey): number[] {
  return s.blob.pcrs.entries().map((e) => e.pcr);
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
