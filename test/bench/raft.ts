/**
 * `npm run bench -- raft [--concurrency 1,8,64] [--duration-ms 3000] [--count-max 20000]`
 *
 * Three control-node processes on 127.0.0.1 (real LevelDB with synced writes, real gRPC). For each
 * concurrency, that many clients send key-value Propose calls to the leader back to back, for at most
 * --duration-ms and at most --count-max proposals. Latency is what a client sees: the Propose call from
 * send until the answer, which comes once the entry is committed (fsync'd on a majority) and applied
 * on the leader. Prints a table, then one JSON line.
 */
import { performance } from "node:perf_hooks";
import { ControlCluster } from "../raft-process/control-cluster.js";

interface Row {
  concurrency: number;
  proposals: number;
  failed: number;
  seconds: number;
  proposalsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

function parse(argv: string[]): { concurrency: number[]; durationMs: number; countMax: number } {
  const opts = { concurrency: [1, 8, 64], durationMs: 3000, countMax: 20_000 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--concurrency") opts.concurrency = value.split(",").map(Number);
    else if (flag === "--duration-ms") opts.durationMs = Number(value);
    else if (flag === "--count-max") opts.countMax = Number(value);
    else throw new Error(`unknown flag ${flag}`);
  }
  for (const c of opts.concurrency) {
    if (!Number.isSafeInteger(c) || c < 1 || c > 1024) throw new Error("--concurrency: integers in 1..1024");
  }
  if (!(opts.durationMs > 0) || !(opts.countMax > 0))
    throw new Error("--duration-ms and --count-max must be > 0");
  return opts;
}

const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

export async function main(argv: string[]): Promise<void> {
  const opts = parse(argv);
  const cluster = new ControlCluster("lockbox-raft-bench-");
  const rows: Row[] = [];
  try {
    await cluster.startVoters(3);
    const leader = cluster.node(await cluster.waitLeader());
    // Warm up connections and the leader's first-term entry.
    for (let i = 0; i < 20; i++) await leader.call("Propose", { op: "set", key: `warm${i}`, value: "w" });

    for (const concurrency of opts.concurrency) {
      const latencies: number[] = [];
      let failed = 0;
      let issued = 0;
      const start = performance.now();
      const deadline = start + opts.durationMs;
      const worker = async (w: number): Promise<void> => {
        while (performance.now() < deadline && issued < opts.countMax) {
          const n = issued++;
          const t0 = performance.now();
          try {
            await leader.call("Propose", {
              op: "set",
              key: `c${concurrency}-w${w}-${n}`,
              value: "x".repeat(100),
            });
            latencies.push(performance.now() - t0);
          } catch {
            failed++;
          }
        }
      };
      await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
      const seconds = (performance.now() - start) / 1000;
      latencies.sort((a, b) => a - b);
      rows.push({
        concurrency,
        proposals: latencies.length,
        failed,
        seconds: Number(seconds.toFixed(2)),
        proposalsPerSecond: Math.round(latencies.length / seconds),
        p50Ms: Number(percentile(latencies, 50).toFixed(2)),
        p99Ms: Number(percentile(latencies, 99).toFixed(2)),
      });
    }
  } finally {
    await cluster.stopAll();
  }

  const header = ["concurrency", "proposals", "failed", "seconds", "proposals/s", "p50 ms", "p99 ms"];
  const lines = rows.map((r) =>
    [r.concurrency, r.proposals, r.failed, r.seconds, r.proposalsPerSecond, r.p50Ms, r.p99Ms].map(String),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join("  ");
  process.stdout.write(
    `raft: 3 control-node processes on 127.0.0.1, synced LevelDB, Propose latency as seen by the client\n` +
      `${fmt(header)}\n${lines.map(fmt).join("\n")}\n`,
  );
  process.stdout.write(JSON.stringify({ bench: "raft", members: 3, results: rows }) + "\n");
}
