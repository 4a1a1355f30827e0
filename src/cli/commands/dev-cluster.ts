/**
 * `lockbox dev-cluster start|stop|status --dir DIR`: a local development
 * lockbox in one directory, for trying lockbox out (the README's
 * `scripts/dev start`). `start` runs `lockbox init` if DIR holds no cluster
 * yet, then starts `lockbox serve` in the background with its output in
 * DIR/peer.log and its pid in DIR/peer.pid, and waits (bounded) until the peer
 * answers GetStatus. The running peer's address goes to DIR/dev-cluster.json,
 * where `--dir DIR` on client commands finds it.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, promises as fs } from "node:fs";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { defineCommand, type OptionDefinition } from "../cli-definition.js";
import { EXIT_FAILURE, EXIT_OK } from "../command.js";
import {
  DEV_CLUSTER_STATE_FILE,
  boolFlag,
  clientFrom,
  printJson,
  requiredFlag,
  stringFlag,
  type ParsedArgs,
} from "../client-options.js";

/** dist/src/cli/main.js, seen from dist/src/cli/commands/. */
const CLI_MAIN = fileURLToPath(new URL("../main.js", import.meta.url));
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 100;

const DIR_OPTION: OptionDefinition = {
  flags: "--dir <DIR>",
  description: "the directory given to start",
  required: true,
};
const JSON_OPTION: OptionDefinition = { flags: "--json", description: "print one JSON line" };

export const command = defineCommand({
  name: "dev-cluster",
  summary: "start or stop a local development lockbox",
  subcommands: [
    {
      name: "start",
      summary: "create the cluster in DIR if needed and start its peer in the background",
      options: [
        {
          flags: "--dir <DIR>",
          description: "where the cluster lives (created by `lockbox init` on first start)",
          required: true,
        },
        {
          flags: "--listen <HOST:PORT>",
          description: "address to serve on (default: the config's, 127.0.0.1:7443; port 0 picks one)",
        },
        JSON_OPTION,
      ],
      run: (args) => start(resolve(requiredFlag(args, "dir")), args),
    },
    {
      name: "stop",
      summary: "stop the peer started by `start` (SIGTERM, then wait)",
      options: [DIR_OPTION, JSON_OPTION],
      run: (args) => stop(resolve(requiredFlag(args, "dir")), boolFlag(args, "json")),
    },
    {
      name: "status",
      summary: "whether the peer of DIR is running, and what it says about itself",
      options: [DIR_OPTION, JSON_OPTION],
      run: (args) => status(resolve(requiredFlag(args, "dir")), boolFlag(args, "json")),
    },
  ],
});

interface DevClusterState {
  pid: number;
  address: string;
  startedAt: string;
}

// ---- start ---------------------------------------------------------------

async function start(dir: string, args: ParsedArgs): Promise<number> {
  const json = boolFlag(args, "json");
  const say = (line: string): void => void (json ? process.stderr : process.stdout).write(line + "\n");
  const running = await runningPeer(dir);
  if (running !== undefined) {
    report(dir, running, json, "already-running");
    return EXIT_OK;
  }
  if (!existsSync(join(dir, "config.json"))) {
    say(`==> lockbox init --dir ${dir}`);
    const code = await runChild(["init", "--dir", dir], json);
    if (code !== 0) throw new Error(`lockbox init failed (exit ${code})`);
  }
  const listen = stringFlag(args, "listen");
  const serveArgs = ["serve", "--dir", dir, "--json", ...(listen !== undefined ? ["--listen", listen] : [])];
  const logPath = join(dir, "peer.log");
  const logFd = openSync(logPath, "a", 0o600);
  const offset = (await fs.stat(logPath)).size;
  // Detached, in its own process group, with no tie to this terminal: it outlives this command.
  const child = spawn(process.execPath, [CLI_MAIN, ...serveArgs], {
    detached: true,
    stdio: ["ignore", logFd, logFd],
    env: process.env,
  });
  closeSync(logFd);
  const pid = child.pid;
  if (pid === undefined) throw new Error("could not start lockbox serve");
  child.unref();
  await fs.writeFile(join(dir, "peer.pid"), `${pid}\n`, { mode: 0o600 });
  say(`==> lockbox serve --dir ${dir} (pid ${pid}, log ${logPath})`);

  const address = await waitForReady(logPath, offset, pid);
  const state: DevClusterState = { pid, address, startedAt: new Date().toISOString() };
  await fs.writeFile(join(dir, DEV_CLUSTER_STATE_FILE), JSON.stringify(state) + "\n", { mode: 0o600 });
  await waitForStatus(dir, address, pid);
  report(dir, state, json, "started");
  return EXIT_OK;
}

/** The address of the first ready line written to the log after `offset`. */
async function waitForReady(logPath: string, offset: number, pid: number): Promise<string> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const text = (await fs.readFile(logPath)).subarray(offset).toString("utf8");
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        const v = JSON.parse(line) as { event?: string; address?: string };
        if (v.event === "ready" && typeof v.address === "string") return v.address;
      } catch {
        // a log line that only looks like JSON
      }
    }
    if (!isAlive(pid))
      throw new Error(`lockbox serve exited before it was ready; see ${logPath}:\n${text.trim()}`);
    await sleep(POLL_MS);
  }
  throw new Error(`lockbox serve was not ready within ${READY_TIMEOUT_MS} ms; see ${logPath}`);
}

