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
