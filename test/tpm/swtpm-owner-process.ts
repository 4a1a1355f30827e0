/**
 * A process that starts a swtpm and then waits to be killed: run by
 * swtpm.test.ts to check that a swtpm does not outlive an owner that dies
 * without stopping it. Prints {"pid": N, "port": P} once swtpm answers.
 */
import { startSwtpm } from "../../tpm/swtpm/index.js";

const stateDir = process.argv[2];
if (stateDir === undefined) throw new Error("usage: swtpm-owner-process STATE_DIR");
const swtpm = await startSwtpm({ stateDir });
process.stdout.write(JSON.stringify({ pid: swtpm.pid, port: swtpm.port }) + "\n");
// Bounded: the test kills this process long before; if not, stop swtpm and leave.
setTimeout(() => void swtpm.stop().then(() => process.exit(0)), 60_000);
