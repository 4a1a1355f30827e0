/**
 * Writing certificates and private keys to disk. Private keys are created
 * 0600 from the first byte (never written wide and chmod'ed after), and
 * nothing is ever overwritten: an existing file is an error.
 */
import { constants, promises as fs } from "node:fs";
import { dirname } from "node:path";

export const PRIVATE_FILE_MODE = 0o600;
export const PUBLIC_FILE_MODE = 0o644;

/** Creates `path` exclusively with `mode`; fails with EEXIST if it exists. */
export async function writeNewFile(path: string, content: string, mode: number): Promise<void> {
  const handle = await fs.open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(content, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  // The umask may have narrowed the mode; never widened. Set it exactly.
  await fs.chmod(path, mode);
  // The file's data is synced; its directory entry is only durable once the directory is.
  await syncDirectory(dirname(path));
}

/** fsync a directory, making the creation of the entries in it durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export const writePrivateKeyFile = (path: string, pem: string): Promise<void> =>
  writeNewFile(path, pem, PRIVATE_FILE_MODE);

export const writeCertificateFile = (path: string, pem: string): Promise<void> =>
  writeNewFile(path, pem, PUBLIC_FILE_MODE);
