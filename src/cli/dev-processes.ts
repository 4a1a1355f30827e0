/**
 * The background processes of `lockbox dev-cluster` (swtpm simulators and
 * `lockbox serve` peers): started detached, each recorded in a pid file with
 * its kernel start time, so `stop` signals exactly what `start` started and
 * never a stranger that reused a pid.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, promises as fs, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const POLL_MS = 100;

/** What a pid file holds: the pid, its start time (clock ticks since boot) and what it runs. */
export interface ProcessRecord {
  name: string;
  pid: number;
  startTime: string;
  command: string;
}

/** Field 22 of /proc/PID/stat: when the process started; a reused pid has another. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Alive and the same process the record was written for. */
export function isRecorded(record: ProcessRecord): boolean {
  return isAlive(record.pid) && processStartTime(record.pid) === record.startTime;
}

/**
 * Starts `command args` detached in its own process group, output appended to `logPath`, and writes
 * its pid file in `runDir`. It outlives this process.
 */
export async function spawnRecorded(
  runDir: string,
  name: string,
  command: string,
  args: readonly string[],
  logPath: string,
): Promise<ProcessRecord> {
  await fs.mkdir(runDir, { recursive: true, mode: 0o700 });
  const logFd = openSync(logPath, "a", 0o600);
  const child = spawn(command, args, { detached: true, stdio: ["ignore", logFd, logFd], env: process.env });
  closeSync(logFd);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${command}`);
  child.unref();
  if (processStartTime(pid) === undefined)
    throw new Error(`${command} (pid ${pid}) exited at once; see ${logPath}`);
  return recordProcess(runDir, name, pid, [command, ...args].join(" "));
}

/** Writes the pid file of a process started elsewhere (detached, so that it outlives this one). */
export async function recordProcess(
  runDir: string,
  name: string,
  pid: number,
  command: string,
): Promise<ProcessRecord> {
  await fs.mkdir(runDir, { recursive: true, mode: 0o700 });
  const startTime = processStartTime(pid);
  if (startTime === undefined) throw new Error(`${name} (pid ${pid}) is not running`);
  const record: ProcessRecord = { name, pid, startTime, command };
  await fs.writeFile(join(runDir, `${name}.pid`), JSON.stringify(record) + "\n", { mode: 0o600 });
  return record;
}

/** The pid file of `name`, if it is readable and well formed. */
export async function readRecord(runDir: string, name: string): Promise<ProcessRecord | undefined> {
  try {
    const v = JSON.parse(await fs.readFile(join(runDir, `${name}.pid`), "utf8")) as Partial<ProcessRecord>;
    if (
      typeof v.pid === "number" &&
      Number.isSafeInteger(v.pid) &&
      v.pid > 1 &&
      typeof v.startTime === "string" &&
      typeof v.name === "string" &&
      typeof v.command === "string"
    )
      return v as ProcessRecord;
  } catch {
    // missing or damaged: nothing of ours to signal
  }
  return undefined;
}

/** Every pid file in `runDir`. */
export async function readRecords(runDir: string): Promise<ProcessRecord[]> {
  let names: string[];
  try {
    names = await fs.readdir(runDir);
  } catch {
    return [];
  }
  const records: ProcessRecord[] = [];
  for (const f of names.sort()) {
    if (!f.endsWith(".pid")) continue;
    const r = await readRecord(runDir, f.slice(0, -4));
    if (r !== undefined) records.push(r);
  }
  return records;
}

/**
 * SIGTERM, then SIGKILL after `graceMs`, only if the pid is still the recorded process; removes the pid
 * file. Returns what happened.
 */
export async function stopRecorded(
  runDir: string,
  record: ProcessRecord,
  graceMs: number,
): Promise<"stopped" | "killed" | "not-running"> {
  let outcome: "stopped" | "killed" | "not-running" = "not-running";
  if (isRecorded(record)) {
    process.kill(record.pid, "SIGTERM");
    const deadline = Date.now() + graceMs;
    while (isRecorded(record) && Date.now() < deadline) await sleep(POLL_MS);
    outcome = "stopped";
    if (isRecorded(record)) {
      process.kill(record.pid, "SIGKILL");
      outcome = "killed";
      const killDeadline = Date.now() + graceMs;
      while (isRecorded(record) && Date.now() < killDeadline) await sleep(POLL_MS);
      if (isRecorded(record)) throw new Error(`${record.name} (pid ${record.pid}) did not exit`);
    }
  }
  await fs.rm(join(runDir, `${record.name}.pid`), { force: true });
  return outcome;
}

/** A loopback port nothing listens on right now (the OS picks it). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}
