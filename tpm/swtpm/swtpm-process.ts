/**
 * Runs swtpm as a child process on a loopback TCP port pair (data port P,
 * control port P+1), waits until the data port answers a command, and stops
 * it again. The caller owns the child: `stop()` must be awaited (tests call it
 * from teardown), it sends SIGTERM, then SIGKILL, and resolves on exit.
 *
 * `detachedLogPath` starts a swtpm that outlives its starter instead (the
 * development cluster's, stopped later through a pid file): the same port
 * choice and the same command-level readiness, its output in a log file.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, fstatSync, openSync } from "node:fs";
import { open, readFile, readdir, readlink } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { TcpTransport } from "../transport/tcp-transport.js";
import { lastLines } from "./provision.js";
import { SwtpmError } from "./swtpm-error.js";

export interface StartSwtpmOptions {
  stateDir: string;
  /** Deadline for one attempt to bring the data port to answering. */
  startTimeoutMs?: number;
  /** Port pairs tried before giving up with "no-free-port". */
  portAttemptsMax?: number;
  /**
   * Data ports to try, in order, instead of random ones (control port: each
   * plus one). They are handed to swtpm without a free-port probe: swtpm
   * itself finds out whether one is taken. For fixed deployments and tests.
   */
  portCandidates?: readonly number[];
  /**
   * A data port tried first, handed to swtpm without a free-port probe as
   * `portCandidates` are; if swtpm cannot have it, random pairs follow, as
   * without candidates. For a port recorded earlier that may move.
   */
  firstPort?: number;
  /** Told before each pair after the first, with the pair given up before it and why. */
  onPortRetry?: (port: number, previous: { port: number; reason: string }) => void;
  /**
   * Start swtpm so that it outlives this process: in its own process group,
   * without the parent-death signal, its output appended to this file (the
   * reason of an exit during start-up is read back from it). The caller must
   * record `pid` to stop it later; `stop()` works while this process lives.
   */
  detachedLogPath?: string;
}

export interface RunningSwtpm {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly ctrlPort: number;
  readonly stateDir: string;
  readonly pid: number;
  /** `swtpm:host=127.0.0.1,port=P` for tpm2-tools (TPM2TOOLS_TCTI). */
  readonly tcti: string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export const SWTPM_HOST = "127.0.0.1";
const DEFAULT_START_TIMEOUT_MS = 10_000;
const DEFAULT_PORT_ATTEMPTS_MAX = 20;
// Below Linux's ephemeral range (32768-60999) so outgoing connections rarely collide.
const PORT_RANGE_LOW = 20_000;
const PORT_RANGE_HIGH = 32_000;
const OUTPUT_TAIL_BYTES_MAX = 4096;
const PROBE_INTERVAL_MS = 10;
const DEFAULT_STOP_GRACE_MS = 2_000;
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));
const GET_RANDOM_8 = Uint8Array.from([0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 0x08]);

export async function startSwtpm(options: StartSwtpmOptions): Promise<RunningSwtpm> {
  const stateDir = path.resolve(options.stateDir);
  const attemptsMax = options.portAttemptsMax ?? DEFAULT_PORT_ATTEMPTS_MAX;
  const startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  if (options.portCandidates !== undefined && options.firstPort !== undefined) {
    throw new SwtpmError("bad-argument", "portCandidates and firstPort exclude each other");
  }
  const candidates = options.portCandidates ?? (options.firstPort === undefined ? [] : [options.firstPort]);
  const randomAfter = options.portCandidates === undefined;
  const attempts = randomAfter ? attemptsMax : Math.min(attemptsMax, candidates.length);
  let previous: { port: number; reason: string } | undefined;
  let lastReason = "";
  for (let attempt = 0; attempt < attempts; attempt++) {
    const candidate = candidates[attempt];
    const port =
      candidate ?? PORT_RANGE_LOW + 2 * Math.floor(Math.random() * ((PORT_RANGE_HIGH - PORT_RANGE_LOW) / 2));
    if (!Number.isInteger(port) || port < 1 || port > 65534) {
      throw new SwtpmError("bad-argument", `port candidate ${port} is not in 1..65534`);
    }
    if (candidate === undefined && (!(await isFree(port)) || !(await isFree(port + 1)))) {
      lastReason = `ports ${port}/${port + 1} in use`;
      continue;
    }
    if (previous !== undefined) options.onPortRetry?.(port, previous);
    const outcome = await tryStart(stateDir, port, startTimeoutMs, options.detachedLogPath);
    if (outcome.kind === "running") return outcome.swtpm;
    // Another process may take the port between the probe and swtpm's bind: try another pair.
    if (outcome.kind === "port-taken") {
      lastReason = outcome.reason;
      previous = { port, reason: outcome.reason };
      continue;
    }
    throw outcome.error;
  }
  throw new SwtpmError(
    "no-free-port",
    `no free loopback port pair after ${attempts} attempts (${lastReason})`,
  );
}

