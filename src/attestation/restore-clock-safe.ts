/**
 * Before this machine quotes (a join, a re-quote): after its TPM lost power
 * or was killed without TPM2_Shutdown, the quote's clock is not `safe` and a
 * verifier refuses it ("clock-not-safe"), so a member whose TPM merely
 * restarted would be refused, and after repeated re-quotes fenced. The TPM's
 * owner may make the clock safe again with TPM2_ClockSet
 * (tpm/clock/clock-safe.ts); the reset and restart counts still show the
 * verifier that the machine restarted. Best effort: where the owner
 * hierarchy has an authorization value we do not hold, ClockSet fails and
 * the quote goes out as the TPM makes it, for the verifier to judge.
 */
import type { Tpm } from "../../tpm/client/tpm.js";
import { ensureClockSafe } from "../../tpm/clock/clock-safe.js";

export async function restoreClockSafe(tpm: Tpm): Promise<boolean> {
  try {
    return (await ensureClockSafe(tpm)).clockInfo.safe;
  } catch {
    return false;
  }
}
