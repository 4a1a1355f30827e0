/**
 * The kernel's TPM resource manager, /dev/tpmrm0 (production). One write of
 * a whole command, then one read returns the whole response. Commands are
 * queued so only one is in flight per open device handle.
 *
 * Not exercised against a real device here (no TPM in the test machines):
 * tests cover only the typed error for a missing device.
 */
import fs from "node:fs/promises";
import type { TpmTransport } from "./transport.js";
import {
  DEFAULT_RESPONSE_BYTES_MAX,
  TpmTransportError,
  assertCommandFrame,
  responseSizeFromHeader,
} from "./transport-error.js";

export interface DeviceTransportOptions {
  /** Defaults to /dev/tpmrm0. */
  path?: string;
  responseBytesMax?: number;
  /** Deadline for one command; after it the handle is abandoned (a blocked read cannot be cancelled). */
  commandTimeoutMs?: number;
}

export const DEFAULT_TPM_DEVICE = "/dev/tpmrm0";
const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;

export class DeviceTransport implements TpmTransport {
  static async open(options: DeviceTransportOptions = {}): Promise<DeviceTransport> {
    const path = options.path ?? DEFAULT_TPM_DEVICE;
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(path, "r+");
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException).code;
      if (errno === "ENOENT" || errno === "ENODEV" || errno === "ENXIO") {
        throw new TpmTransportError("device-not-found", `TPM device ${path} does not exist`, { cause: err });
      }
      if (errno === "EACCES" || errno === "EPERM" || errno === "EBUSY") {
        throw new TpmTransportError("device-access", `TPM device ${path} cannot be opened (${errno})`, {
          cause: err,
        });
      }
      throw new TpmTransportError("io", `cannot open TPM device ${path}`, { cause: err });
    }
    return new DeviceTransport(handle, path, options);
  }

  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private broken: TpmTransportError | undefined;
  private readonly responseBytesMax: number;
  private readonly commandTimeoutMs: number;

  private constructor(
    private readonly handle: fs.FileHandle,
    private readonly path: string,
    options: DeviceTransportOptions,
  ) {
    this.responseBytesMax = options.responseBytesMax ?? DEFAULT_RESPONSE_BYTES_MAX;
    this.commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    try {
      assertCommandFrame(command);
    } catch (err) {
      return Promise.reject(err);
    }
    const frame = Buffer.from(command);
    const result = this.tail.then(() => this.exchange(frame));
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail;
    await this.handle.close();
  }

  private async exchange(frame: Buffer): Promise<Uint8Array> {
    if (this.closed) throw new TpmTransportError("closed", `TPM device ${this.path} is closed`);
    if (this.broken !== undefined) {
      throw new TpmTransportError(
        "closed",
        `TPM device ${this.path} is unusable after: ${this.broken.message}`,
      );
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new TpmTransportError(
              "timeout",
              `no response from ${this.path} within ${this.commandTimeoutMs} ms`,
            ),
          ),
        this.commandTimeoutMs,
      );
    });
    try {
      return await Promise.race([this.writeThenRead(frame), deadline]);
    } catch (err) {
      const e =
        err instanceof TpmTransportError
          ? err
          : new TpmTransportError("io", `TPM device ${this.path} failed`, { cause: err });
      this.broken = e;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  private async writeThenRead(frame: Buffer): Promise<Uint8Array> {
    const { bytesWritten } = await this.handle.write(frame, 0, frame.length, null);
    if (bytesWritten !== frame.length) {
      throw new TpmTransportError(
        "io",
        `wrote ${bytesWritten} of ${frame.length} command bytes to ${this.path}`,
      );
    }
    // One byte more than the limit, so an oversize response is seen rather than truncated.
    const buf = Buffer.alloc(this.responseBytesMax + 1);
    const { bytesRead } = await this.handle.read(buf, 0, buf.length, null);
    const response = buf.subarray(0, bytesRead);
    if (bytesRead > this.responseBytesMax) {
      throw new TpmTransportError(
        "oversize-response",
        `${this.path} returned more than ${this.responseBytesMax} bytes`,
      );
    }
    const size = responseSizeFromHeader(response, this.responseBytesMax);
    if (bytesRead < size) {
      throw new TpmTransportError(
        "short-response",
        `${this.path} returned ${bytesRead} of the ${size} bytes announced`,
      );
    }
    if (bytesRead > size) {
      throw new TpmTransportError(
        "oversize-response",
        `${this.path} returned ${bytesRead} bytes, header announces ${size}`,
      );
    }
    return new Uint8Array(response);
  }
}
