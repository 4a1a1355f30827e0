/**
 * `npm run bench -- single`: one real peer process (spawned, as in the e2e
 * tests), CreateKey, GetKey and DeleteKey at concurrency 1 and 64. Each case warms up,
 * then runs until it has done `--ops` calls or `--seconds` have passed,
 * whichever comes first. Prints ops/s and p50/p99 latency per case, then one
 * JSON line with the same figures.
 *
 * GetKey is measured with the client's key cache turned off, so every call is
 * a real round trip to the peer (unwrap included), never a cache hit.
 *
 * DeleteKey deletes keys the CreateKey cases made (topped up beforehand if
 * they made too few), each once. Its latency includes the tombstone's synced
 * write only: the purge of the destroyed material runs in the peer's
 * background batches (within the purge delay), no longer two compactions per call.
 */
import { parseArgs } from "node:util";

import { spawnPeer } from "../helpers/peer-process.js";

export interface CaseResult {
  rpc: "CreateKey" | "GetKey" | "DeleteKey";
  concurrency: number;
  ops: number;
  seconds: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

export const WARMUP_OPS = 50;
const GET_POOL_SIZE = 256;

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { ops: { type: "string" }, seconds: { type: "string" } },
    strict: true,
  });
  const opsMax = positiveInt("--ops", values.ops ?? "3000");
  const secondsMax = positiveInt("--seconds", values.seconds ?? "10");

  process.stdout.write(`starting a peer (lockbox init + serve in a temp dir)...\n`);
  const peer = await spawnPeer();
  const results: CaseResult[] = [];
  try {
    const client = peer.client(peer.admin, { cache: false, deadlineMs: 30_000 });
    let serial = 0;
    const created: string[] = [];
    const create = async (): Promise<unknown> => {
      const key = await client.createKey({
        project: "bench",
        scope: `s${serial++ % 97}`,
        name: "bench",
        bitLength: 256,
      });
      created.push(key.id);
      return key;
    };
    const pool = await Promise.all(
      Array.from(
        { length: GET_POOL_SIZE },
        async () => (await client.createKey({ project: "bench", scope: "pool", name: "p" })).id,
      ),
    );
    let next = 0;
    const get = (): Promise<unknown> => client.getKey(pool[next++ % pool.length]!);
    const del = (): Promise<unknown> => {
      const id = created.pop();
      if (id === undefined) return Promise.reject(new Error("no key left to delete"));
      return client.deleteKey(id);
    };

    for (const [rpc, op] of [
      ["CreateKey", create],
      ["GetKey", get],
      ["DeleteKey", del],
    ] as const) {
      for (const concurrency of [1, 64]) {
        if (rpc === "DeleteKey") {
          // Enough keys for the warm-up and the measured calls, each deleted once.
          const missing = WARMUP_OPS + opsMax - created.length;
          if (missing > 0) await run(create, 64, missing, 600);
        }
        await run(op, concurrency, WARMUP_OPS, 30);
        const r = await run(op, concurrency, opsMax, secondsMax);
        const result: CaseResult = { rpc, concurrency, ...r };
        results.push(result);
        process.stdout.write(caseLine(result));
      }
    }
  } finally {
    await peer.teardown();
  }
  process.stdout.write(
    JSON.stringify({ bench: "single", getKeyCache: "bypassed", node: process.version, results }) + "\n",
  );
}

/** One human-readable line of a case's figures. */
export function caseLine(result: CaseResult): string {
  return (
    `${result.rpc.padEnd(9)} concurrency ${String(result.concurrency).padStart(2)}: ${result.opsPerSecond.toFixed(0).padStart(6)} ops/s` +
    `  p50 ${result.p50Ms.toFixed(2)} ms  p99 ${result.p99Ms.toFixed(2)} ms` +
    `  (${result.ops} ops in ${result.seconds.toFixed(1)} s, ${result.errors} errors)\n`
  );
}

/**
 * Runs `op` with `concurrency` workers until `opsMax` calls are done or `secondsMax` have passed;
 * `progress`, when given, hears the calls done so far once a second.
 */
export async function run(
  op: () => Promise<unknown>,
  concurrency: number,
  opsMax: number,
  secondsMax: number,
  progress?: (done: number, errors: number, seconds: number) => void,
): Promise<Omit<CaseResult, "rpc" | "concurrency">> {
  const latenciesMs: number[] = [];
  let started = 0;
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + secondsMax * 1000;
  const ticker =
    progress === undefined
      ? undefined
      : setInterval(() => progress(latenciesMs.length, errors, (performance.now() - t0) / 1000), 1000);
  const worker = async (): Promise<void> => {
    while (started < opsMax && performance.now() < deadline) {
      started++;
      const s = performance.now();
      try {
        await op();
        latenciesMs.push(performance.now() - s);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker)).finally(() => clearInterval(ticker));
  const seconds = (performance.now() - t0) / 1000;
  latenciesMs.sort((a, b) => a - b);
  return {
    ops: latenciesMs.length,
    seconds,
    opsPerSecond: latenciesMs.length / seconds,
    p50Ms: percentile(latenciesMs, 0.5),
    p99Ms: percentile(latenciesMs, 0.99),
    errors,
  };
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
}

export function positiveInt(flag: string, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${flag} must be a positive integer, got '${v}'`);
  return Number(v);
}
