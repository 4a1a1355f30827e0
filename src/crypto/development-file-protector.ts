/**
 * DEVELOPMENT ONLY: keeps the cluster master key in a plain 0600 file. It exists so a single peer
 * can run before the TPM protector lands; it offers no protection against anyone who can read the
 * file. Every load logs a loud warning (never the key), and describe() marks it insecure so status
 * output says so.
 *
 * File format (48 bytes): magic "LBXDEVK1" (8) | epoch u32 BE (4) | reserved zero (4) | key (32).
 */
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { dirname } from "node:path";
import { LockboxError } from "../errors.js";
import { MASTER_KEY_BYTES } from "./keyring.js";
import type { MasterKey, MasterKeyProvider, MasterKeyProviderDescription } from "./master-key-provider.js";
import { nodeRandomSource, zeroize, type RandomSource } from "./random-source.js";

export const DEVELOPMENT_PROTECTOR_WARNING = "DEVELOPMENT MASTER KEY PROTECTOR — NOT FOR PRODUCTION";
const MAGIC = Buffer.from("LBXDEVK1", "ascii");
const FILE_BYTES = MAGIC.length + 4 + 4 + MASTER_KEY_BYTES;

export interface DevelopmentFileProtectorOptions {
  /** Where warnings go; defaults to console.warn. */
  log?: (message: string) => void;
}

export class DevelopmentFileProtector implements MasterKeyProvider {
  private readonly log: (message: string) => void;

  constructor(
    readonly path: string,
    options: DevelopmentFileProtectorOptions = {},
  ) {
    this.log = options.log ?? ((m) => console.warn(m));
  }

  /**
   * Creates a fresh CMK file (epoch 1) with mode 0600. Refuses to overwrite an existing file:
   * losing the CMK loses every key.
   */
  static async create(
    path: string,
    options: DevelopmentFileProtectorOptions & { random?: RandomSource; epoch?: number } = {},
  ): Promise<DevelopmentFileProtector> {
    const random = options.random ?? nodeRandomSource;
    const epoch = options.epoch ?? 1;
    const key = random.bytes(MASTER_KEY_BYTES);
    const content = Buffer.alloc(FILE_BYTES);
    MAGIC.copy(content, 0);
    content.writeUInt32BE(epoch, MAGIC.length);
    content.set(key, MAGIC.length + 8);
    zeroize(key);
    let handle;
    try {
      handle = await open(path, "wx", 0o600);
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === "EEXIST") {
        throw new LockboxError("ALREADY_EXISTS", `master key file ${path} already exists`, undefined, {
          cause,
        });
      }
      throw cause;
    }
    try {
      await handle.chmod(0o600); // the umask may have narrowed it further; never wider
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      content.fill(0);
      await handle.close();
    }
    // Losing this file loses every key: make its directory entry durable too.
    const dir = await open(dirname(path), "r");
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return new DevelopmentFileProtector(path, options);
  }

  async load(): Promise<MasterKey> {
    this.log(`WARNING: ${DEVELOPMENT_PROTECTOR_WARNING}: the cluster master key is read from ${this.path}`);
    let handle;
    try {
      // O_NONBLOCK: a FIFO planted at the path must not hang the open (it is then refused as not a file).
      handle = await open(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (cause) {
      throw new LockboxError("FAILED_PRECONDITION", `master key file ${this.path} is missing`, undefined, {
        cause,
      });
    }
    const content = Buffer.alloc(FILE_BYTES + 1);
    try {
      // Checked on the opened file itself, so the file read is the file checked.
      const info = await handle.stat();
      if (!info.isFile())
        throw new LockboxError("FAILED_PRECONDITION", `master key file ${this.path} is not a file`);
      if ((info.mode & 0o077) !== 0) {
        throw new LockboxError(
          "FAILED_PRECONDITION",
          `master key file ${this.path} has mode ${(info.mode & 0o777).toString(8)}; it must be 600 (chmod 600)`,
        );
      }
      if (typeof process.getuid === "function" && info.uid !== process.getuid()) {
        throw new LockboxError(
          "FAILED_PRECONDITION",
          `master key file ${this.path} is owned by another user`,
        );
      }
      const { bytesRead } = await handle.read(content, 0, content.length, 0);
      if (bytesRead !== FILE_BYTES || !content.subarray(0, MAGIC.length).equals(MAGIC)) {
        throw new LockboxError(
          "DATA_LOSS",
          `master key file ${this.path} is not a lockbox development key file`,
        );
      }
      const epoch = content.readUInt32BE(MAGIC.length);
      if (epoch < 1) throw new LockboxError("DATA_LOSS", `master key file ${this.path} has epoch 0`);
      const key = new Uint8Array(content.subarray(MAGIC.length + 8, FILE_BYTES));
      return { epoch, key };
    } finally {
      content.fill(0);
      await handle.close();
    }
  }

  describe(): MasterKeyProviderDescription {
    return {
      protector: "development-file",
      detail: `${DEVELOPMENT_PROTECTOR_WARNING}: ${this.path}`,
      insecure: true,
    };
  }
}