type StartOutcome =
  | { kind: "running"; swtpm: RunningSwtpm }
  | { kind: "port-taken"; reason: string }
  | { kind: "failed"; error: SwtpmError };

async function tryStart(
  stateDir: string,
  port: number,
  startTimeoutMs: number,
  detachedLogPath: string | undefined,
): Promise<StartOutcome> {
  const args = [
    "socket",
    "--tpm2",
    "--server",
    `type=tcp,port=${port},bindaddr=${SWTPM_HOST}`,
    "--ctrl",
    `type=tcp,port=${port + 1},bindaddr=${SWTPM_HOST}`,
    "--tpmstate",
    `dir=${stateDir}`,
    "--flags",
    "not-need-init,startup-clear",
  ];
  // Synchronous from spawn to the listeners below: a spawn error is emitted on the next tick.
  const { child, output } =
    detachedLogPath === undefined ? spawnOwned(args) : spawnDetached(args, detachedLogPath);
  const exited = exitPromise(child);
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve));

  const deadline = Date.now() + startTimeoutMs;
  let probeError: unknown;
  while (Date.now() < deadline) {
    const early = await Promise.race([
      exited.then((e) => ({ exit: e })),
      spawnError.then((err) => ({ spawnErr: err })),
      probe(port).then(
        (ok) => ({ ok }),
        (err: unknown) => {
          probeError = err;
          return { ok: false };
        },
      ),
    ]);
    if ("spawnErr" in early) {
      const errno = (early.spawnErr as NodeJS.ErrnoException).code;
      const error =
        errno === "ENOENT"
          ? new SwtpmError("tool-missing", "swtpm is not installed (apt-get install swtpm)")
          : new SwtpmError("start-failed", "cannot spawn swtpm", { cause: early.spawnErr });
      return { kind: "failed", error };
    }
    if ("exit" in early) {
      const said = await output();
      if (/failed to execute swtpm/i.test(said)) {
        return {
          kind: "failed",
          error: new SwtpmError("tool-missing", "swtpm is not installed (apt-get install swtpm)"),
        };
      }
      const reason = `swtpm exited (${early.exit}) during start-up: ${lastLines(said, 3)}`;
      if (/address already in use/i.test(said)) return { kind: "port-taken", reason };
      return { kind: "failed", error: new SwtpmError("start-failed", reason) };
    }
    if (early.ok) {
      // The answer may have come from another process that holds the port (taken between our free-port
      // probe and swtpm's bind; swtpm then exits with EADDRINUSE a moment later): ours must own the socket.
      if (child.pid !== undefined && (await listensOn(child.pid, port)) === false) {
        await terminate(child, exited, DEFAULT_STOP_GRACE_MS);
        return { kind: "port-taken", reason: `port ${port} is served by another process` };
      }
      // A detached swtpm must not hold this process open: it runs on after this process exits.
      if (detachedLogPath !== undefined) child.unref();
      return { kind: "running", swtpm: running(child, exited, stateDir, port) };
    }
    // Not unref'd: between two probes this wait may be all that keeps a starter with nothing else to
    // do (the dev-cluster CLI) alive, once a swtpm that exited has released its process handle.
    await new Promise((resolve) => setTimeout(resolve, PROBE_INTERVAL_MS));
  }
  await terminate(child, exited, DEFAULT_STOP_GRACE_MS);
  return {
    kind: "failed",
    error: new SwtpmError(
      "not-answering",
      `swtpm on port ${port} did not answer within ${startTimeoutMs} ms: ${lastLines(await output(), 3)}`,
      { cause: probeError },
    ),
  };
}

interface Spawned {
  child: ChildProcess;
  /** The tail of what swtpm wrote (this start's only), at most OUTPUT_TAIL_BYTES_MAX. */
  output(): Promise<string>;
}

/** A swtpm owned by this process: its output piped here, killed by the kernel if this process dies. */
function spawnOwned(args: string[]): Spawned {
  // setpriv --pdeathsig makes the kernel kill swtpm if this process dies without stopping it
  // (a crashed or killed test worker), so no simulator outlives its owner. It execs, keeping the pid.
  const child =
    SETPRIV === undefined
      ? spawn("swtpm", args, { stdio: ["ignore", "pipe", "pipe"] })
      : spawn(SETPRIV, ["--pdeathsig", "KILL", "--", "swtpm", ...args], {
          stdio: ["ignore", "pipe", "pipe"],
        });
  let output = "";
  const keepTail = (chunk: Buffer): void => {
    output = (output + chunk.toString("utf8")).slice(-OUTPUT_TAIL_BYTES_MAX);
  };
  child.stdout?.on("data", keepTail);
  child.stderr?.on("data", keepTail);
  return { child, output: () => Promise.resolve(output) };
}

