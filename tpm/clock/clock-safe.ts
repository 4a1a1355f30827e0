/**
 * The quote's `safe` flag after an unorderly stop. TPMS_CLOCK_INFO.safe says
 * that no Clock value greater than the current one was ever reported. The TPM
 * saves Clock to NV only when it crosses an update interval (2^22 ms in
 * libtpms, NV_CLOCK_UPDATE_INTERVAL) and at an orderly TPM2_Shutdown; after a
 * crash it restarts from the last saved value, so it clears `safe` (measured
 * on swtpm 0.7: SIGKILL, restart → safe: no, resetCount + 1).
 *
 * Moving Clock past the next update interval with TPM2_ClockSet makes the
 * claim true again (no value reported before the crash can lie beyond it:
 * crossing it would have saved Clock), and the TPM sets `safe` itself.
 * Reset and restart counts are untouched, so a verifier still sees the crash.
 * A clean stop avoids all this: TPM2_Shutdown(STATE) last (Tpm.shutdown).
 */
import type { AuthSession } from "../client/sessions.js";
import type { Tpm } from "../client/tpm.js";
import type { TpmsClockInfo } from "../spec/attest.js";

/** libtpms's NV_CLOCK_UPDATE_INTERVAL: Clock is saved to NV each 2^22 ms. */
export const CLOCK_NV_UPDATE_INTERVAL_BITS = 22n;
const INTERVAL_MASK = (1n << CLOCK_NV_UPDATE_INTERVAL_BITS) - 1n;

export interface ClockSafeResult {
  /** The clock after the call. */
  readonly clockInfo: TpmsClockInfo;
  /** How far Clock was moved forward, in ms (0 when it was already safe). */
  readonly advancedMs: bigint;
}

/**
 * Reads the clock; if it is not safe, moves it forward to the start of the
 * next NV update interval (at most 2^22 ms, about 70 minutes) and reads it
 * again. ClockSet needs owner (default) or platform authorization; the
 * result's clockInfo.safe says whether it worked.
 */
export async function ensureClockSafe(
  tpm: Tpm,
  options: { authHandle?: number; auth?: AuthSession } = {},
): Promise<ClockSafeResult> {
  return tpm.exclusive(async () => {
    const before = (await tpm.readClock()).clockInfo;
    if (before.safe) return { clockInfo: before, advancedMs: 0n };
    const target = (before.clock | INTERVAL_MASK) + 1n;
    await tpm.clockSet(target, options);
    const after = (await tpm.readClock()).clockInfo;
    return { clockInfo: after, advancedMs: target - before.clock };
  });
}
