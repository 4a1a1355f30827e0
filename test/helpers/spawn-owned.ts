/**
 * Spawns a child that dies with the test worker that started it. When ava
 * times out a test file it kills the worker without running teardown hooks,
 * which used to leave peers running. `setpriv --pdeathsig KILL` asks the
 * kernel to SIGKILL the child when its parent dies; it execs, so the pid seen
 * by the test is the child's own and signalling it still works.
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { existsSync } from "node:fs";

const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

export function spawnOwned(command: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  return SETPRIV === undefined
    ? spawn(command, args, options)
    : spawn(SETPRIV, ["--pdeathsig", "KILL", "--", command, ...args], options);
}
