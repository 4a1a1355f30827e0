/**
 * Scoped use of TPM resources: the transient object or session is flushed
 * when `fn` settles, also when it throws. There is no resource manager on
 * swtpm, so a leaked handle stays until the TPM restarts (three leaked
 * objects already give TPM_RC_OBJECT_MEMORY).
 */
import type { TpmSession } from "./sessions.js";
import type { Tpm } from "./tpm.js";

async function flushAfter<T>(fn: () => Promise<T>, flush: () => Promise<void>): Promise<T> {
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    // The first failure is the one worth reporting; a flush failure after it is secondary.
    await flush().catch(() => undefined);
    throw err;
  }
  await flush();
  return result;
}

/** Creates or loads an object with `make`, runs `fn` on it, and flushes it. */
export async function withTransient<O extends { handle: number }, T>(
  tpm: Tpm,
  make: Promise<O> | (() => Promise<O>),
  fn: (object: O) => Promise<T>,
): Promise<T> {
  const object = await (typeof make === "function" ? make() : make);
  return flushAfter(
    () => fn(object),
    () => tpm.flushContext(object.handle),
  );
}

/** Starts a session with `start`, runs `fn` with it, and flushes it. */
export async function withSession<T>(
  tpm: Tpm,
  start: Promise<TpmSession> | (() => Promise<TpmSession>),
  fn: (session: TpmSession) => Promise<T>,
): Promise<T> {
  const session = await (typeof start === "function" ? start() : start);
  return flushAfter(
    () => fn(session),
    () => tpm.flushSession(session),
  );
}
