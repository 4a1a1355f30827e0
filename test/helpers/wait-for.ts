/**
 * Bounded polling for tests that wait on real processes: a check runs until it gives a value, at most
 * a given time. A check that throws counts as "not yet" (a peer still starting refuses calls); the
 * last such error is named if time runs out.
 */
import { setTimeout as sleep } from "node:timers/promises";

const INTERVAL_MS = 200;

/**
 * Polls `check` until it gives a value (anything but undefined or false) and resolves with it; after
 * `timeoutMs`, fails naming `what` and the last error the check threw.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  what: string,
  intervalMs = INTERVAL_MS,
): Promise<T> {
  const outcome = await poll(check, timeoutMs, intervalMs);
  if ("value" in outcome) return outcome.value;
  const last = outcome.last;
  throw new Error(
    `not within ${timeoutMs} ms: ${what}${last !== undefined ? ` (last: ${String(last)})` : ""}`,
  );
}

/**
 * As `waitFor`, but time running out resolves undefined, for a test that asserts on the outcome itself
 * (its assertion then says what was not reached).
 */
export async function pollFor<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs = INTERVAL_MS,
): Promise<T | undefined> {
  const outcome = await poll(check, timeoutMs, intervalMs);
  return "value" in outcome ? outcome.value : undefined;
}

/** Runs `check` at least once, then until it gives a value or the deadline has passed. */
async function poll<T>(
  check: () => Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs: number,
): Promise<{ value: T } | { last: unknown }> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return { value: v };
    } catch (e) {
      last = e;
    }
    if (Date.now() >= deadline) return { last };
    await sleep(intervalMs);
  }
}
