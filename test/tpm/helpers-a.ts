/**
 * Helpers for TPM-A's tests: a provisioned swtpm (TPM-B's fixture, stopped in
 * teardown) behind a recording transport, and the leak check.
 */
import type { ExecutionContext } from "ava";
import { Tpm } from "../../tpm/client/tpm.js";
import { HANDLE_RANGE } from "../../tpm/spec/constants.js";
import { RecordingTransport } from "../../tpm/transport/recording-transport.js";
import { type SwtpmFixture, type SwtpmFixtureOptions, startProvisionedSwtpm } from "./swtpm-fixture.js";

export interface TestTpm {
  readonly tpm: Tpm;
  readonly recorder: RecordingTransport;
  readonly fixture: SwtpmFixture;
}

export async function startTestTpm(t: ExecutionContext, options: SwtpmFixtureOptions = {}): Promise<TestTpm> {
  const fixture = await startProvisionedSwtpm(t, options);
  const recorder = new RecordingTransport(await fixture.connect());
  return { tpm: new Tpm(recorder), recorder, fixture };
}

/**
 * One swtpm for a whole test file (ava allows no t.teardown in hooks): start
 * it in `test.before`, and `stop` it in `test.after.always`, which runs also
 * when tests fail.
 */
export async function startFileTpm(
  options: SwtpmFixtureOptions = {},
): Promise<TestTpm & { stop(): Promise<void> }> {
  const teardowns: (() => Promise<void> | void)[] = [];
  // The fixture needs only `teardown` from the execution context.
  const context = {
    teardown: (fn: () => Promise<void> | void) => teardowns.push(fn),
  } as unknown as ExecutionContext;
  const stop = async (): Promise<void> => {
    // Reverse order, like ava.
    for (const fn of teardowns.splice(0).reverse()) await fn();
  };
  try {
    return { ...(await startTestTpm(context, options)), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface Leftovers {
  readonly transient: number[];
  readonly loadedSessions: number[];
  readonly savedSessions: number[];
}

/** Transient objects and sessions (loaded or saved) the TPM still holds. */
export async function leftovers(tpm: Tpm): Promise<Leftovers> {
  return {
    transient: await tpm.getHandles(HANDLE_RANGE.TRANSIENT_FIRST),
    loadedSessions: await tpm.getHandles(HANDLE_RANGE.LOADED_SESSION_FIRST),
    savedSessions: await tpm.getHandles(HANDLE_RANGE.ACTIVE_SESSION_FIRST),
  };
}

export const NO_LEFTOVERS: Leftovers = { transient: [], loadedSessions: [], savedSessions: [] };
