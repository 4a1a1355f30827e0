/**
 * A peer's own TPM, as the peer uses it: one operation at a time, each on a
 * connection of its own that is closed afterwards. swtpm serves one connection
 * at a time, so a connection held for the peer's lifetime would lock out
 * everyone else (an operator's tpm2-tools, a test extending a PCR), and a TPM
 * restarted under a running peer would leave it with a dead connection.
 *
 * For a swtpm it also keeps the quote's clock `safe` (tpm/clock/clock-safe.ts):
 * `prepare()` at start moves the clock past a crash, `shutdown()` at a clean
 * stop sends TPM2_Shutdown(STATE). A real TPM behind /dev/tpmrm0 belongs to
 * the operating system, which does both itself, so nothing is sent there.
 */
import { ensureClockSafe, Tpm, type TpmsClockInfo } from "../../tpm/index.js";
import { TpmTransportError, type TpmTransport } from "../../tpm/index-verify.js";
import { openTpmTransport, type TpmAddress } from "./tpm-address.js";

export interface PeerTpmOptions {
  /**
   * Connection attempts before giving up when the TPM refuses connections (a swtpm started at the
   * same moment as the peer, as a compose file or `scripts/dev` does, is not listening yet).
   */
  connectAttemptsMax?: number;
  connectRetryMs?: number;
}

const CONNECT_ATTEMPTS_MAX = 10;
const CONNECT_RETRY_MS = 200;

export class PeerTpm {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly connectAttemptsMax: number;
  private readonly connectRetryMs: number;

  constructor(
    readonly address: TpmAddress,
    options: PeerTpmOptions = {},
  ) {
    this.connectAttemptsMax = Math.max(1, options.connectAttemptsMax ?? CONNECT_ATTEMPTS_MAX);
    this.connectRetryMs = options.connectRetryMs ?? CONNECT_RETRY_MS;
  }

  /** Runs `fn` with the TPM on a fresh connection, after every earlier operation; closes the connection. */
  use<T>(fn: (tpm: Tpm) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const tpm = new Tpm(await this.connect());
      try {
        return await fn(tpm);
      } finally {
        await tpm.close().catch(() => undefined);
      }
    };
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Opens a transport, retrying (bounded) only while the TPM refuses connections. */
  private async connect(): Promise<TpmTransport> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await openTpmTransport(this.address);
      } catch (err) {
        const refused = err instanceof TpmTransportError && err.code === "connect";
        if (!refused || attempt >= this.connectAttemptsMax) throw err;
        await new Promise((r) => setTimeout(r, this.connectRetryMs));
      }
    }
  }

  /**
   * At start: for a swtpm, makes the clock safe again after the simulator was
   * killed (ClockSet past the next NV update interval). Returns the clock, or
   * undefined for a device TPM.
   */
  prepare(): Promise<TpmsClockInfo | undefined> {
    if (this.address.kind !== "swtpm") return Promise.resolve(undefined);
    return this.use(async (tpm) => (await ensureClockSafe(tpm)).clockInfo);
  }

  /** At a clean stop, last: TPM2_Shutdown(STATE) on a swtpm, so its next start keeps the clock safe. */
  shutdown(): Promise<void> {
    if (this.address.kind !== "swtpm") return Promise.resolve();
    return this.use((tpm) => tpm.shutdown());
  }
}
