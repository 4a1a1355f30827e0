/**
 * `npm run bench -- cluster`: three real peer processes on 127.0.0.1, joined into one cluster, keys
 * replicated on N = 3 peers with W = R = 2 (every acknowledged write synced on two peers at least);
 * CreateKey and GetKey at concurrency 1 and 64. The peers are the test harness's
 * (test/helpers/cluster-processes.ts) without its fault proxies: peers and clients dial each other
 * directly. Clients call the peers in turn (one client per peer, round robin), as compare.sh's etcd
 * load spreads over its members.
 *
 * Each case warms up, then runs until it has done `--ops` calls or `--seconds` have passed, whichever
 * comes first, printing its progress once a second. Ends with one JSON line shaped as `bench -- single`'s.
 * GetKey is measured with the client's key cache off: every call is a round trip and a quorum read.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";

import type { LockboxClient } from "../../src/client/index.js";
import { ProcessCluster, waitFor, type ClusterPeer } from "../helpers/cluster-processes.js";
import { sample, scrapeMetrics } from "../helpers/peer-metrics-scrape.js";
import { caseLine, positiveInt, run, type CaseResult } from "./single.js";

const PEERS = 3;
/**
 * Load before each measured case, seconds (--warmup). V8 optimizes a peer's hot functions (about 500
 * of them) one by one on background threads as they get hot, and on 2 shared cores each TurboFan job
 * takes 35-100 ms: with 3 s, peer-1 still finished 5-21 TurboFan compilations a second through
 * CreateKey at 64's measured window (--trace-opt, 2026-12-02), and V8's worker threads took 0.15-0.19
 * ms of the peers' 0.78-0.95 ms per create; after 12 s of load, 0.08 ms. It also means a bigger store
 * when the window opens, which costs the LevelDB writing threads more: in compare.sh's order the
 * figures were lower with 10 s than with 3 s (docs/architecture.md §2).
 */
const WARMUP_SECONDS = 10;
/** Kernel clock ticks per second of /proc/PID/stat's utime and stime (CLK_TCK, 100 on Linux). */
const CLOCK_TICKS_PER_SECOND = 100;

/** The GetRing fields the bench waits on (admin.proto RingStatus, longs as strings). */
interface RingView {
  version: string;
  local_version: string;
  partitions_receiving: number;
  partitions_received: number;
  partitions_giving: number;
  partitions_given: number;
}

/** A case's figures, with the CPU the peers and this client spent per acknowledged call. */
type ClusterCase = CaseResult & { peerCpuMsPerOp: number; clientCpuMsPerOp: number };
const GET_POOL_SIZE = 256;
/** Scopes the created keys spread over (each scope is one partition). */
const SCOPES = 97;

