/**
 * A provisioned swtpm that a test can kill (SIGKILL or SIGTERM) and start
 * again on the same state directory and the same port, as a machine's TPM
 * comes back after a crash or a reboot. Stopped and deleted in teardown.
 */
import type { ExecutionContext } from "ava";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  type ProvisionedSwtpm,
  type RunningSwtpm,
  provisionSwtpm,
  startSwtpm,
} from "../../tpm/swtpm/index.js";
import { Tpm } from "../../tpm/client/tpm.js";
import { TcpTransport } from "../../tpm/transport/tcp-transport.js";
import { sharedLocalCaDir } from "./swtpm-fixture.js";

export interface RestartableSwtpm {
  readonly provisioned: ProvisionedSwtpm;
  readonly port: number;
  /** `swtpm:host=127.0.0.1,port=P` for TPM2TOOLS_TCTI. */
  readonly tcti: string;
  /** `swtpm:127.0.0.1:P`, the form lockbox's --tpm takes. */
  readonly spec: string;
  readonly workDir: string;
  readonly running: RunningSwtpm | undefined;
  /** Stops the simulator: "SIGKILL" loses what it did not save, "SIGTERM" lets it exit. */
  stop(signal: "SIGKILL" | "SIGTERM"): Promise<void>;
  /** Starts it again on the same state and port. */
  start(): Promise<void>;
  /** A Tpm on a new connection; the caller closes it (swtpm serves one connection at a time). */
  connect(): Promise<Tpm>;
}

export async function startRestartableSwtpm(t: ExecutionContext, caDir?: string): Promise<RestartableSwtpm> {
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), "lockbox-swtpm-r-"));
  let running: RunningSwtpm | undefined;
  t.teardown(async () => {
    await running?.stop();
    await fs.rm(workDir, { recursive: true, force: true });
  });
  const provisioned = await provisionSwtpm({
    stateDir: path.join(workDir, "state"),
    caDir: caDir ?? sharedLocalCaDir(),
  });
  running = await startSwtpm({ stateDir: provisioned.stateDir });
  const port = running.port;
  return {
    provisioned,
    port,
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    spec: `swtpm:127.0.0.1:${port}`,
    workDir,
    get running() {
      return running;
    },
    async stop(signal) {
      const r = running;
      if (r === undefined) return;
      if (signal === "SIGKILL") process.kill(r.pid, "SIGKILL");
      await r.stop();
      running = undefined;
    },
    async start() {
      if (running !== undefined) throw new Error("swtpm already running");
      // The port was just released; a few attempts cover a slow release.
      let lastError: unknown;
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          running = await startSwtpm({ stateDir: provisioned.stateDir, portCandidates: [port] });
          return;
        } catch (err) {
          lastError = err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      throw lastError;
    },
    async connect() {
      return new Tpm(await TcpTransport.connect({ host: "127.0.0.1", port }));
    },
  };
}
