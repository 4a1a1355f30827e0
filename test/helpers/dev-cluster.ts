/**
 * A real `lockbox dev-cluster start` for tests that need attested peers (each with its own swtpm): run
 * in a fresh temp directory, with an admin client on every peer. Whatever happens, the undo SIGKILLs
 * every process the cluster recorded (start time checked, so never a stranger) and removes the
 * directory.
 */
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { isRecorded, readRecords } from "../../src/cli/dev-processes.js";
import { LockboxClient } from "../../src/client/index.js";
import { runCliJson } from "./cli-process.js";

/** What `lockbox dev-cluster start --json` prints. */
export interface DevClusterStarted {
  event: string;
  leader: string;
  endpoints: string;
  peers: { peer_id: string; address: string; state: string; suffrage: string }[];
  processes: { name: string; pid: number }[];
  admin: { ca: string; cert: string; key: string };
}

export interface DevCluster {
  /** The temp directory (removed by the undo); the cluster lives in `dir` below it. */
  root: string;
  dir: string;
  started: DevClusterStarted;
  /** The cluster CA certificate, PEM. */
  caPem: string;
  /** The dev-admin identity on every peer, uncached. */
  admin: LockboxClient;
  /** `--ca --cert --key` of the dev-admin identity, for CLI calls. */
  adminArgs: string[];
}

export interface StartDevClusterOptions {
  /** Names the temp directory (`lockbox-<prefix>-…`). */
  prefix: string;
  timeoutMs: number;
  /** Added to the environment of `dev-cluster start`, so of every peer it starts. */
  env?: Record<string, string>;
  /**
   * Takes each undo step as soon as there is something to undo (before the start, which may fail
   * half-way); run them newest first: ava's `t.teardown`, or a list a `test.after.always` runs.
   */
  onCleanup(undo: () => Promise<void>): void;
}

export async function startDevCluster(options: StartDevClusterOptions): Promise<DevCluster> {
  const root = await fs.mkdtemp(join(tmpdir(), `lockbox-${options.prefix}-`));
  const dir = join(root, "cluster");
  options.onCleanup(async () => {
    // Nothing this cluster started outlives the test (only recorded pids, start time checked).
    for (const r of await readRecords(join(dir, "run"))) if (isRecorded(r)) process.kill(r.pid, "SIGKILL");
    await fs.rm(root, { recursive: true, force: true });
  });
  const started = await runCliJson<DevClusterStarted>(["dev-cluster", "start", "--dir", dir, "--json"], {
    timeoutMs: options.timeoutMs,
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const caPem = await fs.readFile(started.admin.ca, "utf8");
  const admin = new LockboxClient({
    endpoints: started.endpoints.split(","),
    tls: {
      ca: caPem,
      cert: await fs.readFile(started.admin.cert, "utf8"),
      key: await fs.readFile(started.admin.key, "utf8"),
    },
    cache: false,
  });
  options.onCleanup(async () => admin.close());
  const adminArgs = ["--ca", started.admin.ca, "--cert", started.admin.cert, "--key", started.admin.key];
  return { root, dir, started, caPem, admin, adminArgs };
}