export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ops: { type: "string" },
      seconds: { type: "string" },
      "cpu-prof": { type: "string" },
      cases: { type: "string" },
      metrics: { type: "boolean" },
      warmup: { type: "string" },
    },
    strict: true,
  });
  const opsMax = positiveInt("--ops", values.ops ?? "3000");
  const secondsMax = positiveInt("--seconds", values.seconds ?? "10");
  const warmupSeconds = positiveInt("--warmup", values.warmup ?? String(WARMUP_SECONDS));
  const say = (line: string): boolean => process.stdout.write(line + "\n");
  // `--cases CreateKey:64,GetKey:64` runs only those cases (for profiling one of them).
  const only = values.cases === undefined ? undefined : new Set(values.cases.split(","));
  /** With --cpu-prof: each case's measured span on the monotonic clock the profiles use (µs). */
  const spans: { case: string; startUs: number; endUs: number }[] = [];
  const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

  say(`starting ${PEERS} peers (init, join, serve in temp dirs)...`);
  const t0 = performance.now();
  const profileDir = values["cpu-prof"];
  const cluster = await ProcessCluster.start({
    peers: PEERS,
    // Nothing between the peers or the clients and the peers: no byte passes through this process.
    proxies: false,
    // Each peer writes a CPU profile there when it stops (SIGTERM below; node --cpu-prof).
    // LOCKBOX_BENCH_NODE_ARGS: more node flags for the peers (space-separated), to try V8 settings.
    nodeArgs: [
      ...(profileDir !== undefined ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []),
      ...(process.env.LOCKBOX_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== ""),
    ],
    // Default passes and deadlines (as deployed), N = 3: every key on all three peers.
    configure: (c) => {
      c.replication = { ...(c.replication as object), enabled: true, replicas: 3 };
      // --metrics: each peer serves /metrics (a cost of its own, so off by default), and each case
      // prints the peers' synced batches per call, as a scrape before and after it shows them.
      if (values.metrics === true) c.metrics = { listen: "127.0.0.1:0" };
    },
    progress: (line) => say(`  [${((performance.now() - t0) / 1000).toFixed(1)} s] ${line}`),
  });
  const results: ClusterCase[] = [];
  const pids = cluster.peers.map((p) => p.process.pid).filter((p): p is number => p !== undefined);
  try {
    await cluster.waitKeysServed(60_000);
    // The peers that joined stream in every partition of the ring grown from N = 1 (a rebalance):
    // measure the steady state, once every peer has applied the last ring and every move finished.
    const admins = cluster.peers.map((p) => cluster.client(p.id, { deadlineMs: 5_000, attemptsMax: 1 }));
    await waitFor(
      async () => {
        const views = await Promise.all(admins.map((c) => c.adminCall<RingView>("GetRing", {})));
        return views.every(
          (v) =>
            Number(v.local_version) === Number(views[0]!.version) &&
            v.partitions_received === v.partitions_receiving &&
            v.partitions_given === v.partitions_giving,
        );
      },
      120_000,
      "every peer on the last ring with its partition moves done",
    );
    const moved = await Promise.all(admins.map((c) => c.adminCall<RingView>("GetRing", {})));
    say(
      `  [${((performance.now() - t0) / 1000).toFixed(1)} s] ring ${moved[0]!.version} applied everywhere; partitions streamed in: ${moved.map((v) => v.partitions_received).join(", ")}`,
    );
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
        if (only !== undefined && !only.has(`${rpc}:${concurrency}`)) continue;
        say(
          `${rpc} C=${concurrency}: ${warmupSeconds} s warming up, then up to ${opsMax} ops or ${secondsMax} s`,
        );
        // Load first, so the window measures the steady state: 50 calls (WARMUP_OPS) were less than
        // one round at C=64, and with one second (as compare.sh warms etcd, which is compiled ahead
        // of time) V8 still compiled the hot paths seconds into the window: GetKey at 64 did 2,907
        // calls in its first second, then 4,000-4,400 in each; CreateKey at 64 1,544, 2,244, 3,043,
        // then 3,200-3,340 (perf: the compiler threads took a third of the machine at first). Three
        // seconds still left V8 compiling through the window (WARMUP_SECONDS).
        await run(op, concurrency, Number.MAX_SAFE_INTEGER, warmupSeconds);
        const store0 = values.metrics === true ? await storeTotals(cluster.peers) : undefined;
        const threads0 = threadsCpuMs(pids);
        const switches0 = contextSwitches(pids);
        const cpu0 = cpuNow(pids);
        const startUs = monotonicUs();
        const r = await run(op, concurrency, opsMax, secondsMax, (done, errors, seconds) =>
          say(`  ${seconds.toFixed(0)} s: ${done} ops, ${errors} errors`),
        );
        spans.push({ case: `${rpc}:${concurrency}`, startUs, endUs: monotonicUs() });
        const cpu1 = cpuNow(pids);
        const threads1 = threadsCpuMs(pids);
        const switches1 = contextSwitches(pids);
        const result: ClusterCase = {
          rpc,
          concurrency,
          ...r,
          peerCpuMsPerOp: (cpu1.peersMs - cpu0.peersMs) / Math.max(1, r.ops),
          clientCpuMsPerOp: (cpu1.clientMs - cpu0.clientMs) / Math.max(1, r.ops),
        };
        results.push(result);
        process.stdout.write(caseLine(result));
        say(
          `  CPU per call: peers ${result.peerCpuMsPerOp.toFixed(2)} ms (all three), this client ${result.clientCpuMsPerOp.toFixed(2)} ms`,
        );
        say(`  peers' CPU per call by thread: ${perThread(threads0, threads1, r.ops)}`);
        const perCall = (n: number): string => (n / Math.max(1, r.ops)).toFixed(2);
        say(
          `  peers' context switches per call: ${perCall(switches1.voluntary - switches0.voluntary)} voluntary, ` +
            `${perCall(switches1.involuntary - switches0.involuntary)} preempted`,
        );
        if (store0 !== undefined)
          say(`  peers' stores: ${storeLine(store0, await storeTotals(cluster.peers), r.ops)}`);
      }
    }
  } finally {
    // A clean stop, so profiles and logs are complete.
    for (const p of cluster.running) await cluster.stop(p.id).catch(() => {});
    // LOCKBOX_BENCH_KEEP_LOGS=DIR: each peer's log is copied there (for V8 traces given in LOCKBOX_BENCH_NODE_ARGS).
    await cluster.teardown(process.env.LOCKBOX_BENCH_KEEP_LOGS);
    if (profileDir !== undefined) writeFileSync(`${profileDir}/cases.json`, JSON.stringify(spans));
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

/**
 * Calls `fn` with the text of /proc/PID/task/TID/`file` for every thread of the peer processes, with
 * the thread's creation order in its process (threads ordered by id). Skips a process or thread that
 * is gone (or a system without /proc).
 */
function eachThread(
  pids: readonly number[],
  file: "stat" | "status",
  fn: (text: string, thread: { main: boolean; ordinal: number }) => void,
): void {
  for (const pid of pids) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // not Linux, or the peer is gone
    }
    tids.sort((a, b) => Number(a) - Number(b));
    for (const [ordinal, tid] of tids.entries()) {
      let text: string;
      try {
        text = readFileSync(`/proc/${pid}/task/${tid}/${file}`, "utf8");
      } catch {
        continue; // the thread ended between the listing and the read
      }
      fn(text, { main: tid === String(pid), ordinal });
    }
  }
}

