/**
 * Runs the built `lockbox` CLI (dist/src/cli/main.js) as a child process, the
 * way an operator or a storage node would, and collects what it printed.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

/** dist/src/cli/main.js, seen from dist/test/helpers/. */
export const CLI_MAIN = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  /** stdout as UTF-8. */
  text: string;
}

export interface CliRunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Killed with SIGKILL after this long. Default 30000. */
  timeoutMs?: number;
  stdin?: Buffer | string;
}

export function runCli(args: string[], options: CliRunOptions = {}): Promise<CliResult> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], {
      cwd: options.cwd,
      // LOCKBOX_* from the test runner's environment must not leak into a test's call.
      env: { ...withoutLockboxVars(process.env), ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out);
      resolve({
        code,
        signal,
        stdout,
        stderr: Buffer.concat(err).toString("utf8"),
        text: stdout.toString("utf8"),
      });
    });
    child.stdin.end(options.stdin ?? "");
  });
}

/** Runs the CLI and parses its stdout as one JSON document; throws with stderr if it failed. */
export async function runCliJson<T = Record<string, unknown>>(
  args: string[],
  options?: CliRunOptions,
): Promise<T> {
  const r = await runCli(args, options);
  if (r.code !== 0) {
    throw new Error(`lockbox ${args.slice(0, 2).join(" ")} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  }
  return JSON.parse(r.text) as T;
}

export function withoutLockboxVars(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith("LOCKBOX_")));
}
