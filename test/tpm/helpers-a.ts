/**
 * Test helper for TPM-A's tests: a freshly provisioned swtpm (its own state
 * and local CA in a temp dir) behind a recording transport, and a teardown
 * that closes the connection, stops swtpm and removes the directory.
 */
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { ExecutionContext } from "ava";
import { Tpm } from "../../tpm/client/tpm.js";
import { HANDLE_RANGE } from "../../tpm/spec/constants.js";
import {
  type ProvisionedSwtpm,
  type RunningSwtpm,
  provisionSwtpm,
  startSwtpm,
} from "../../tpm/swtpm/index.js";
import { RecordingTransport } from "../../tpm/transport/recording-transport.js";
import { TcpTransport } from "../../tpm/transport/tcp-transport.js";

export interface TestTpm {
  readonly tpm: Tpm;
  readonly recorder: RecordingTransport;
  readonly swtpm: RunningSwtpm;
  readonly provisioned: ProvisionedSwtpm;
  readonly dir: string;
}

/** Starts a provisioned swtpm for this test file; teardown registered on `t` stops it even on failure. */
export async function startTestTpm(t: ExecutionContext, label: string): Promise<TestTpm> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `lockbox-tpm-a-${label}-`));
  let swtpm: RunningSwtpm | undefined;
  let transport: TcpTransport | undefined;
  t.teardown(async () => {
    await transport?.close().catch(() => undefined);
    await swtpm?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });
  const provisioned = await provisionSwtpm({
    stateDir: path.join(dir, "state"),
    caDir: path.join(dir, "ca"),
  });
  swtpm = await startSwtpm({ stateDir: provisioned.stateDir });
  transport = await TcpTransport.connect({ host: swtpm.host, port: swtpm.port });
  const recorder = new RecordingTransport(transport);
  return { tpm: new Tpm(recorder), recorder, swtpm, provisioned, dir };
}

/** Transient objects and sessions (loaded or saved) still held by the TPM. */
export async function leftovers(
  tpm: Tpm,
): Promise<{ transient: number[]; loaded: number[]; saved: number[] }> {
  return {
    transient: await tpm.getHandles(HANDLE_RANGE.TRANSIENT_FIRST),
    loaded: await tpm.getHandles(HANDLE_RANGE.LOADED_SESSION_FIRST),
    saved: await tpm.getHandles(HANDLE_RANGE.ACTIVE_SESSION_FIRST),
  };
}
