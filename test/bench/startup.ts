/**
 * `npm run bench -- startup`: how long a peer takes from spawn to serving. A real `lockbox serve`
 * process is spawned on an init directory and timed until its ready line (printed once it
 * listens), then stopped with SIGTERM; `--runs` times each on an empty store and on a store holding
 * `--keys` keys (plus one key deleted, so a purge marker is reloaded too). Prints median, min
 * and max per case, then one JSON line of the figures.
 *
 * On a shared machine the absolute figures move with the load, so the same run also times the
 * floor: `node -e ''` spawned the same way (spawn to exit). Compare a peer's figures with it,
 * not with figures from another run. `--baseline PATH` times another build's CLI
 * (PATH/dist/src/cli/main.js, e.g. an older commit built elsewhere) on the same stores in the same
 * run, interleaved, for a before/after comparison under the same load.
 */
import { once } from "node:events";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

import { CLI_MAIN, withoutLockboxVars } from "../helpers/cli-process.js";
import { parseReady, spawnPeer, type PeerProcess } from "../helpers/peer-process.js";
import { spawnOwned } from "../helpers/spawn-owned.js";

interface Figures {
  runs: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
}

/** Longest one spawn may take before the bench gives up on it. */
const READY_TIMEOUT_MS = 60_000;

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { runs: { type: "string" }, keys: { type: "string" }, baseline: { type: "string" } },
    strict: true,
  });
  const runs = positiveInt("--runs", values.runs ?? "9");
  const keyCount = positiveInt("--keys", values.keys ?? "3000");

  process.stdout.write(`preparing: an empty peer, and a peer with ${keyCount} keys...\n`);
  const empty = await spawnPeer();
  const full = await spawnPeer();
  try {
    await fill(full, keyCount);
    await empty.kill("SIGTERM");
    await full.kill("SIGTERM");

    const results: Record<string, Figures> = {};
    const cases: [string, () => Promise<number>][] = [
      ["node -e ''", () => timeNodeFloor()],
      ["serve, empty store", () => timeServe(CLI_MAIN, empty.dir)],
      [`serve, ${keyCount} keys`, () => timeServe(CLI_MAIN, full.dir)],
    ];
    if (values.baseline !== undefined) {
      const baseline = join(resolve(values.baseline), "dist/src/cli/main.js");
      cases.push(
        ["baseline, empty store", () => timeServe(baseline, empty.dir)],
        [`baseline, ${keyCount} keys`, () => timeServe(baseline, full.dir)],
      );
    }
    // Interleaved, so a burst of load on the machine touches every case alike.
    const samples = new Map<string, number[]>(cases.map(([name]) => [name, []]));
    for (let i = 0; i < runs; i++) {
      for (const [name, measure] of cases) samples.get(name)!.push(await measure());
    }
    for (const [name] of cases) {
      const f = figures(samples.get(name)!);
      results[name] = f;
      process.stdout.write(
        `${name.padEnd(26)} spawn to ready: median ${f.medianMs.toFixed(0).padStart(5)} ms` +
          `  min ${f.minMs.toFixed(0).padStart(5)} ms  max ${f.maxMs.toFixed(0).padStart(5)} ms  (${f.runs} runs)\n`,
      );
    }
    const floor = results["node -e ''"]!.medianMs;
    for (const [name, f] of Object.entries(results)) {
      if (name !== "node -e ''") {
        process.stdout.write(
          `${name.padEnd(26)} above the node floor: ${(f.medianMs - floor).toFixed(0)} ms\n`,
        );
      }
    }
    process.stdout.write(
      JSON.stringify({ bench: "startup", node: process.version, keys: keyCount, results }) + "\n",
    );
  } finally {
    await empty.teardown();
    await full.teardown();
  }
}

/** Creates `count` keys (64 calls in flight), then deletes one, so the store also holds a purge. */
async function fill(peer: PeerProcess, count: number): Promise<void> {
  const client = peer.client(peer.admin, { cache: false, deadlineMs: 60_000 });
  let made = 0;
  let last = "";
  const worker = async (): Promise<void> => {
    while (made < count) {
      made++;
      last = (await client.createKey({ project: "bench", scope: `s${made % 97}`, name: "k" })).id;
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  await client.deleteKey(last);
}

/** Spawn to exit of `node -e ''`: what any Node process costs on this machine right now. */
async function timeNodeFloor(): Promise<number> {
  const t0 = performance.now();
  const child = spawnOwned(process.execPath, ["-e", ""], { stdio: "ignore" });
  await once(child, "exit");
  return performance.now() - t0;
}

/** Spawn to ready line of `lockbox serve` (the CLI at `cliMain`) on `dir`; then SIGTERM and wait for it to exit. */
async function timeServe(cliMain: string, dir: string): Promise<number> {
  const t0 = performance.now();
  const child = spawnOwned(
    process.execPath,
    [cliMain, "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--json"],
    { env: withoutLockboxVars(process.env), stdio: ["ignore", "pipe", "ignore"] },
  );
  const exited = once(child, "exit");
  try {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => child.kill("SIGKILL"), READY_TIMEOUT_MS);
    try {
      for await (const line of lines) {
        if (parseReady(line) !== undefined) return performance.now() - t0;
      }
    } finally {
      clearTimeout(timer);
    }
    throw new Error(`lockbox serve --dir ${dir} exited (code ${child.exitCode}) before it was ready`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  }
}

function figures(samplesMs: number[]): Figures {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return {
    runs: sorted.length,
    medianMs: sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2,
    minMs: sorted[0]!,
    maxMs: sorted[sorted.length - 1]!,
  };
}

function positiveInt(flag: string, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${flag} must be a positive integer, got '${v}'`);
  return Number(v);
}
