/**
 * The `masterKeySealing` section of config.json: the master key sealed to
 * this peer's TPM (src/sealing), written by `lockbox init --tpm` and
 * `lockbox recover`. Absent: the DEVELOPMENT ONLY master key file
 * (`paths.masterKey`), for tests and single-peer development.
 *   "masterKeySealing": {"protector": "tpm", "tpm": "device:/dev/tpmrm0", "sealedFile": "master-key.sealed"}
 */
import { isAbsolute, join } from "node:path";
import type { LockboxError } from "../errors.js";

export interface MasterKeySealing {
  protector: "tpm";
  /** The TPM: `swtpm:HOST:PORT` or `device:PATH`. */
  tpm: string;
  /** The sealed CMK file, relative to the config's directory (or absolute). */
  sealedFile: string;
}

export const SEALED_MASTER_KEY_FILE_DEFAULT = "master-key.sealed";

/** Checks the section; `bad(field, what)` makes the config loader's error naming the field. */
export function validateMasterKeySealing(
  value: unknown,
  bad: (field: string, what: string) => LockboxError,
): MasterKeySealing {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad("masterKeySealing", "must be an object");
  const m = value as Record<string, unknown>;
  for (const key of Object.keys(m)) {
    if (!["protector", "tpm", "sealedFile"].includes(key))
      throw bad(`masterKeySealing.${key}`, "is not a field");
  }
  if (m.protector !== "tpm") throw bad("masterKeySealing.protector", 'must be "tpm"');
  if (typeof m.tpm !== "string" || !/^(swtpm:.+|device:.+)$/.test(m.tpm) || m.tpm.includes("\0"))
    throw bad("masterKeySealing.tpm", "must be swtpm:HOST:PORT or device:PATH");
  if (typeof m.sealedFile !== "string" || m.sealedFile.length === 0 || m.sealedFile.includes("\0"))
    throw bad("masterKeySealing.sealedFile", "must be a file path");
  return { protector: "tpm", tpm: m.tpm, sealedFile: m.sealedFile };
}

/** The absolute path of a file named in the config (relative to its directory, or absolute). */
export function resolveConfigPath(dir: string, p: string): string {
  return isAbsolute(p) ? p : join(dir, p);
}
