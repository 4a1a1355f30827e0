/**
 * Wraps a transport and keeps every {command, response} pair, so tests can
 * capture real TPM bytes (round-trip fixtures) and check what crossed the
 * bus (e.g. that an unseal response does not carry the secret in clear).
 */
import type { TpmTransport } from "./transport.js";

export interface RecordedExchange {
  readonly command: Uint8Array;
  /** Absent when the inner transport failed the command. */
  readonly response?: Uint8Array;
  readonly error?: unknown;
}

export class RecordingTransport implements TpmTransport {
  private readonly log: RecordedExchange[] = [];

  /** `exchangesMax` bounds memory in long runs; older exchanges are dropped first. */
  constructor(
    private readonly inner: TpmTransport,
    private readonly exchangesMax = 10_000,
  ) {}

  async send(command: Uint8Array): Promise<Uint8Array> {
    const commandCopy = Uint8Array.from(command);
    try {
      const response = await this.inner.send(command);
      this.push({ command: commandCopy, response: Uint8Array.from(response) });
      return response;
    } catch (error) {
      this.push({ command: commandCopy, error });
      throw error;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** A copy of the exchanges so far, oldest first. */
  exchanges(): RecordedExchange[] {
    return [...this.log];
  }

  clear(): void {
    this.log.length = 0;
  }

  private push(e: RecordedExchange): void {
    this.log.push(e);
    if (this.log.length > this.exchangesMax) this.log.shift();
  }
}
