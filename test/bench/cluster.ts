/**
 * `npm run bench -- cluster`: three real peer processes on 127.0.0.1, joined into one cluster, keys
 * replicated on N = 3 peers with W = R = 2 (every acknowledged write synced on two peers at least);
 * CreateKey and GetKey at concurrency 1 and 64. The peers talk through the fault proxies of the test
 * harness (test/helpers/cluster-processes.ts), never cut here: one more loopback hop per peer message,
 * as a real network adds one. Clients call the peers in turn (one client per peer, round robin), as
 * compare.sh's etcd load spreads over its members.
 *
 * Each case warms up, then runs until it has done `--ops` calls or `--seconds` have passed, whichever
 * comes first, printing its progress once a second. Ends with one JSON line shaped as `bench -- single`'s.
 * GetKey is measured with the client's key cache off: every call is a round trip and a quorum read.
 */
import { parseArgs } from "node:util";

import type { LockboxClient } from "../../src/client/index.js";
import { ProcessCluster } from "../helpers/cluster-processes.js";
import { caseLine, positiveInt, run, WARMUP_OPS, type CaseResult } from "./single.js";

const PEERS = 3;
const GET_POOL_SIZE = 256;
/** Scopes the created keys spread over (each scope is one partition). */
const SCOPES = 97;

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { ops: { type: "string" }, seconds: { type: "string" }, "cpu-prof": { type: "string" } },
    strict: true,
  });
  const opsMax = positiveInt("--ops", values.ops ?? "3000");
  const secondsMax = positiveInt("--seconds", values.seconds ?? "10");
  const say = (line: string): boolean => process.stdout.write(line + "\n");

  say(`starting ${PEERS} peers (init, join, serve in temp dirs)...`);
  const t0 = performance.now();
  const profileDir = values["cpu-prof"];
  const cluster = await ProcessCluster.start({
    peers: PEERS,
    // Each peer writes a CPU profile there when it stops (SIGTERM below; node --cpu-prof).
    ...(profileDir !== undefined ? { env: { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profileDir}` } } : {}),
    // Default passes and deadlines (as deployed), N = 3: every key on all three peers.
    configure: (c) => {
      c.replication = { ...(c.replication as object), enabled: true, replicas: 3 };
    },
    progress: (line) => say(`  [${((performance.now() - t0) / 1000).toFixed(1)} s] ${line}`),
  });
  const results: CaseResult[] = [];
  try {
    await cluster.waitKeysServed(60_000);
    const clients: LockboxClient[] = cluster.peers.map((p) =>
      cluster.client(p.id, { cache: false, deadlineMs: 30_000 }),
    );
    let turn = 0;
    const nextClient = (): LockboxClient => clients[turn++ % clients.length]!;
    let serial = 0;
    const create = (): Promise<unknown> =>
      nextClient().createKey({
        project: "bench",
        scope: `s${serial++ % SCOPES}`,
        name: "bench",
        bitLength: 256,
      });
    say(`creating ${GET_POOL_SIZE} keys to read...`);
    const pool = await Promise.all(
      Array.from(
        { length: GET_POOL_SIZE },
        async (_, i) =>
          (await nextClient().createKey({ project: "bench", scope: `p${i % SCOPES}`, name: "p" })).id,
      ),
    );
    let next = 0;
    const get = (): Promise<unknown> => nextClient().getKey(pool[next++ % pool.length]!);

    for (const [rpc, op] of [
      ["CreateKey", create],
      ["GetKey", get],
    ] as const) {
      for (const concurrency of [1, 64]) {
        say(`${rpc} C=${concurrency}: warming up, then up to ${opsMax} ops or ${secondsMax} s`);
        await run(op, concurrency, WARMUP_OPS, 30);
        const r = await run(op, concurrency, opsMax, secondsMax, (done, errors, seconds) =>
          say(`  ${seconds.toFixed(0)} s: ${done} ops, ${errors} errors`),
        );
        const result: CaseResult = { rpc, concurrency, ...r };
        results.push(result);
        process.stdout.write(caseLine(result));
      }
    }
  } finally {
    // A clean stop, so profiles and logs are complete.
    for (const p of cluster.running) await cluster.stop(p.id).catch(() => {});
    await cluster.teardown();
  }
  process.stdout.write(
    JSON.stringify({
      bench: "cluster",
      peers: PEERS,
      replicas: 3,
      writeQuorum: 2,
      readQuorum: 2,
      getKeyCache: "bypassed",
      node: process.version,
      results,
    }) + "\n",
  );
}