/** Bounded retries of GetStatus, so `start` returns only once the peer really answers. */
async function waitForStatus(dir: string, address: string, pid: number): Promise<void> {
  const client = await clientFrom(adminConnection(dir, address));
  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      try {
        await client.getStatus({ deadlineMs: 2000 });
        return;
      } catch (err) {
        if (Date.now() > deadline || !isAlive(pid)) throw err;
        await sleep(POLL_MS);
      }
    }
  } finally {
    client.close();
  }
}

function report(dir: string, state: DevClusterState, json: boolean, what: string): void {
  if (json) {
    printJson({ event: what, dir, ...state });
    return;
  }
  const cli = "node dist/src/cli/main.js";
  process.stdout.write(
    [
      "",
      `lockbox dev peer ${what}: ${state.address} (pid ${state.pid}), log in ${join(dir, "peer.log")}`,
      "WARNING: its master key is a DEVELOPMENT FILE in the directory (NOT FOR PRODUCTION).",
      "",
      "Next, try:",
      `  export LOCKBOX_DIR=${dir}`,
      `  ${cli} status`,
      `  ${cli} key create --project demo --scope volume-1 --name root --json`,
      `  ${cli} key get <ID> --format hex`,
      `  ${cli} key list --project demo`,
      `  ${cli} audit --limit 20`,
      `  scripts/dev stop`,
      "",
    ].join("\n"),
  );
}

// ---- stop and status -----------------------------------------------------

async function stop(dir: string, json: boolean): Promise<number> {
  const pid = await ourPid(dir);
  if (pid === undefined) {
    if (json) printJson({ event: "not-running", dir });
    else process.stdout.write(`no lockbox dev peer is running for ${dir}\n`);
    await forgetState(dir);
    return EXIT_OK;
  }
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (isAlive(pid) && Date.now() < deadline) await sleep(POLL_MS);
  const forced = isAlive(pid);
  if (forced) {
    process.kill(pid, "SIGKILL");
    while (isAlive(pid) && Date.now() < deadline + STOP_TIMEOUT_MS) await sleep(POLL_MS);
  }
  if (isAlive(pid)) throw new Error(`pid ${pid} did not exit`);
  await forgetState(dir);
  if (json) printJson({ event: "stopped", dir, pid, forced });
  else process.stdout.write(`stopped lockbox dev peer (pid ${pid})${forced ? " with SIGKILL" : ""}\n`);
  return EXIT_OK;
}

async function status(dir: string, json: boolean): Promise<number> {
  const running = await runningPeer(dir);
  if (running === undefined) {
    if (json) printJson({ running: false, dir });
    else process.stdout.write(`no lockbox dev peer is running for ${dir}\n`);
    return EXIT_FAILURE;
  }
  const client = await clientFrom(adminConnection(dir, running.address));
  try {
    const s = await client.getStatus();
    if (json) printJson({ running: true, dir, ...running, status: s });
    else
      process.stdout.write(
        `running: ${running.address} (pid ${running.pid}), peer ${s.peerId}, ${s.keyCount} keys, ` +
          `master key protector ${s.masterKeyProtector}${s.masterKeyProtector === "development-file" ? " (NOT FOR PRODUCTION)" : ""}\n`,
      );
    return EXIT_OK;
  } finally {
    client.close();
  }
}

// ---- helpers -------------------------------------------------------------

const adminConnection = (dir: string, address: string) => ({
  endpoints: [address],
  ca: join(dir, "ca.crt"),
  cert: join(dir, "admin.crt"),
  key: join(dir, "admin.key"),
});

/** The recorded peer of `dir` if its process is alive and is our serve. */
async function runningPeer(dir: string): Promise<DevClusterState | undefined> {
  const pid = await ourPid(dir);
  if (pid === undefined) return undefined;
  try {
    const state = JSON.parse(await fs.readFile(join(dir, DEV_CLUSTER_STATE_FILE), "utf8")) as DevClusterState;
    return state.pid === pid ? state : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pid in DIR/peer.pid, only if that process is alive and is `lockbox serve`
 * of this directory: a stale pid file must never make us signal a stranger.
 */
async function ourPid(dir: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await fs.readFile(join(dir, "peer.pid"), "utf8");
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  if (!Number.isSafeInteger(pid) || pid <= 1 || !isAlive(pid)) return undefined;
  try {
    const argv = (await fs.readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
    return argv.includes("serve") && argv.includes(dir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function forgetState(dir: string): Promise<void> {
  await fs.rm(join(dir, "peer.pid"), { force: true });
  await fs.rm(join(dir, DEV_CLUSTER_STATE_FILE), { force: true });
}

/** Runs the CLI in the foreground; with --json its output goes to stderr, keeping stdout one JSON line. */
function runChild(args: string[], json: boolean): Promise<number> {
  return new Promise((resolveCode, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], {
      stdio: ["ignore", json ? 2 : "inherit", "inherit"],
    });
    child.on("error", reject);
    child.on("exit", (code) => resolveCode(code ?? 1));
  });
}