/** CPU (ms) used so far by each thread of the peer processes (by creation order), summed over the peers. */
function threadsCpuMs(pids: readonly number[]): Map<string, number> {
  const out = new Map<string, number>();
  eachThread(pids, "stat", (stat, { main, ordinal }) => {
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
    // Node names every thread "node": the others are told apart by creation order (V8's
    // platform workers first, then libuv's pool and LevelDB's compaction thread as first used).
    const key = main ? "main" : `t${ordinal}`;
    out.set(key, (out.get(key) ?? 0) + ms);
  });
  return out;
}

/**
 * Context switches so far of every thread of the peer processes: a thread that blocks (voluntary) or
 * is preempted. On these virtual machines each costs far more CPU than its syscalls (docs/architecture.md).
 */
function contextSwitches(pids: readonly number[]): { voluntary: number; involuntary: number } {
  const out = { voluntary: 0, involuntary: 0 };
  eachThread(pids, "status", (status) => {
    out.voluntary += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    out.involuntary += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  });
  return out;
}

function perThread(before: Map<string, number>, after: Map<string, number>, ops: number): string {
  return [...after]
    .map(([name, ms]) => [name, (ms - (before.get(name) ?? 0)) / Math.max(1, ops)] as const)
    .filter(([, perOp]) => perOp >= 0.005)
    .sort((a, b) => b[1] - a[1])
    .map(([name, perOp]) => `${name} ${perOp.toFixed(2)} ms`)
    .join(", ");
}

/** CPU used so far by the peer processes (user + system, from /proc) and by this process, in ms. */
function cpuNow(pids: readonly number[]): { peersMs: number; clientMs: number } {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Not Linux, or the peer is gone: its share is missing from the figure.
    }
  }
  const self = process.cpuUsage();
  return { peersMs: (ticks * 1000) / CLOCK_TICKS_PER_SECOND, clientMs: (self.user + self.system) / 1000 };
}

/** The group-commit figures of every peer's /metrics, summed over the peers. */
interface StoreTotals {
  batches: number;
  writers: number;
  ops: number;
  syncSeconds: number;
  /** Batch writes by upper bound of their duration (seconds, the histogram's `le`), cumulative. */
  syncBuckets: Map<string, number>;
}

async function storeTotals(peers: readonly ClusterPeer[]): Promise<StoreTotals> {
  const out: StoreTotals = { batches: 0, writers: 0, ops: 0, syncSeconds: 0, syncBuckets: new Map() };
  for (const p of peers) {
    const body = await scrapeMetrics(p);
    out.batches += sample(body, "lockbox_store_group_commit_batch_writes_count");
    out.writers += sample(body, "lockbox_store_group_commit_batch_writes_sum");
    out.ops += sample(body, "lockbox_store_group_commit_batch_ops_sum");
    out.syncSeconds += sample(body, "lockbox_store_sync_duration_seconds_sum");
    for (const m of body.matchAll(
      /^lockbox_store_sync_duration_seconds_bucket\{(?:[^}]*,)?le="([^"]+)"[^}]*\} (\S+)$/gm,
    ))
      out.syncBuckets.set(m[1]!, (out.syncBuckets.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return out;
}

function storeLine(a: StoreTotals, b: StoreTotals, calls: number): string {
  const batches = b.batches - a.batches;
  const per = (n: number): string => (n / Math.max(1, batches)).toFixed(1);
  return (
    `${(batches / Math.max(1, calls)).toFixed(2)} synced batches per call (all three), ` +
    `${per(b.writers - a.writers)} writers and ${per(b.ops - a.ops)} operations per batch, ` +
    `${((1000 * (b.syncSeconds - a.syncSeconds)) / Math.max(1, batches)).toFixed(2)} ms per batch write ` +
    `(99% within ${syncP99(a, b, batches)})`
  );
}

/** The histogram bound under which 99% of the case's batch writes finished. */
function syncP99(a: StoreTotals, b: StoreTotals, batches: number): string {
  for (const [le, n] of b.syncBuckets) {
    if (n - (a.syncBuckets.get(le) ?? 0) >= 0.99 * batches)
      return le === "+Inf" ? "more than the largest bound" : `${Number(le) * 1000} ms`;
  }
  return "?";
}
