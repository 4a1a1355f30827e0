/**
 * swtpm's TCP data port: raw TPM command bytes in, raw response bytes out
 * (no simulator framing needed with `--flags not-need-init,startup-clear`).
 * swtpm serves one connection at a time, so one TcpTransport holds one
 * connection and queues commands; each response is read to exactly the size
 * its header announces.
 */
import net from "node:net";
import type { TpmTransport } from "./transport.js";
import {
  DEFAULT_RESPONSE_BYTES_MAX,
  TPM_HEADER_BYTES,
  TpmTransportError,
  assertCommandFrame,
  responseSizeFromHeader,
} from "./transport-error.js";

export interface TcpTransportOptions {
  host: string;
  port: number;
  /** Deadline for the TCP connection to be established. */
  connectTimeoutMs?: number;
  /** Deadline for one command, from writing it to its complete response. */
  commandTimeoutMs?: number;
  responseBytesMax?: number;
  /** Commands waiting behind the one in flight before `send` refuses with "busy". */
  queuedMax?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
// RSA key generation on a slow machine can take seconds; a stuck TPM must still fail.
const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
const DEFAULT_QUEUED_MAX = 1024;

interface PendingResponse {
  resolve(response: Uint8Array): void;
  reject(err: TpmTransportError): void;
}

export class TcpTransport implements TpmTransport {
  /** Opens the connection; resolves once it is established. */
  static async connect(options: TcpTransportOptions): Promise<TcpTransport> {
    const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: options.host, port: options.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(
          new TpmTransportError(
            "connect",
            `connecting to TPM at ${options.host}:${options.port} timed out after ${connectTimeoutMs} ms`,
          ),
        );
      }, connectTimeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        s.removeAllListeners("error");
        resolve(s);
      });
      s.once("error", (err) => {
        clearTimeout(timer);
        reject(
          new TpmTransportError("connect", `cannot connect to TPM at ${options.host}:${options.port}`, {
            cause: err,
          }),
        );
      });
    });
    socket.setNoDelay(true);
    return new TcpTransport(socket, options);
  }

  private readonly commandTimeoutMs: number;
  private readonly responseBytesMax: number;
  private readonly queuedMax: number;
  private readonly endpoint: string;
  private chunks: Buffer[] = [];
  private receivedBytes = 0;
  private pending: PendingResponse | undefined;
  /** Set once the byte stream can no longer be trusted to be in step; every later send fails. */
  private broken: TpmTransportError | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private closed = false;

  private constructor(
    private readonly socket: net.Socket,
    options: TcpTransportOptions,
  ) {
    this.commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.responseBytesMax = options.responseBytesMax ?? DEFAULT_RESPONSE_BYTES_MAX;
    this.queuedMax = options.queuedMax ?? DEFAULT_QUEUED_MAX;
    this.endpoint = `${options.host}:${options.port}`;
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err) =>
      this.fail(new TpmTransportError("io", `TPM connection ${this.endpoint} failed`, { cause: err })),
    );
    socket.on("close", () => this.onClose());
  }

  send(command: Uint8Array): Promise<Uint8Array> {
    try {
      assertCommandFrame(command);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.queued >= this.queuedMax) {
      return Promise.reject(
        new TpmTransportError("busy", `more than ${this.queuedMax} commands queued for TPM ${this.endpoint}`),
      );
    }
    // Copy now: the caller may reuse its buffer while the command waits in the queue.
    const frame = Buffer.from(command);
    this.queued++;
    const result = this.tail.then(() => this.exchange(frame));
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result.finally(() => {
      this.queued--;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once("close", () => resolve());
      this.socket.end();
      // A peer that never acknowledges the FIN must not hold close() forever.
      setTimeout(() => this.socket.destroy(), 1_000).unref();
    });
  }

  private exchange(frame: Buffer): Promise<Uint8Array> {
    if (this.closed)
      return Promise.reject(new TpmTransportError("closed", `TPM transport ${this.endpoint} is closed`));
    if (this.broken !== undefined) {
      return Promise.reject(
        new TpmTransportError(
          "closed",
          `TPM transport ${this.endpoint} is unusable after: ${this.broken.message}`,
          {
            cause: this.broken,
          },
        ),
      );
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(
          new TpmTransportError(
            "timeout",
            `no complete response from TPM ${this.endpoint} within ${this.commandTimeoutMs} ms`,
          ),
        );
      }, this.commandTimeoutMs);
      this.pending = {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.socket.write(frame);
    });
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.receivedBytes += chunk.length;
    if (this.pending === undefined) {
      this.fail(
        new TpmTransportError(
          "oversize-response",
          `TPM ${this.endpoint} sent ${chunk.length} bytes with no command in flight`,
        ),
      );
      return;
    }
    if (this.receivedBytes < TPM_HEADER_BYTES) return;
    const buffered = Buffer.concat(this.chunks, this.receivedBytes);
    this.chunks = [buffered];
    let size: number;
    try {
      size = responseSizeFromHeader(buffered.subarray(0, TPM_HEADER_BYTES), this.responseBytesMax);
    } catch (err) {
      this.fail(err as TpmTransportError);
      return;
    }
    if (this.receivedBytes < size) return;
    if (this.receivedBytes > size) {
      this.fail(
        new TpmTransportError(
          "oversize-response",
          `TPM ${this.endpoint} sent ${this.receivedBytes} bytes for a response whose header announces ${size}`,
        ),
      );
      return;
    }
    const pending = this.pending;
    this.pending = undefined;
    this.chunks = [];
    this.receivedBytes = 0;
    pending.resolve(new Uint8Array(buffered));
  }

  private onClose(): void {
    if (this.pending !== undefined) {
      const code = this.receivedBytes > 0 ? "short-response" : "io";
      this.fail(
        new TpmTransportError(
          code,
          `TPM ${this.endpoint} closed the connection after ${this.receivedBytes} bytes of a response`,
        ),
      );
    } else if (this.broken === undefined && !this.closed) {
      this.broken = new TpmTransportError("closed", `TPM ${this.endpoint} closed the connection`);
    }
  }

  /** Rejects the command in flight and poisons the transport: the stream is out of step. */
  private fail(err: TpmTransportError): void {
    if (this.broken === undefined) this.broken = err;
    const pending = this.pending;
    this.pending = undefined;
    this.chunks = [];
    this.receivedBytes = 0;
    this.socket.destroy();
    pending?.reject(err);
  }
}