/**
 * A swtpm that outlives this process: its own process group (a terminal's ^C to its starter does not
 * reach it), output appended to `logPath`, never a pipe to this process (which would break when it exits).
 */
function spawnDetached(args: string[], logPath: string): Spawned {
  const fd = openSync(logPath, "a", 0o600);
  const offset = fstatSync(fd).size;
  let child: ChildProcess;
  try {
    child = spawn("swtpm", args, { detached: true, stdio: ["ignore", fd, fd] });
  } finally {
    closeSync(fd);
  }
  return { child, output: () => readTail(logPath, offset) };
}

/** What `path` holds past `offset`, its last OUTPUT_TAIL_BYTES_MAX bytes at most. */
async function readTail(path: string, offset: number): Promise<string> {
  let file;
  try {
    file = await open(path, "r");
  } catch {
    return "";
  }
  try {
    const size = (await file.stat()).size;
    const from = Math.max(offset, size - OUTPUT_TAIL_BYTES_MAX);
    const buf = Buffer.alloc(Math.max(0, size - from));
    await file.read(buf, 0, buf.length, from);
    return buf.toString("utf8");
  } finally {
    await file.close();
  }
}

/** One GetRandom over a fresh connection; true when a success response comes back. */
async function probe(port: number): Promise<boolean> {
  const t = await TcpTransport.connect({
    host: SWTPM_HOST,
    port,
    connectTimeoutMs: 1_000,
    commandTimeoutMs: 2_000,
  });
  try {
    const r = await t.send(GET_RANDOM_8);
    return r.length >= 10 && new DataView(r.buffer, r.byteOffset, r.byteLength).getUint32(6) === 0;
  } finally {
    await t.close();
  }
}

function running(child: ChildProcess, exited: Promise<string>, stateDir: string, port: number): RunningSwtpm {
  let stopping: Promise<void> | undefined;
  const pid = child.pid;
  if (pid === undefined) throw new SwtpmError("start-failed", "swtpm has no pid");
  return {
    host: SWTPM_HOST,
    port,
    ctrlPort: port + 1,
    stateDir,
    pid,
    tcti: `swtpm:host=${SWTPM_HOST},port=${port}`,
    stop(graceMs = DEFAULT_STOP_GRACE_MS) {
      stopping ??= terminate(child, exited, graceMs);
      return stopping;
    },
  };
}

async function terminate(child: ChildProcess, exited: Promise<string>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = sleep(graceMs).then(() => "grace-over" as const);
  if ((await Promise.race([exited, timer])) !== "grace-over") return;
  child.kill("SIGKILL");
  const killTimer = sleep(5_000).then(() => "kill-timeout" as const);
  if ((await Promise.race([exited, killTimer])) === "kill-timeout") {
    throw new SwtpmError("stop-failed", `swtpm pid ${String(child.pid)} did not exit after SIGKILL`);
  }
}

/**
 * Resolves once the child exited AND its stdout/stderr are drained ("close", not "exit"): swtpm's
 * "Address already in use" can arrive after "exit", and start-up classifies the exit by that output.
 */
function exitPromise(child: ChildProcess): Promise<string> {
  return new Promise((resolve) => {
    child.once("close", (code, signal) =>
      resolve(signal !== null ? `signal ${signal}` : `code ${String(code)}`),
    );
  });
}

/**
 * Whether process `pid` holds the listening TCP socket on 127.0.0.1:`port`
 * (Linux /proc: the socket's inode among the process's descriptors);
 * undefined where /proc cannot tell.
 */
async function listensOn(pid: number, port: number): Promise<boolean | undefined> {
  let table: string;
  try {
    table = await readFile("/proc/net/tcp", "utf8");
  } catch {
    return undefined;
  }
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const line of table.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; st 0A is LISTEN.
    if (f[1] === local && f[3] === "0A" && f[9] !== undefined) inodes.add(f[9]);
  }
  let fds: string[];
  try {
    fds = await readdir(`/proc/${pid}/fd`);
  } catch {
    return false; // the process is gone
  }
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m !== null && inodes.has(m[1]!)) return true;
  }
  return false;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen({ host: SWTPM_HOST, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
