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
import { openTpmTransport, type TpmAddress } from "./tpm-address.js";

export class PeerTpm {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(readonly address: TpmAddress) {}

  /** Runs `fn` with the TPM on a fresh connection, after every earlier operation; closes the connection. */
  use<T>(fn: (tpm: Tpm) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      const tpm = new Tpm(await openTpmTransport(this.address));
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
